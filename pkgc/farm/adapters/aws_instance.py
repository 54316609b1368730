"""Scale-in protection of an EC2 worker in the farm's Auto Scaling group (the `InstanceProtection` port on AWS).

The group shrinks with the job backlog (target tracking on backlog per instance, infra/workers.yaml). Scale-in
picks instances by its own rules, not by what they are doing, so a worker in the middle of a two-hour build would be
as likely to go as an idle one: the build would be lost, its lease would expire and its job come back, and another
instance would start it from the beginning. A worker therefore protects its own instance from scale-in while it
builds (`SetInstanceProtection`), and lifts the protection when its queue is empty, so the group takes idle workers
only. (A Spot interruption ignores protection: the worker's interruption watch gives the job back for that case.)

The group's name comes from `PKGC_AWS_ASG_NAME` (the launch template's user data writes it into the worker's
environment file); the instance's id from the worker's `--id` when it is one (the systemd unit passes the id the user
data read from the instance metadata service), else from the metadata service itself (IMDSv2).
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

import boto3

from pkgc.core.errors import UsageError
from pkgc.farm.adapters.aws import _aws_call, _client_config

ASG_NAME_ENV = "PKGC_AWS_ASG_NAME"
IMDS_URL_ENV = "PKGC_WORKER_IMDS_URL"  # the metadata service's base URL (a test's fake); default the link-local one
DEFAULT_IMDS_URL = "http://169.254.169.254"
_INSTANCE_ID = re.compile(r"i-[0-9a-f]{8}(?:[0-9a-f]{9})?")
_MAX_GROUP_NAME = 255


def is_instance_id(text: str) -> bool:
    return _INSTANCE_ID.fullmatch(text) is not None


def check_group_name(name: str) -> str:
    if not 1 <= len(name) <= _MAX_GROUP_NAME or any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise UsageError(f"{ASG_NAME_ENV} is not an Auto Scaling group name: {name[:80]!r}")
    return name


class AutoScalingInstanceProtection:
    """`SetInstanceProtection` on this instance in its group; errors become FarmUnavailable naming the call."""

    def __init__(self, client: Any, group_name: str, instance_id: str) -> None:
        if not is_instance_id(instance_id):
            raise UsageError(f"not an EC2 instance id: {instance_id[:40]!r}")
        self._client = client
        self.group_name = check_group_name(group_name)
        self.instance_id = instance_id

    def protect(self, on: bool) -> None:
        with _aws_call(f"Auto Scaling SetInstanceProtection ({on}) of {self.instance_id} in {self.group_name}"):
            self._client.set_instance_protection(
                InstanceIds=[self.instance_id], AutoScalingGroupName=self.group_name, ProtectedFromScaleIn=on
            )


def instance_id_from_imds(base_url: str = DEFAULT_IMDS_URL, timeout: float = 2.0) -> str:
    """This instance's id from the metadata service (IMDSv2 session token first, a plain GET where none is needed).

    Raises UsageError when the service does not answer with an instance id (not on EC2, IMDS disabled)."""
    if not base_url.startswith(("http://", "https://")):
        raise UsageError(f"{IMDS_URL_ENV} must be an http(s) URL, not {base_url[:80]!r}")
    base = base_url.rstrip("/")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # link-local: never through a proxy
    headers: dict[str, str] = {}
    token_request = urllib.request.Request(
        f"{base}/latest/api/token", method="PUT", headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"}
    )
    try:
        with opener.open(token_request, timeout=timeout) as answer:
            token = bytes(answer.read(4096)).decode("ascii", "replace").strip()
            if token:
                headers["X-aws-ec2-metadata-token"] = token
    except (urllib.error.URLError, OSError, ValueError):
        pass
    try:
        request = urllib.request.Request(f"{base}/latest/meta-data/instance-id", headers=headers)
        with opener.open(request, timeout=timeout) as answer:
            instance_id = bytes(answer.read(64)).decode("ascii", "replace").strip()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise UsageError(f"cannot read this instance's id from the metadata service at {base}: {exc}") from None
    if not is_instance_id(instance_id):
        raise UsageError(f"the metadata service at {base} answered {instance_id[:40]!r}, not an instance id")
    return instance_id


def auto_scaling_protection(
    environ: Mapping[str, str], worker_id: str, *, region: str | None, endpoint_url: str | None
) -> AutoScalingInstanceProtection | None:
    """The protection of this instance in the group `PKGC_AWS_ASG_NAME` names; None without that variable (a worker
    outside a group: a test, one started by hand). The composition root calls this for the aws backend."""
    group = environ.get(ASG_NAME_ENV, "").strip()
    if not group:
        return None
    instance_id = worker_id if is_instance_id(worker_id) else instance_id_from_imds(
        environ.get(IMDS_URL_ENV, "").strip() or DEFAULT_IMDS_URL
    )
    session = boto3.session.Session(region_name=region)
    with _aws_call("creating the autoscaling client"):
        client = session.client("autoscaling", endpoint_url=endpoint_url, config=_client_config("autoscaling"))
    return AutoScalingInstanceProtection(client, group, instance_id)
