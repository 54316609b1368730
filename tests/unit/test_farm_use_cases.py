"""Fast use-case tests of the farm service and the build lifecycle over the in-memory fakes (and, where the
promise is about stored bytes, the local adapters too): claim, dedup, waiters, fencing, the stale worker."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from pkgc.core.platform import detect_platform
from pkgc.core.protocol import BuildStatus, ResolveRequest
from pkgc.farm.adapters.memory import MemoryJobQueue, MemoryQueueRouter, memory_ports
from pkgc.farm.bootstrap import FarmConfig, open_ports
from pkgc.farm.embedded import publish_recipes
from pkgc.farm.ports import FarmPorts, Job, JobQueue
from pkgc.farm.service import FarmService
from pkgc.farm.work import Build, BuildLifecycle, Deferred, Failed, Skip, Waiting

TTL = 60.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Farm:
    service: FarmService
    lifecycle: BuildLifecycle
    ports: FarmPorts
    clock: Clock

    @property
    def queue(self) -> JobQueue:
        return self.ports.queues.for_platform(str(self.service.platform))

    def resolve(self, name: str, retry_failed: bool = False) -> dict[str, str]:
        answer = self.service.resolve(
            ResolveRequest.model_validate({"packages": [{"name": name}], "retry_failed": retry_failed})
        )
        return {info.name: info.key for info in answer.builds}

    def receive(self) -> Job | None:
        return self.queue.receive(visibility_timeout=TTL, wait=0)

    def sent(self) -> list[str]:
        queue = self.queue
        assert isinstance(queue, MemoryJobQueue)
        return queue.sent


def _farm(ports: FarmPorts, clock: Clock) -> Farm:
    service = FarmService.from_ports(
        ports,
        detect_platform(),
        clock=clock,
    )
    assert publish_recipes(service) == []
    return Farm(service, BuildLifecycle.from_ports(ports, clock=clock), ports, clock)


@pytest.fixture
def farm() -> Farm:
    clock = Clock()
    return _farm(memory_ports(clock=clock), clock)


def local_farm(tmp_path: Path) -> Farm:
    clock = Clock()
    return _farm(open_ports(FarmConfig.local(tmp_path), clock=clock), clock)


FARMS: list[Callable[[Path], Farm]] = [
    lambda _: _farm(memory_ports(clock=(clock := Clock())), clock),
    local_farm,
]


def _files(tmp_path: Path, content: bytes) -> tuple[Path, Path, str, int]:
    artifact, log = tmp_path / f"{hashlib.sha256(content).hexdigest()[:8]}.tar.zst", tmp_path / "build.log"
    artifact.write_bytes(content)
    log.write_bytes(b"log of " + content)
    return artifact, log, hashlib.sha256(content).hexdigest(), len(content)


def test_identical_resolves_make_one_build_and_one_job(farm: Farm) -> None:
    first = farm.resolve("hello")
    for _ in range(20):
        assert farm.resolve("hello") == first
    assert farm.sent() == [first["hello"]]


def test_a_job_is_claimed_once_and_a_finished_build_is_skipped(farm: Farm, tmp_path: Path) -> None:
    key = farm.resolve("hello")["hello"]
    claim = farm.lifecycle.claim(key, "w1", TTL)
    assert isinstance(claim, Build) and claim.spec.key == key and claim.lease.attempts == 1
    other = farm.lifecycle.claim(key, "w2", TTL)
    assert isinstance(other, Deferred) and other.delay >= TTL, "a live lease is another worker's"
    assert farm.lifecycle.publish(claim.lease, *_files(tmp_path, b"artifact"))
    assert isinstance(farm.lifecycle.claim(key, "w3", TTL), Skip)
    assert isinstance(farm.lifecycle.claim("not a key", "w3", TTL), Skip)
    record = farm.ports.builds.get(key)
    assert record is not None and record.status == BuildStatus.READY
    assert farm.service.build(key).url == farm.ports.blobs.url_for(record.artifact or "")


def test_a_dependency_building_for_an_hour_does_not_churn_the_queue(farm: Farm, tmp_path: Path) -> None:
    keys = farm.resolve("pigz")
    zlib, pigz = keys["zlib"], keys["pigz"]
    assert farm.sent() == [zlib], "pigz waits for zlib as its waiter, not in the queue"
    job = farm.receive()
    assert job is not None and job.body == zlib
    claim = farm.lifecycle.claim(job.body, "w1", TTL)
    assert isinstance(claim, Build)
    for _ in range(1800):  # an hour in 2 s steps: clients keep resolving, workers keep receiving
        farm.clock.now += 2.0
        farm.queue.extend(job, TTL)
        assert farm.lifecycle.renew(claim.lease, TTL, "compiling")
        assert farm.resolve("pigz") == keys
        early = farm.receive()
        if early is not None:
            assert early.body == pigz  # the 600 s safety net re-sent it: the worker drops it, still a waiter
            assert isinstance(farm.lifecycle.claim(early.body, "w2", TTL), Waiting)
            farm.queue.ack(early)
    assert len(farm.sent()) <= 1 + 3600 / farm.service.requeue_after + 1, farm.sent()
    assert farm.lifecycle.publish(claim.lease, *_files(tmp_path, b"zlib"))
    farm.queue.ack(job)
    assert farm.sent()[-1] == pigz, "finishing zlib sends its waiter's job"
    waiter_job = farm.receive()
    assert waiter_job is not None and waiter_job.body == pigz
    built = farm.lifecycle.claim(waiter_job.body, "w2", TTL)
    assert isinstance(built, Build) and [d.key for d in built.dependencies] == [zlib]


def test_a_build_whose_dependency_finished_first_is_sent_at_once(farm: Farm, tmp_path: Path) -> None:
    zlib = farm.resolve("zlib")["zlib"]
    claim = farm.lifecycle.claim(zlib, "w1", TTL)
    assert isinstance(claim, Build) and farm.lifecycle.publish(claim.lease, *_files(tmp_path, b"zlib"))
    pigz = farm.resolve("pigz")["pigz"]
    assert farm.sent() == [zlib, pigz]


def test_a_failed_dependency_fails_its_waiters(farm: Farm, tmp_path: Path) -> None:
    keys = farm.resolve("pigz")
    claim = farm.lifecycle.claim(keys["zlib"], "w1", TTL)
    assert isinstance(claim, Build)
    log = tmp_path / "zlib.log"
    log.write_bytes(b"cc: error\n")
    assert farm.lifecycle.fail(claim.lease, log, "cc exited 1")
    assert farm.sent()[-1] == keys["pigz"]
    failed = farm.lifecycle.claim(keys["pigz"], "w1", TTL)
    assert isinstance(failed, Failed) and "zlib failed" in failed.error
    record = farm.ports.builds.get(keys["pigz"])
    assert record is not None and record.status == BuildStatus.FAILED
    zlib = farm.service.build(keys["zlib"])
    assert zlib.log_url is not None and zlib.log_url.startswith("/v1/blobs/logs/sha256/")


def test_retrying_a_failed_build_with_a_failed_dependency_waits_for_the_dependency(farm: Farm) -> None:
    keys = farm.resolve("pigz")
    claim = farm.lifecycle.claim(keys["zlib"], "w1", TTL)
    assert isinstance(claim, Build) and farm.lifecycle.fail(claim.lease, None, "boom")
    assert isinstance(farm.lifecycle.claim(keys["pigz"], "w1", TTL), Failed)
    before = len(farm.sent())
    farm.resolve("pigz", retry_failed=True)
    assert farm.sent()[before:] == [keys["zlib"]], "pigz waits for the retried zlib"


def test_a_stopping_worker_gives_the_build_back_without_counting_the_attempt(farm: Farm) -> None:
    key = farm.resolve("hello")["hello"]
    claim = farm.lifecycle.claim(key, "w1", TTL)
    assert isinstance(claim, Build) and farm.lifecycle.release(claim.lease)
    again = farm.lifecycle.claim(key, "w2", TTL)
    assert isinstance(again, Build) and again.lease.attempts == 1
    assert not farm.lifecycle.renew(claim.lease, TTL), "the released lease is fenced off"


def test_a_build_that_keeps_losing_its_worker_gives_up(farm: Farm) -> None:
    key = farm.resolve("hello")["hello"]
    for attempt in range(1, farm.lifecycle.max_attempts + 1):
        claim = farm.lifecycle.claim(key, f"w{attempt}", TTL)
        assert isinstance(claim, Build) and claim.lease.attempts == attempt
        farm.clock.now += TTL + 1  # the worker died: its lease expires
    gave_up = farm.lifecycle.claim(key, "last", TTL)
    assert isinstance(gave_up, Failed) and "gave up" in gave_up.error


@pytest.mark.parametrize("make", FARMS, ids=["memory", "local"])
def test_a_stale_workers_late_publish_changes_nothing(make: Callable[[Path], Farm], tmp_path: Path) -> None:
    farm = make(tmp_path / "farm")
    key = farm.resolve("hello")["hello"]
    stale = farm.lifecycle.claim(key, "stalled", TTL)
    assert isinstance(stale, Build)
    farm.clock.now += TTL + 1  # the stalled worker's lease expired; another worker took over and finished
    current = farm.lifecycle.claim(key, "current", TTL)
    assert isinstance(current, Build)
    (tmp_path / "good").mkdir()
    assert farm.lifecycle.publish(current.lease, *_files(tmp_path / "good", b"good artifact"))
    ready = farm.ports.builds.get(key)
    assert ready is not None and ready.status == BuildStatus.READY and ready.artifact is not None
    served = farm.service.build(key)

    (tmp_path / "late").mkdir()
    assert not farm.lifecycle.publish(stale.lease, *_files(tmp_path / "late", b"stale artifact"))
    assert not farm.lifecycle.fail(stale.lease, None, "late failure")
    after = farm.ports.builds.get(key)
    assert after is not None and (after.artifact, after.sha256, after.status) == (
        ready.artifact,
        ready.sha256,
        BuildStatus.READY,
    )
    assert farm.ports.blobs.get_bytes(ready.artifact) == b"good artifact", "the served bytes never change"
    assert farm.service.build(key) == served


def test_the_queue_router_gives_each_platform_its_own_queue() -> None:
    router = MemoryQueueRouter()
    router.for_platform("linux-x86_64-glibc2.36").send("a")
    assert router.for_platform("linux-aarch64-glibc2.36").receive(visibility_timeout=1, wait=0) is None
