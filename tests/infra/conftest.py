"""One moto server per session on loopback, and the farm's child stacks deployed on it once (the harness).

The harness deploys each child template of infra/ as a stack of its own, in the order and with the parameters that
`pkgc.farm.deploy.read_wiring` reads from main.yaml, through the same AwsDeployTarget that `pkgc farm deploy` uses:
one child's outputs become the next one's parameters exactly as main.yaml wires them.

The server is the session's one (tests/moto_server.py); the other tests on it use fresh resource names and never
wipe it, so the stacks deployed here live for the whole session.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from pkgc.farm.deploy import ChildStack, child_parameters, child_stack_name, main_parameters, read_wiring
from tests.moto_server import MotoServer

REGION = "us-east-1"
HARNESS_STACK = "pkgcharness"
IMAGE_PARAMETER = "/pkgc/test/worker-image"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/infra is selectable with `-m infra`."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.infra)


@dataclass(frozen=True)
class Moto:
    endpoint: str

    def env(self) -> dict[str, str]:
        """What a process needs to talk to this server as if it were AWS."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )


@pytest.fixture(scope="session")
def moto(moto_server: MotoServer) -> Moto:
    """The session's one moto server (tests/moto_server.py, shared with the contract suite, which never wipes it)."""
    return Moto(moto_server.endpoint)


def small_zip() -> bytes:
    """Stand-in Lambda code: moto stores the function but never runs it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("pkgc/__init__.py", "")
    return buffer.getvalue()


def worker_image(moto: Moto) -> str:
    """An AMI moto knows, under an SSM parameter of ours: main.yaml's default is AWS's public Debian parameter, a name
    under /aws/service/ that moto refuses to hold."""
    image = moto.client("ec2").describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    moto.client("ssm").put_parameter(Name=IMAGE_PARAMETER, Value=image, Type="String", Overwrite=True)
    return str(image)


@dataclass
class Harness:
    moto: Moto
    children: list[ChildStack]
    top: dict[str, str]  # main.yaml's parameter values
    parameters: dict[str, dict[str, str]]  # logical id -> the parameters the child was deployed with
    outputs: dict[str, dict[str, str]]  # logical id -> its outputs
    image: str

    def stack_name(self, logical_id: str) -> str:
        return f"{HARNESS_STACK}-{logical_id.lower()}"


@pytest.fixture(scope="session")
def harness(moto: Moto) -> Iterator[Harness]:
    """Every child of main.yaml deployed on moto, each as its own stack, outputs passed on as main.yaml does."""
    from pkgc.farm.adapters.aws_deploy import AwsDeployTarget

    with pytest.MonkeyPatch.context() as patch:
        for name, value in moto.env().items():
            patch.setenv(name, value)
        s3 = moto.client("s3")
        s3.create_bucket(Bucket="pkgc-harness-artifacts")
        s3.put_object(Bucket="pkgc-harness-artifacts", Key="code/lambda.zip", Body=small_zip())
        s3.put_object(Bucket="pkgc-harness-artifacts", Key="code/worker.zip", Body=small_zip())
        image = worker_image(moto)
        target = AwsDeployTarget(REGION, sleep=lambda _s: None)
        vpc, subnets = target.default_network()
        top = {name: str(spec["Default"]) for name, spec in main_parameters().items() if "Default" in spec}
        top.update(
            ArtifactBucket="pkgc-harness-artifacts",
            LambdaCodeKey="code/lambda.zip",
            WorkerPackageKey="code/worker.zip",
            VpcId=vpc,
            SubnetIds=",".join(subnets),
            WorkerImageId=IMAGE_PARAMETER,
            EnableCdn="false",  # moto's CloudFormation creates no CloudFront: test_storage_cdn.py uses its API
        )
        children = read_wiring()
        parameters: dict[str, dict[str, str]] = {}
        outputs: dict[str, dict[str, str]] = {}
        for child in children:
            parameters[child.logical_id] = child_parameters(child, top, outputs)
            body = (Path(__file__).parents[2] / "infra" / child.template).read_text()
            outputs[child.logical_id] = target.deploy_stack(
                child_stack_name(HARNESS_STACK, child), body, "", parameters[child.logical_id]
            )
        yield Harness(moto, children, top, parameters, outputs, image)
