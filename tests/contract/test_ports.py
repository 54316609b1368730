"""One contract suite per port, run against every adapter that implements it (today: SQLite and a directory;
the AWS adapters join the parameter lists when they exist)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from pkgc.core.protocol import BuildStatus
from pkgc.farm.adapters.local import (
    DirectoryBlobStore,
    SqliteBuildStore,
    SqliteJobQueue,
    open_farm_database,
)
from pkgc.farm.ports import BlobStore, BuildRecord, BuildStore, JobQueue, content_blob_name


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sqlite_builds(tmp_path: Path) -> BuildStore:
    return SqliteBuildStore(open_farm_database(tmp_path / "farm.db"))


def sqlite_queue(tmp_path: Path, clock: FakeClock) -> JobQueue:
    return SqliteJobQueue(open_farm_database(tmp_path / "farm.db"), max_receives=3, clock=clock, poll_interval=0.01)


BUILD_STORES: list[Callable[[Path], BuildStore]] = [sqlite_builds]
QUEUES: list[Callable[[Path, FakeClock], JobQueue]] = [sqlite_queue]
BLOB_STORES: list[Callable[[Path], BlobStore]] = [lambda p: DirectoryBlobStore(p / "blobs")]


def record(key: str = "k" * 64) -> BuildRecord:
    return BuildRecord(key=key, name="hello", version="2.10", options={"opt": "O2"}, spec={"x": 1}, created_at=1.0)


@pytest.fixture(params=BUILD_STORES)
def builds(request: pytest.FixtureRequest, tmp_path: Path) -> BuildStore:
    return request.param(tmp_path)  # type: ignore[no-any-return]


@pytest.fixture(params=QUEUES)
def queue_and_clock(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[JobQueue, FakeClock]:
    clock = FakeClock()
    return request.param(tmp_path, clock), clock


@pytest.fixture(params=BLOB_STORES)
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    return request.param(tmp_path)  # type: ignore[no-any-return]


def race(attempt: Callable[[], bool], callers: int = 20) -> list[bool]:
    """Run `attempt` in `callers` threads released at the same instant; return what each one got."""
    results: list[bool] = []
    barrier = threading.Barrier(callers)

    def run() -> None:
        barrier.wait()
        results.append(attempt())

    threads = [threading.Thread(target=run) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_create_if_absent_creates_once_under_concurrency(builds: BuildStore) -> None:
    def create() -> bool:
        created, stored = builds.create_if_absent(record())
        assert stored.key == "k" * 64
        return created

    assert sorted(race(create)) == [False] * 19 + [True]


def test_lease_is_exclusive_and_fences_stale_holders(builds: BuildStore) -> None:
    builds.create_if_absent(record())
    first = builds.acquire_lease("k" * 64, "w1", now=100.0, ttl=10.0)
    assert first is not None and first.attempts == 1
    assert builds.acquire_lease("k" * 64, "w2", now=105.0, ttl=10.0) is None, "a live lease is exclusive"
    second = builds.acquire_lease("k" * 64, "w2", now=111.0, ttl=10.0)
    assert second is not None and second.token > first.token and second.attempts == 2
    assert not builds.renew_lease(first, now=112.0, ttl=10.0)
    assert not builds.finish(first, 112.0, status=BuildStatus.READY, artifact="late"), "stale writes are refused"
    assert builds.renew_lease(second, now=112.0, ttl=10.0)
    assert builds.finish(second, 113.0, status=BuildStatus.READY, artifact="a", sha256="s", size=1, log="l")
    stored = builds.get("k" * 64)
    assert stored is not None and stored.status == BuildStatus.READY and stored.artifact == "a"
    assert builds.acquire_lease("k" * 64, "w3", now=999.0, ttl=10.0) is None, "a finished build is never leased"


def test_release_returns_build_to_queue_without_counting_an_attempt(builds: BuildStore) -> None:
    builds.create_if_absent(record())
    lease = builds.acquire_lease("k" * 64, "w1", now=1.0, ttl=10.0)
    assert lease is not None and builds.release_lease(lease, now=2.0)
    stored = builds.get("k" * 64)
    assert stored is not None and stored.status == BuildStatus.QUEUED and stored.attempts == 0
    again = builds.acquire_lease("k" * 64, "w2", now=3.0, ttl=10.0)
    assert again is not None and again.attempts == 1


def test_only_a_failed_build_is_requeued_and_only_once(builds: BuildStore) -> None:
    key = "k" * 64
    builds.create_if_absent(record())
    assert not builds.requeue_failed(key, now=1.0), "a queued build is not failed"
    lease = builds.acquire_lease(key, "w1", now=2.0, ttl=10.0)
    assert lease is not None
    assert not builds.requeue_failed(key, now=3.0), "a build in progress is not failed"
    assert builds.finish(lease, 4.0, status=BuildStatus.FAILED, log="old-log", error="cc exited 1")

    assert sorted(race(lambda: builds.requeue_failed(key, now=5.0))) == [False] * 19 + [True]
    stored = builds.get(key)
    assert stored is not None and stored.status == BuildStatus.QUEUED
    assert stored.error is None and stored.attempts == 0 and stored.lease_owner is None
    again = builds.acquire_lease(key, "w2", now=6.0, ttl=10.0)
    assert again is not None and again.token > lease.token and again.attempts == 1
    assert not builds.finish(lease, 7.0, status=BuildStatus.FAILED), "the first try's lease stays fenced off"
    assert builds.finish(again, 8.0, status=BuildStatus.READY, artifact="a", sha256="s", size=1, log="l")
    assert not builds.requeue_failed(key, now=9.0), "a ready build is never rebuilt"


def test_get_many_returns_only_existing(builds: BuildStore) -> None:
    builds.create_if_absent(record("a" * 64))
    builds.create_if_absent(record("b" * 64))
    assert set(builds.get_many(["a" * 64, "b" * 64, "c" * 64])) == {"a" * 64, "b" * 64}
    assert builds.get_many([]) == {}


def test_queue_visibility_redelivery_and_ack(queue_and_clock: tuple[JobQueue, FakeClock]) -> None:
    queue, clock = queue_and_clock
    queue.send("job-1")
    job = queue.receive(visibility_timeout=30, wait=0)
    assert job is not None and job.body == "job-1" and job.receive_count == 1
    assert queue.receive(visibility_timeout=30, wait=0) is None, "hidden while in flight"
    clock.now += 20
    queue.extend(job, 30)
    clock.now += 20
    assert queue.receive(visibility_timeout=30, wait=0) is None, "extended visibility holds"
    clock.now += 31
    again = queue.receive(visibility_timeout=30, wait=0)
    assert again is not None and again.body == "job-1" and again.receive_count == 2
    queue.ack(again)
    clock.now += 100
    assert queue.receive(visibility_timeout=30, wait=0) is None
    assert queue.depth() == 0


def test_queue_delay_and_dead_letter(queue_and_clock: tuple[JobQueue, FakeClock]) -> None:
    queue, clock = queue_and_clock
    queue.send("later", delay=10)
    assert queue.receive(visibility_timeout=5, wait=0) is None
    clock.now += 11
    for _ in range(3):
        job = queue.receive(visibility_timeout=5, wait=0)
        assert job is not None and job.body == "later"
        clock.now += 6
    assert queue.receive(visibility_timeout=5, wait=0) is None, "too many receives: dead-lettered"
    assert queue.dead_letter_count() == 1


def test_blobs_round_trip_and_refuse_escapes(blobs: BlobStore, tmp_path: Path) -> None:
    log = tmp_path / "build.log"
    log.write_bytes(b"hello")
    name = blobs.put_content("logs", log)
    assert name == content_blob_name("logs", hashlib.sha256(b"hello").hexdigest())
    assert blobs.get_bytes(name) == b"hello" and blobs.exists(name)
    source = tmp_path / "src.bin"
    source.write_bytes(b"\0" * 1000)
    artifact = blobs.put_content("artifacts", source)
    assert artifact.startswith("artifacts/sha256/") and artifact.endswith(".tar.zst")
    out = tmp_path / "out.bin"
    assert blobs.download_to(artifact, out) and out.read_bytes() == b"\0" * 1000
    assert blobs.get_bytes("missing") is None and not blobs.exists("missing")
    assert not blobs.download_to("missing", tmp_path / "nothing")
    blobs.put_named("catalog/snapshot.json", b"[1]")
    blobs.put_named("catalog/snapshot.json", b"[2]")
    assert blobs.get_bytes("catalog/snapshot.json") == b"[2]"
    url = blobs.url_for(artifact)
    assert url.endswith(artifact) and url.startswith(("/v1/", "http://", "https://"))
    with pytest.raises(ValueError):
        blobs.put_named("../escape", b"x")


def test_content_blobs_are_written_once_and_never_replaced(blobs: BlobStore, tmp_path: Path) -> None:
    first = tmp_path / "a.tar.zst"
    first.write_bytes(b"artifact bytes")
    name = blobs.put_content("artifacts", first)
    again = tmp_path / "b.tar.zst"
    again.write_bytes(b"artifact bytes")
    assert blobs.put_content("artifacts", again) == name
    other = tmp_path / "c.tar.zst"
    other.write_bytes(b"other bytes")
    assert blobs.put_content("artifacts", other) != name
    assert blobs.get_bytes(name) == b"artifact bytes"
