"""Scale-in protection: a worker protects its machine while it builds and lifts the protection when its queue is
empty, on those transitions only (not once per job), so an Auto Scaling group that shrinks with the backlog never
terminates a busy worker. The loop runs over the in-memory farm with a fake build (what is built does not matter
here); the AWS adapter is checked against moto's Auto Scaling (a launch template and a group with one instance on the
session's moto server), and the composition root's choice of adapter with a fake metadata service on loopback."""

from __future__ import annotations

import hashlib
import http.server
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pkgc.core.errors import UsageError
from pkgc.core.platform import detect_platform
from pkgc.core.protocol import BuildStatus, ResolveRequest
from pkgc.farm.adapters.local import NoInstanceProtection
from pkgc.farm.adapters.memory import MemoryInstanceProtection, memory_ports
from pkgc.farm.aws_settings import AwsSettings
from pkgc.farm.bootstrap import FarmConfig, instance_protection
from pkgc.farm.embedded import publish_recipes
from pkgc.farm.ports import FarmPorts, InstanceProtection, Job, JobQueue
from pkgc.farm.service import FarmService
from pkgc.farm.work import Build, BuildLifecycle
from pkgc.worker.fetch import SourceFetcher
from pkgc.worker.loop import Worker, WorkerSettings
from tests.moto_server import REGION, MotoServer


class StopWhenIdle:
    """The worker's queue, which stops the worker at its second empty receive (the first one is the idle moment)."""

    def __init__(self, queue: JobQueue, stop: threading.Event) -> None:
        self.queue = queue
        self.stop = stop
        self.empty = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.queue, name)

    def receive(self, visibility_timeout: float, wait: float) -> Job | None:
        job = self.queue.receive(visibility_timeout, 0)
        if job is None:
            self.empty += 1
            if self.empty >= 2:
                self.stop.set()
        return job


class FakeBuildWorker(Worker):
    """A worker whose build is a call of `observe` (what the test wants to know mid-build) and a publish."""

    def __init__(self, *, observe: Callable[[], object], scratch: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.observe = observe
        self.scratch = scratch
        self.observed: list[object] = []

    def _build(self, claim: Build, job: Job) -> None:
        self.observed.append(self.observe())
        artifact, log = self.scratch / f"{claim.record.key}.tar.zst", self.scratch / f"{claim.record.key}.log"
        artifact.write_bytes(claim.record.key.encode())
        log.write_bytes(b"built\n")
        digest = hashlib.sha256(artifact.read_bytes()).hexdigest()
        assert self.lifecycle.publish(claim.lease, artifact, log, digest, artifact.stat().st_size)
        self.queue.ack(job)


def farm_with_jobs(*bodies: dict[str, Any]) -> tuple[FarmPorts, list[str]]:
    """An in-memory farm with one queued job per resolve body (hello with other options: independent builds)."""
    ports = memory_ports()
    service = FarmService.from_ports(ports, detect_platform()
    )
    assert publish_recipes(service) == []
    keys = [service.resolve(ResolveRequest.model_validate({"packages": [body]})).requested[0] for body in bodies]
    return ports, keys


def run_worker(
    tmp_path: Path, ports: FarmPorts, protection: InstanceProtection, observe: Callable[[], object]
) -> tuple[FakeBuildWorker, list[str]]:
    stop = threading.Event()
    reports: list[str] = []
    worker = FakeBuildWorker(
        observe=observe,
        scratch=tmp_path,
        lifecycle=BuildLifecycle.from_ports(ports),
        queue=StopWhenIdle(ports.queues.for_platform(str(detect_platform())), stop),  # type: ignore[arg-type]
        fetcher=SourceFetcher(tmp_path / "sources", loopback_only=True),
        settings=WorkerSettings(worker_id="w1", workroot=tmp_path / "work", receive_wait=0),
        report=reports.append,
        protection=protection,
    )
    worker.run(stop)
    return worker, reports


HELLO_NLS = {"name": "hello", "options": {"nls": "true"}}
HELLO_NO_NLS = {"name": "hello", "options": {"nls": "false"}}


def test_protected_while_building_and_lifted_when_idle_on_transitions_only(tmp_path: Path) -> None:
    ports, keys = farm_with_jobs(HELLO_NLS, HELLO_NO_NLS)
    protection = MemoryInstanceProtection()
    worker, reports = run_worker(tmp_path, ports, protection, lambda: protection.protected)
    assert worker.observed == [True, True], "each build ran protected"
    assert protection.changes == [True, False], "on once for two builds in a row, off once when the queue was empty"
    assert not reports
    for key in keys:
        record = ports.builds.get(key)
        assert record is not None and record.status == BuildStatus.READY


def test_a_job_that_needs_no_build_does_not_protect_the_machine(tmp_path: Path) -> None:
    ports, _keys = farm_with_jobs()
    ports.queues.for_platform(str(detect_platform())).send("not a build key")  # claimed as Skip
    protection = MemoryInstanceProtection()
    worker, _reports = run_worker(tmp_path, ports, protection, lambda: protection.protected)
    assert worker.observed == []
    assert protection.changes == [False], "only the idle moment, which lifts what a killed worker may have left on"


class FlakyProtection(MemoryInstanceProtection):
    """Fails its first call (the Auto Scaling API unreachable for a moment)."""

    def protect(self, on: bool) -> None:
        if not self.changes and not getattr(self, "failed", False):
            self.failed = True
            raise ConnectionError("autoscaling is unreachable")
        super().protect(on)


def test_a_failure_to_protect_is_reported_and_the_next_transition_tries_again(tmp_path: Path) -> None:
    ports, keys = farm_with_jobs(HELLO_NLS, HELLO_NO_NLS)
    protection = FlakyProtection()
    worker, reports = run_worker(tmp_path, ports, protection, lambda: protection.protected)
    assert worker.observed == [False, True], "the first build went on unprotected; the second job turned it on"
    assert protection.changes == [True, False]
    assert len(reports) == 1 and "cannot turn scale-in protection on: autoscaling is unreachable" in reports[0]
    assert all((r := ports.builds.get(k)) is not None and r.status == BuildStatus.READY for k in keys)


# ------------------------------------------------------------------------------------------------ on moto


@pytest.fixture
def group(moto_server: MotoServer, aws_env: dict[str, str]) -> tuple[Any, str, str]:
    """An Auto Scaling group with one instance (a launch template of one of moto's images): client, name, id."""
    import boto3

    ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=moto_server.endpoint)
    autoscaling = boto3.client("autoscaling", region_name=REGION, endpoint_url=moto_server.endpoint)
    suffix = uuid.uuid4().hex[:8]
    image = ec2.describe_images()["Images"][0]["ImageId"]
    ec2.create_launch_template(
        LaunchTemplateName=f"pkgc-worker-{suffix}", LaunchTemplateData={"ImageId": image, "InstanceType": "c7i.xlarge"}
    )
    name = f"pkgc-{suffix}-workers"
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=name,
        LaunchTemplate={"LaunchTemplateName": f"pkgc-worker-{suffix}"},
        MinSize=0,
        MaxSize=1,
        DesiredCapacity=1,
        AvailabilityZones=[f"{REGION}a"],
    )
    (instance,) = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0][
        "Instances"
    ]
    return autoscaling, name, str(instance["InstanceId"])


def protected_from_scale_in(autoscaling: Any, instance_id: str) -> bool:
    (found,) = autoscaling.describe_auto_scaling_instances(InstanceIds=[instance_id])["AutoScalingInstances"]
    return bool(found["ProtectedFromScaleIn"])


def aws_config(moto_server: MotoServer) -> FarmConfig:
    settings = AwsSettings(
        builds_table="unused", catalog_table="unused", bucket="unused", region=REGION, endpoint_url=moto_server.endpoint
    )
    return FarmConfig(backend="aws", aws=settings)


def test_the_instance_is_protected_in_its_group_while_it_builds(
    moto_server: MotoServer, group: tuple[Any, str, str], tmp_path: Path
) -> None:
    autoscaling, name, instance_id = group
    protection = instance_protection(aws_config(moto_server), instance_id, {"PKGC_AWS_ASG_NAME": name})
    assert not isinstance(protection, NoInstanceProtection)
    protection.protect(True)  # as a worker killed mid-build leaves it: the restarted worker must lift it when idle
    ports, _keys = farm_with_jobs(HELLO_NLS)
    assert protected_from_scale_in(autoscaling, instance_id)
    worker, reports = run_worker(tmp_path, ports, protection, lambda: protected_from_scale_in(autoscaling, instance_id))
    assert worker.observed == [True], "protected from scale-in during the build"
    assert not protected_from_scale_in(autoscaling, instance_id), "idle again: the group may take it"
    assert not reports


def test_an_unknown_group_is_reported_not_fatal(
    moto_server: MotoServer, group: tuple[Any, str, str], tmp_path: Path
) -> None:
    from pkgc.farm.adapters.aws_instance import AutoScalingInstanceProtection

    autoscaling, _name, instance_id = group
    protection = AutoScalingInstanceProtection(autoscaling, "no-such-group", instance_id)
    ports, keys = farm_with_jobs(HELLO_NLS)
    worker, reports = run_worker(tmp_path, ports, protection, lambda: None)
    assert len(worker.observed) == 1, "the build went on"
    assert reports and all("cannot turn scale-in protection" in line for line in reports)
    record = ports.builds.get(keys[0])
    assert record is not None and record.status == BuildStatus.READY


# ------------------------------------------------------------------------------------- the composition root


class FakeImds(http.server.BaseHTTPRequestHandler):
    instance_id = "i-0123456789abcdef0"

    def do_PUT(self) -> None:
        self._answer(b"token-1" if self.path == "/latest/api/token" else None)

    def do_GET(self) -> None:
        tokened = self.headers.get("X-aws-ec2-metadata-token") == "token-1"
        ok = self.path == "/latest/meta-data/instance-id" and tokened
        self._answer(self.instance_id.encode() if ok else None)

    def _answer(self, body: bytes | None) -> None:
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def imds_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeImds)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_composition_root_chooses_the_protection(
    moto_server: MotoServer, aws_env: dict[str, str], imds_url: str, tmp_path: Path
) -> None:
    from pkgc.farm.adapters.aws_instance import AutoScalingInstanceProtection

    assert isinstance(instance_protection(FarmConfig.local(tmp_path), "w1", {}), NoInstanceProtection)
    config = aws_config(moto_server)
    assert isinstance(instance_protection(config, "i-0123456789abcdef0", {}), NoInstanceProtection), "no group"
    given = instance_protection(config, "i-0fedcba9876543210", {"PKGC_AWS_ASG_NAME": "g"})
    assert isinstance(given, AutoScalingInstanceProtection) and given.instance_id == "i-0fedcba9876543210"
    env = {"PKGC_AWS_ASG_NAME": "g", "PKGC_WORKER_IMDS_URL": imds_url}
    asked = instance_protection(config, "worker-7", env)
    assert isinstance(asked, AutoScalingInstanceProtection) and asked.instance_id == FakeImds.instance_id
    with pytest.raises(UsageError, match="metadata service"):
        instance_protection(config, "worker-7", {"PKGC_AWS_ASG_NAME": "g", "PKGC_WORKER_IMDS_URL": "http://127.0.0.1:9"})
    with pytest.raises(UsageError, match="PKGC_AWS_ASG_NAME"):
        instance_protection(config, "i-0123456789abcdef0", {"PKGC_AWS_ASG_NAME": "bad\nname"})
