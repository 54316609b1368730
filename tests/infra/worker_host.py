"""The AWS side of one worker instance, on the session's moto, for the worker install rehearsal
(tests/e2e/test_worker_install.py): the deployment bucket `pkgc farm deploy` uploads into (the operator's, made
before any deploy) and the Auto Scaling group whose instance the worker protects from scale-in. moto runs no
instances, so the group's instance is a record only: the rehearsal plays its user data and systemd on this machine.
boto3 lives here, with the rest of the infra tooling, not in the e2e test."""

from __future__ import annotations

import uuid
from typing import Any

import boto3

from tests.moto_server import REGION, MotoServer


def _client(moto: MotoServer, service: str) -> Any:
    env = moto.env()
    return boto3.client(
        service,  # type: ignore[call-overload]  # the service name is a variable
        region_name=REGION,
        endpoint_url=moto.endpoint,
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=env["AWS_SESSION_TOKEN"],
    )


def create_deployment_bucket(moto: MotoServer) -> str:
    name = f"pkgc-deploy-{uuid.uuid4().hex[:8]}"
    _client(moto, "s3").create_bucket(Bucket=name)
    return name


def launch_group_instance(moto: MotoServer, group: str) -> str:
    """An Auto Scaling group `group` with one instance in service (moto's record of it); its id."""
    ec2 = _client(moto, "ec2")
    template = f"{group}-lt-{uuid.uuid4().hex[:6]}"
    ec2.create_launch_template(
        LaunchTemplateName=template, LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "c7i.xlarge"}
    )
    autoscaling = _client(moto, "autoscaling")
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=group, LaunchTemplate={"LaunchTemplateName": template},
        MinSize=1, MaxSize=1, DesiredCapacity=1, AvailabilityZones=[f"{REGION}a"],
    )  # fmt: skip
    listed = autoscaling.describe_auto_scaling_instances()["AutoScalingInstances"]
    (instance,) = [i for i in listed if i["AutoScalingGroupName"] == group]
    return str(instance["InstanceId"])


def is_protected(moto: MotoServer, instance_id: str) -> bool:
    """Whether the instance is protected from scale-in in its group."""
    found = _client(moto, "autoscaling").describe_auto_scaling_instances(InstanceIds=[instance_id])
    return bool(found["AutoScalingInstances"][0]["ProtectedFromScaleIn"])
