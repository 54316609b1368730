"""The boto3 side of `pkgc farm deploy` (pkgc.farm.deploy.DeployTarget): S3 uploads and CloudFormation stacks.

boto3 takes its credentials, region and endpoint from the environment as the AWS CLI does, `AWS_ENDPOINT_URL`
included, so the same command deploys to moto in the tests. Every vendor error becomes a one-line DeployError
(or NotFound for a missing bucket) here, at the adapter's edge.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)
from botocore.parsers import ResponseParserError

from pkgc.core.errors import NotFound
from pkgc.farm.deploy import DeployError

# States a stack rests in; anything else is still in progress.
_DONE = {"CREATE_COMPLETE", "UPDATE_COMPLETE"}
_FAILED = {
    "CREATE_FAILED", "ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "DELETE_COMPLETE", "DELETE_FAILED",
    "UPDATE_ROLLBACK_COMPLETE", "UPDATE_ROLLBACK_FAILED", "UPDATE_FAILED", "IMPORT_ROLLBACK_COMPLETE",
}  # fmt: skip
_CAPABILITIES = ["CAPABILITY_IAM"]  # the templates create IAM roles (with generated names)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'error')}: {error.get('Message', '')}".strip().rstrip(":")
    return str(exc)


class AwsDeployTarget:
    """S3 and CloudFormation clients of one region, with bounded waits."""

    def __init__(
        self,
        region: str | None = None,
        *,
        timeout: float = 3600.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        try:
            session = boto3.session.Session(region_name=region)
        except BotoCoreError as exc:
            raise DeployError(f"cannot configure AWS: {exc}") from None
        self.region = session.region_name or ""
        if not self.region:
            raise DeployError("no AWS region: pass --region or set AWS_REGION")
        config = Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=10, read_timeout=60)
        self._s3 = session.client("s3", config=config)
        self._cfn = session.client("cloudformation", config=config)
        self._ec2 = session.client("ec2", config=config)
        self._timeout = timeout
        self._sleep = sleep
        self._endpoint = os.environ.get("AWS_ENDPOINT_URL", "")

    def _call(self, what: str, call: Callable[[], Any]) -> Any:
        """Run one AWS call, turning what can go wrong before any answer into one line."""
        try:
            return call()
        except (NoCredentialsError, PartialCredentialsError):
            raise DeployError(
                "no AWS credentials found", hint="set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            ) from None
        except NoRegionError:
            raise DeployError("no AWS region: pass --region or set AWS_REGION") from None
        except EndpointConnectionError as exc:
            raise DeployError(f"cannot reach AWS ({exc.kwargs.get('endpoint_url', 'endpoint')}) to {what}") from None
        except ClientError as exc:
            raise DeployError(f"cannot {what}: {_describe(exc)}") from None
        except BotoCoreError as exc:
            raise DeployError(f"cannot {what}: {exc}") from None
        except ResponseParserError:
            raise DeployError(
                f"cannot {what}: the endpoint answered with something that is not an AWS answer"
            ) from None

    def check_bucket(self, bucket: str) -> None:
        def head() -> None:
            try:
                self._s3.head_bucket(Bucket=bucket)
            except ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", ""))
                if code in ("404", "NoSuchBucket", "NotFound"):
                    raise NotFound(
                        f"bucket {bucket} does not exist",
                        hint=f"create it first: aws s3 mb s3://{bucket} --region {self.region}",
                    ) from None
                if code in ("403", "AccessDenied"):
                    raise DeployError(f"no access to bucket {bucket} with these credentials") from None
                raise

        self._call(f"read bucket {bucket}", head)

    def upload(self, bucket: str, key: str, data: bytes) -> str:
        self._call(f"upload s3://{bucket}/{key}", lambda: self._s3.put_object(Bucket=bucket, Key=key, Body=data))
        if self._endpoint:
            return f"{self._endpoint.rstrip('/')}/{bucket}/{key}"
        return f"https://{bucket}.s3.{self.region}.amazonaws.com/{key}"

    def default_network(self) -> tuple[str, list[str]]:
        vpcs = self._call(
            "find the default VPC",
            lambda: self._ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"],
        )
        if not vpcs:
            raise DeployError(
                f"no default VPC in {self.region}",
                hint="pass --param VpcId=vpc-... --param SubnetIds=subnet-a,subnet-b",
            )
        vpc = str(vpcs[0]["VpcId"])
        subnets = self._call(
            "list the default VPC's subnets",
            lambda: self._ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"],
        )
        if not subnets:
            raise DeployError(f"the default VPC {vpc} has no subnets", hint="pass --param SubnetIds=subnet-a,...")
        return vpc, sorted(str(s["SubnetId"]) for s in subnets)

    def _status(self, name: str) -> str | None:
        try:
            stacks = self._cfn.describe_stacks(StackName=name)["Stacks"]
        except ClientError as exc:
            if "does not exist" in _describe(exc):
                return None
            raise
        return str(stacks[0]["StackStatus"]) if stacks else None

    def _failure_reason(self, name: str) -> str:
        """The first failed resource's reason, which is what a person needs (the rollback comes after it)."""
        try:
            events = self._cfn.describe_stack_events(StackName=name)["StackEvents"]
        except (ClientError, BotoCoreError):
            return "no reason given"
        for event in reversed(events):  # oldest first
            if str(event.get("ResourceStatus", "")).endswith("_FAILED"):
                reason = str(event.get("ResourceStatusReason") or "no reason given")
                return f"{event.get('LogicalResourceId', '?')}: {reason}"
        return "no reason given"

    def deploy_stack(
        self, name: str, template_body: str | None, template_url: str, parameters: Mapping[str, str]
    ) -> dict[str, str]:
        template: dict[str, str] = (
            {"TemplateBody": template_body} if template_body is not None else {"TemplateURL": template_url}
        )
        arguments: dict[str, Any] = {
            "StackName": name,
            "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
            "Capabilities": _CAPABILITIES,
            **template,
        }
        status = self._call(f"read stack {name}", lambda: self._status(name))
        if status == "ROLLBACK_COMPLETE":
            raise DeployError(
                f"stack {name} failed when it was created and must be deleted first",
                hint=f"aws cloudformation delete-stack --stack-name {name}",
            )
        if status is None:
            self._call(f"create stack {name}", lambda: self._cfn.create_stack(**arguments, OnFailure="ROLLBACK"))
        else:

            def update() -> None:
                try:
                    self._cfn.update_stack(**arguments)
                except ClientError as exc:
                    if "No updates are to be performed" not in _describe(exc):
                        raise

            self._call(f"update stack {name}", update)
        self._wait(name)
        stack = self._call(f"read stack {name}", lambda: self._cfn.describe_stacks(StackName=name)["Stacks"][0])
        return {str(o["OutputKey"]): str(o.get("OutputValue", "")) for o in stack.get("Outputs") or []}

    def _wait(self, name: str) -> None:
        """Poll until the stack rests: at once (moto is synchronous), then every few seconds up to the timeout."""
        deadline = time.monotonic() + self._timeout
        delay = 0.5
        while True:
            status = self._call(f"read stack {name}", lambda: self._status(name))
            if status in _DONE:
                return
            if status is None or status in _FAILED:
                raise DeployError(f"stack {name} failed ({status or 'gone'}): {self._failure_reason(name)}")
            if time.monotonic() >= deadline:
                raise DeployError(f"stack {name} is still {status} after {self._timeout:.0f} s; see the console")
            self._sleep(delay)
            delay = min(delay * 2, 10.0)
