"""A job that reaches a worker while another worker holds the build's lease must not be lost.

The holder may have stalled past the visibility timeout, so the message this worker received can be the build's only
one; if it were dropped and the holder then died, the build would stay "building" for ever.
"""

from __future__ import annotations

from pathlib import Path

from pkgc.core.protocol import BuildStatus
from pkgc.farm.bootstrap import FarmConfig, build_lifecycle, open_ports
from pkgc.farm.ports import BuildRecord
from pkgc.worker.fetch import SourceFetcher
from pkgc.worker.loop import Worker, WorkerSettings

KEY = "c" * 64


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_job_for_a_build_held_by_another_worker_comes_back_after_its_lease(tmp_path: Path) -> None:
    clock = Clock()
    ports = open_ports(FarmConfig.local(tmp_path), clock=clock)
    builds, queue = ports.builds, ports.queues.for_platform("linux-test")
    builds.create_if_absent(BuildRecord(key=KEY, name="greet", version="1.0", options={}, spec={}, platform="linux-test"))
    queue.send(KEY)
    holder = builds.acquire_lease(KEY, "stalled-worker", now=clock.now, ttl=30.0)
    assert holder is not None
    lifecycle = build_lifecycle(FarmConfig.local(tmp_path), ports=ports, clock=clock)
    worker = Worker(
        lifecycle=lifecycle,
        queue=queue,
        fetcher=SourceFetcher(tmp_path / "sources"),
        settings=WorkerSettings(worker_id="other", workroot=tmp_path / "work"),
    )
    job = queue.receive(visibility_timeout=10.0, wait=0.0)
    assert job is not None
    worker.handle(job)

    assert queue.receive(visibility_timeout=10.0, wait=0.0) is None, "nothing to do while the holder's lease lives"
    clock.now += 31.0 + lifecycle.retry_delay  # the holder died: its lease has expired
    again = queue.receive(visibility_timeout=10.0, wait=0.0)
    assert again is not None and again.body == KEY, "the build's job was dropped: it would stay building for ever"
    assert builds.acquire_lease(KEY, "next-worker", now=clock.now, ttl=30.0) is not None
    record = builds.get(KEY)
    assert record is not None and record.status == BuildStatus.BUILDING
