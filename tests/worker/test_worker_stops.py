"""Workers stop cleanly: a lost lease kills the build at once; SIGTERM and a Spot interruption notice kill it, give
the lease back and make the job visible, so another worker builds it without waiting for a timeout; a queue error
while keeping a job invisible is reported, not swallowed. Real processes, real HTTP on loopback."""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pkgc.core.platform import detect_platform
from pkgc.core.protocol import BuildStatus, ResolveRequest
from pkgc.farm.adapters.memory import memory_ports
from pkgc.farm.bootstrap import FarmConfig, farm_service, open_ports
from pkgc.farm.ports import FarmPorts, Job, JobQueue
from pkgc.farm.service import FarmService
from pkgc.farm.work import BuildLifecycle
from pkgc.worker.fetch import SourceFetcher
from pkgc.worker.interruption import InterruptionWatch
from pkgc.worker.loop import Worker, WorkerSettings
from pkgc.worker.sandbox import bubblewrap_path
from tests.conftest import make_tarball, processes_with_arguments, subprocess_env
from tests.loopback import serving

NAPPER_SH = b"#!/bin/sh\necho napped\n"


def napper_recipe(sources: Path, seconds: str) -> str:
    """A package whose build sleeps `seconds` (a value no other process uses, to find it) and installs a script."""
    sources.mkdir(parents=True, exist_ok=True)
    tarball = sources / "napper.tar.gz"
    sha = make_tarball(tarball, "napper-1.0", {"napper.sh": NAPPER_SH})
    tarball.rename(sources / sha)  # the fetcher's cache: the source is there, nothing is downloaded
    return f"""name = "napper"
summary = "Sleeps while it builds, for stopping workers in the middle"
[[versions]]
version = "1.0"
sha256 = "{sha}"
urls = ["http://127.0.0.1:9/napper-1.0.tar.gz"]
[build]
system = "steps"
steps = [["sleep", "{seconds}"], ["install", "-D", "-m", "755", "napper.sh", "{{destdir}}{{prefix}}/bin/napper"]]
"""


def resolve(service: FarmService, recipe: str) -> str:
    service.publish_recipe(recipe)
    answer = service.resolve(ResolveRequest.model_validate({"packages": [{"name": "napper"}]}))
    return answer.requested[0]


def wait_for(condition: object, limit: float, what: str) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.05)
    pytest.fail(f"timed out after {limit} s waiting for {what}")


def memory_worker(
    tmp_path: Path, seconds: str, queue_wrapper: type | None = None
) -> tuple[Worker, FarmPorts, str, JobQueue, list[str]]:
    ports = memory_ports()
    service = FarmService.from_ports(ports, detect_platform()
    )
    key = resolve(service, napper_recipe(tmp_path / "sources", seconds))
    queue: JobQueue = ports.queues.for_platform(str(detect_platform()))
    if queue_wrapper is not None:
        queue = queue_wrapper(queue)
    reports: list[str] = []
    worker = Worker(
        lifecycle=BuildLifecycle.from_ports(ports),
        queue=queue,
        fetcher=SourceFetcher(tmp_path / "sources", loopback_only=True),
        settings=WorkerSettings(
            worker_id="w1", workroot=tmp_path / "work", heartbeat_interval=0.1, lease_ttl=60, bubblewrap=None
        ),
        report=reports.append,
    )
    return worker, ports, key, queue, reports


def test_a_lost_lease_kills_the_build_at_once(tmp_path: Path) -> None:
    worker, ports, key, queue, reports = memory_worker(tmp_path, "41.25")
    job = queue.receive(visibility_timeout=60, wait=0)
    assert job is not None
    handling = threading.Thread(target=worker.handle, args=(job,))
    handling.start()
    wait_for(lambda: processes_with_arguments(b"sleep", b"41.25"), 20, "the build's sleep")
    thief = ports.builds.acquire_lease(key, "thief", now=time.time() + 3600, ttl=3600)  # as if the lease expired
    assert thief is not None
    handling.join(timeout=10)
    assert not handling.is_alive(), "the build went on under a lost lease"
    assert not processes_with_arguments(b"sleep", b"41.25"), "the build's processes were left running"
    record = ports.builds.get(key)
    assert record is not None and record.status == BuildStatus.BUILDING and record.lease_owner == "thief"
    assert any("lost the lease" in line for line in reports), reports


class BrokenExtend:
    """A queue whose visibility extension fails (an SQS outage) while everything else works."""

    def __init__(self, queue: JobQueue) -> None:
        self.queue = queue

    def __getattr__(self, name: str) -> object:
        return getattr(self.queue, name)

    def extend(self, job: Job, visibility_timeout: float) -> None:
        raise ConnectionError("the queue service is unreachable")


def test_an_error_extending_the_jobs_visibility_is_reported(tmp_path: Path) -> None:
    worker, ports, key, queue, reports = memory_worker(tmp_path, "0.6", BrokenExtend)
    job = queue.receive(visibility_timeout=60, wait=0)
    assert job is not None
    worker.handle(job)
    record = ports.builds.get(key)
    assert record is not None and record.status == BuildStatus.READY, record
    assert any("cannot extend the visibility" in line and "unreachable" in line for line in reports), reports


class InstanceMetadata(http.server.BaseHTTPRequestHandler):
    """IMDSv2 on loopback: a token by PUT, and the Spot notice (404 until the test arms it) for that token."""

    armed = threading.Event()
    token = "test-token"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_PUT(self) -> None:
        if self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
            self._answer(200, self.token.encode())
        else:
            self._answer(400, b"")

    def do_GET(self) -> None:
        if self.path != "/latest/meta-data/spot/instance-action":
            self._answer(404, b"")
        elif self.headers.get("X-aws-ec2-metadata-token") != self.token:
            self._answer(401, b"")
        elif not self.armed.is_set():
            self._answer(404, b"")
        else:
            self._answer(200, json.dumps({"action": "terminate", "time": "2030-01-01T00:00:00Z"}).encode())

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def imds() -> Iterator[str]:
    InstanceMetadata.armed.clear()
    with serving(InstanceMetadata) as url:
        yield url


def test_the_interruption_watch_stops_on_a_spot_notice_only(imds: str) -> None:
    stop = threading.Event()
    reports: list[str] = []
    watch = InterruptionWatch(stop, base_url=imds, interval=0.05, report=reports.append).start()
    time.sleep(0.5)
    assert not stop.is_set(), "no notice yet: the worker keeps working"
    assert reports == [], reports
    InstanceMetadata.armed.set()
    assert stop.wait(5), "the notice did not stop the worker"
    assert watch.notice is not None and "terminate" in watch.notice


def test_an_unreachable_metadata_service_is_reported_and_does_not_stop(tmp_path: Path) -> None:
    stop = threading.Event()
    reports: list[str] = []
    watch = InterruptionWatch(stop, base_url="http://127.0.0.1:9", interval=0.05, timeout=0.5, report=reports.append)
    assert watch.check() is None and not stop.is_set()
    assert reports and "failed" in reports[0]
    with pytest.raises(ValueError):
        InterruptionWatch(stop, base_url="file:///etc/passwd")


@pytest.mark.parametrize("how", ["sigterm", "spot"])
def test_a_stopped_worker_gives_its_build_to_another_that_completes_it(tmp_path: Path, how: str, imds: str) -> None:
    home = tmp_path / "farm"
    config = FarmConfig.local(home)
    service = farm_service(config)
    seconds = "5.5" if how == "sigterm" else "5.25"
    key = resolve(service, napper_recipe(home / "sources", seconds))
    builds = open_ports(config).builds
    env = subprocess_env(
        {
            "PKGC_FETCH_LOOPBACK_ONLY": "1",
            # Long: another worker gets the job at once only if the stopping one made it visible again.
            "PKGC_FARM_VISIBILITY_TIMEOUT": "300",
            "PKGC_WORKER_IMDS_INTERVAL": "0.2",
            **({"PKGC_WORKER_IMDS_URL": imds} if how == "spot" else {}),
            **({} if bubblewrap_path() else {"PKGC_NO_SANDBOX": "1"}),
        }
    )

    def start(worker_id: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "pkgc.worker", "--home", str(home), "--id", worker_id, "--max-jobs", "1"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    first = start("first")
    try:
        wait_for(lambda: processes_with_arguments(b"sleep", seconds.encode()), 60, "the first worker's build")
        record = builds.get(key)
        assert record is not None and record.status == BuildStatus.BUILDING
        assert (record.lease_owner or "").startswith("first-")
        if how == "sigterm":
            first.send_signal(signal.SIGTERM)
        else:
            InstanceMetadata.armed.set()
        output, _ = first.communicate(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, output
    assert "gave back the build of napper" in output, output
    assert not processes_with_arguments(b"sleep", seconds.encode()), "the stopped build's processes live on"
    released = builds.get(key)
    assert released is not None and released.status == BuildStatus.QUEUED and released.attempts == 0

    InstanceMetadata.armed.clear()  # the second worker runs on an instance that is not being taken back
    second = start("second")
    try:
        output, _ = second.communicate(timeout=120)
    finally:
        if second.poll() is None:
            second.kill()
    assert second.returncode == 0, output
    done = builds.get(key)
    assert done is not None and done.status == BuildStatus.READY, (done, output)
    assert done.attempts == 1 and (done.artifact or "").startswith("artifacts/sha256/")
    assert os.path.getsize(home / "blobs" / (done.artifact or "")) == done.size
