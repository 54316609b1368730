"""One contract suite per port, run against every adapter set: the in-memory fakes (the reference semantics), the
local adapters (SQLite and a directory) and the AWS adapters (boto3 against moto in server mode on loopback).

A test states what a port promises and can fail on any adapter; adapter-specific checks live in their own files.
Time: the fakes and SQLite take a clock the test moves; SQS keeps real time, so the queue tests use whole seconds
that are short and far enough apart for a loaded machine.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from pkgc.core.protocol import API_PREFIX, BuildStatus
from pkgc.farm.ports import (
    BlobStore,
    BuildRecord,
    BuildStore,
    CatalogStore,
    JobQueue,
    QueueRouter,
    content_blob_name,
)
from tests.moto_server import MotoServer, make_aws_settings

P1 = "linux-x86_64-glibc-2.36"
P2 = "linux-aarch64-musl-1.2"
MAX_RECEIVES = 3

def backends() -> list[Any]:
    return [pytest.param("memory", id="memory"), pytest.param("local", id="local"), pytest.param("aws", id="aws")]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Farm:
    """One backend's adapters, made on first use (a test of the build store never starts a queue)."""

    def __init__(self, kind: str, tmp_path: Path, moto: MotoServer | None) -> None:
        self.kind = kind
        self.tmp_path = tmp_path
        self.clock = FakeClock()
        self._moto = moto

    @cached_property
    def _aws(self) -> Any:
        from pkgc.farm.adapters.aws import aws_ports

        assert self._moto is not None
        return aws_ports(make_aws_settings(self._moto, (P1, P2), max_receive_count=MAX_RECEIVES))

    @cached_property
    def _engine(self) -> Any:
        from pkgc.farm.adapters.local import open_farm_database

        return open_farm_database(self.tmp_path / "farm.db")

    @cached_property
    def _memory(self) -> Any:
        from pkgc.farm.adapters.memory import memory_ports

        return memory_ports(clock=self.clock, max_receives=MAX_RECEIVES)

    @cached_property
    def builds(self) -> BuildStore:
        if self.kind == "local":
            from pkgc.farm.adapters.local import SqliteBuildStore

            return SqliteBuildStore(self._engine)  # type: ignore[return-value]
        return self._memory.builds if self.kind == "memory" else self._aws.builds  # type: ignore[no-any-return]

    @cached_property
    def catalog(self) -> CatalogStore:
        if self.kind == "local":
            from pkgc.farm.adapters.local import SqliteCatalogStore

            return SqliteCatalogStore(self._engine)  # type: ignore[return-value]
        return self._memory.catalog if self.kind == "memory" else self._aws.catalog  # type: ignore[no-any-return]

    @cached_property
    def queues(self) -> QueueRouter:
        """Queues for P1 and P2 whose jobs go to dead letters after MAX_RECEIVES receives."""
        if self.kind == "local":
            from pkgc.farm.adapters import local

            router = local.SqliteQueueRouter(
                self._engine, [P1, P2], max_receives=MAX_RECEIVES, clock=self.clock, poll_interval=0.01
            )
        else:
            router = self._memory.queues if self.kind == "memory" else self._aws.queues
        for platform in (P1, P2):
            router.for_platform(platform)  # the memory router makes its queues on first use
        return router  # type: ignore[no-any-return]

    @cached_property
    def queue(self) -> JobQueue:
        return self.queues.for_platform(P1)

    @cached_property
    def blobs(self) -> BlobStore:
        if self.kind == "local":
            from pkgc.farm.adapters.local import DirectoryBlobStore

            return DirectoryBlobStore(self.tmp_path / "blobs")  # type: ignore[return-value]
        return self._memory.blobs if self.kind == "memory" else self._aws.blobs  # type: ignore[no-any-return]

    def advance(self, seconds: float) -> None:
        """Let `seconds` pass: on the clock the fakes read, or for real on AWS."""
        if self.kind == "aws":
            time.sleep(seconds)
        else:
            self.clock.now += seconds


@pytest.fixture
def farm(request: pytest.FixtureRequest, tmp_path: Path) -> Farm:
    moto: MotoServer | None = None
    if request.param == "aws":  # only AWS tests start (and reset) the session's moto server
        moto = request.getfixturevalue("moto_server")
        request.getfixturevalue("aws_env")
    return Farm(request.param, tmp_path, moto)


def parametrize() -> pytest.MarkDecorator:
    return pytest.mark.parametrize("farm", backends(), indirect=True)


def record(key: str = "k" * 64, *, name: str = "hello", created_at: float = 1.0, **changes: Any) -> BuildRecord:
    fields: dict[str, Any] = {"version": "2.10", "options": {"opt": "O2"}, "spec": {"x": 1}, **changes}
    return BuildRecord(key=key, name=name, created_at=created_at, **fields)


def race(attempt: Callable[[], Any], callers: int = 20) -> list[Any]:
    """Run `attempt` in `callers` threads released at the same instant; return what each one got (or raised)."""
    results: list[Any] = []
    barrier = threading.Barrier(callers)

    def run() -> None:
        barrier.wait()
        try:
            results.append(attempt())
        except Exception as exc:  # surfaced by the assertion on results, not lost in a thread
            results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


# ---------------------------------------------------------------------------------------------------- BuildStore


@parametrize()
def test_create_if_absent_creates_once_under_concurrency(farm: Farm) -> None:
    builds = farm.builds
    stored_by_caller: list[BuildRecord] = []

    def create() -> bool:
        created, stored = builds.create_if_absent(record())
        stored_by_caller.append(stored)
        return created

    assert sorted(race(create)) == [False] * 19 + [True], "20 identical requests: exactly one creator"
    assert {(s.key, s.status, s.spec["x"]) for s in stored_by_caller} == {("k" * 64, BuildStatus.QUEUED, 1)}


@parametrize()
def test_loser_of_create_gets_the_current_record(farm: Farm) -> None:
    builds = farm.builds
    assert builds.create_if_absent(record())[0]
    lease = builds.acquire_lease("k" * 64, "w1", now=10.0, ttl=30.0)
    assert lease is not None
    created, current = builds.create_if_absent(record(spec={"x": 2}))
    assert not created
    assert current.status == BuildStatus.BUILDING and current.lease_owner == "w1" and current.spec == {"x": 1}


@parametrize()
def test_record_round_trips(farm: Farm) -> None:
    spec = {"x": 1, "nested": {"list": [1, 2.5, "three"], "flag": True}, "blob": "y" * 100_000}
    original = record(
        spec=spec,
        options={"opt": "O2", "lto": "on"},
        dependencies=("d" * 64,),
        runtime_dependencies=("r" * 64, "s" * 64),
        created_at=1_700_000_000.123456,
        updated_at=1_700_000_001.5,
        enqueued_at=1_700_000_002.25,
        platform=P1,
    )
    created, stored = farm.builds.create_if_absent(original)
    assert created and stored == original
    assert farm.builds.get("k" * 64) == original, "every field, floats and a 100 kB spec included, comes back"
    assert farm.builds.get("x" * 64) is None


@parametrize()
def test_lease_is_exclusive_and_fences_stale_holders(farm: Farm) -> None:
    builds = farm.builds
    builds.create_if_absent(record())
    first = builds.acquire_lease("k" * 64, "w1", now=100.0, ttl=10.0)
    assert first is not None and first.attempts == 1
    assert builds.acquire_lease("k" * 64, "w2", now=105.0, ttl=10.0) is None, "a live lease is exclusive"
    second = builds.acquire_lease("k" * 64, "w2", now=111.0, ttl=10.0)
    assert second is not None and second.token > first.token and second.attempts == 2
    assert not builds.renew_lease(first, now=112.0, ttl=10.0)
    assert not builds.finish(first, 112.0, status=BuildStatus.READY, artifact="late"), "stale writes are refused"
    assert not builds.release_lease(first, now=112.0)
    assert builds.renew_lease(second, now=112.0, ttl=10.0, last_line="compiling foo.c")
    stored = builds.get("k" * 64)
    assert stored is not None and stored.last_line == "compiling foo.c" and stored.lease_expires == 122.0
    assert builds.finish(second, 113.0, status=BuildStatus.READY, artifact="a", sha256="s", size=1, log="l")
    stored = builds.get("k" * 64)
    assert stored is not None and stored.status == BuildStatus.READY and stored.artifact == "a"
    assert stored.size == 1 and stored.log == "l" and stored.lease_owner is None
    assert builds.acquire_lease("k" * 64, "w3", now=999.0, ttl=10.0) is None, "a finished build is never leased"


@parametrize()
def test_a_stale_workers_late_finish_changes_nothing(farm: Farm) -> None:
    builds = farm.builds
    builds.create_if_absent(record())
    stale = builds.acquire_lease("k" * 64, "w1", now=1.0, ttl=5.0)
    fresh = builds.acquire_lease("k" * 64, "w1", now=10.0, ttl=5.0)  # the same worker id, a later lease
    assert stale is not None and fresh is not None and fresh.token == stale.token + 1
    assert builds.finish(fresh, 11.0, status=BuildStatus.READY, artifact="good", sha256="g", size=2, log="lg")
    before = builds.get("k" * 64)
    for status in (BuildStatus.READY, BuildStatus.FAILED):
        assert not builds.finish(stale, 12.0, status=status, artifact="evil", error="late")
    assert builds.get("k" * 64) == before
    with pytest.raises(ValueError):
        builds.finish(fresh, 13.0, status=BuildStatus.BUILDING)


@parametrize()
def test_release_returns_build_to_queue_without_counting_an_attempt(farm: Farm) -> None:
    builds = farm.builds
    builds.create_if_absent(record())
    lease = builds.acquire_lease("k" * 64, "w1", now=1.0, ttl=10.0)
    assert lease is not None and builds.release_lease(lease, now=2.0)
    stored = builds.get("k" * 64)
    assert stored is not None and stored.status == BuildStatus.QUEUED and stored.attempts == 0
    assert stored.lease_owner is None
    again = builds.acquire_lease("k" * 64, "w2", now=3.0, ttl=10.0)
    assert again is not None and again.attempts == 1 and again.token > lease.token


@parametrize()
def test_only_a_failed_build_is_requeued_and_only_once(farm: Farm) -> None:
    builds = farm.builds
    key = "k" * 64
    builds.create_if_absent(record())
    assert not builds.requeue_failed(key, now=1.0), "a queued build is not failed"
    assert not builds.requeue_failed("x" * 64, now=1.0), "an absent build is not failed"
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


@parametrize()
def test_get_many_returns_only_existing_across_batches(farm: Farm) -> None:
    builds = farm.builds
    keys = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(130)]  # DynamoDB: two batches of <= 100
    for key in keys:
        builds.create_if_absent(record(key))
    missing = "c" * 64
    found = builds.get_many([*keys, missing, keys[0]])  # a duplicate key: BatchGetItem refuses those
    assert set(found) == set(keys)
    assert all(found[key].key == key for key in keys)
    assert builds.get_many([]) == {}


@parametrize()
def test_mark_enqueued_notes_the_time_of_an_existing_build_only(farm: Farm) -> None:
    builds = farm.builds
    builds.create_if_absent(record())
    builds.mark_enqueued("k" * 64, now=42.5)
    builds.mark_enqueued("x" * 64, now=42.5)
    stored = builds.get("k" * 64)
    assert stored is not None and stored.enqueued_at == 42.5
    assert builds.get("x" * 64) is None, "marking an absent build creates nothing"


@parametrize()
def test_builds_of_is_newest_first_and_limited(farm: Farm) -> None:
    builds = farm.builds
    for index, created in enumerate((5.0, 1.0, 9.0, 3.0)):
        builds.create_if_absent(record(f"{index}" * 64, created_at=created))
    builds.create_if_absent(record("o" * 64, name="other", created_at=7.0))
    assert [r.created_at for r in builds.builds_of("hello")] == [9.0, 5.0, 3.0, 1.0]
    assert [r.key for r in builds.builds_of("hello", limit=2)] == ["2" * 64, "0" * 64]
    assert [r.key for r in builds.builds_of("other")] == ["o" * 64]
    assert builds.builds_of("absent") == []


@parametrize()
def test_add_waiter_is_an_atomic_set_add(farm: Farm) -> None:
    builds = farm.builds
    builds.create_if_absent(record())
    waiters = [f"{i:02d}" * 32 for i in range(20)]
    answers = race(lambda: builds.add_waiter("k" * 64, waiters.pop()))
    assert all(isinstance(a, BuildRecord) and a.key == "k" * 64 for a in answers), answers
    stored = builds.get("k" * 64)
    assert stored is not None and len(stored.waiters) == 20, "no concurrent add was lost"
    assert set(stored.waiters) == {f"{i:02d}" * 32 for i in range(20)}
    again = builds.add_waiter("k" * 64, "00" * 32)
    assert again is not None and len(again.waiters) == 20, "a waiter is noted once"
    assert builds.add_waiter("x" * 64, "00" * 32) is None, "an absent dependency: None, and nothing created"
    assert builds.get("x" * 64) is None


@parametrize()
def test_add_waiter_returns_the_dependency_as_stored_after_the_write(farm: Farm) -> None:
    builds = farm.builds
    builds.create_if_absent(record())
    lease = builds.acquire_lease("k" * 64, "w1", now=1.0, ttl=10.0)
    assert lease is not None
    assert builds.finish(lease, 2.0, status=BuildStatus.READY, artifact="a", sha256="s", size=1, log="l")
    answer = builds.add_waiter("k" * 64, "w" * 64)
    assert answer is not None and answer.status == BuildStatus.READY and answer.waiters == ("w" * 64,)
    stored = builds.get("k" * 64)
    assert stored is not None and stored.waiters == ("w" * 64,) and stored.artifact == "a"


# ------------------------------------------------------------------------------------------------------ JobQueue


@parametrize()
def test_queue_visibility_redelivery_and_ack(farm: Farm) -> None:
    queue = farm.queue
    queue.send("job-1")
    job = queue.receive(visibility_timeout=2, wait=2)
    assert job is not None and job.body == "job-1" and job.receive_count == 1
    assert queue.receive(visibility_timeout=2, wait=0) is None, "hidden while in flight"
    assert queue.depth() == 1, "a job in flight is still in the queue"
    farm.advance(1.2)
    queue.extend(job, 2)
    farm.advance(1.3)
    assert queue.receive(visibility_timeout=2, wait=0) is None, "extended visibility holds"
    farm.advance(1.3)
    again = queue.receive(visibility_timeout=2, wait=2)
    assert again is not None and again.body == "job-1" and again.receive_count == 2
    queue.ack(again)
    queue.ack(again)  # acking twice is harmless
    farm.advance(2.2)
    assert queue.receive(visibility_timeout=2, wait=0) is None
    assert queue.depth() == 0


@parametrize()
def test_retry_later_hides_the_job_for_the_delay(farm: Farm) -> None:
    queue = farm.queue
    queue.send("job-2")
    job = queue.receive(visibility_timeout=30, wait=2)
    assert job is not None
    queue.retry_later(job, 1)
    assert queue.receive(visibility_timeout=30, wait=0) is None
    farm.advance(1.3)
    again = queue.receive(visibility_timeout=30, wait=2)
    assert again is not None and again.body == "job-2" and again.receive_count == 2


@parametrize()
def test_queue_delay_and_dead_letter_after_max_receives(farm: Farm) -> None:
    queue = farm.queue
    queue.send("later", delay=1)
    assert queue.receive(visibility_timeout=1, wait=0) is None, "delayed"
    farm.advance(1.3)
    for attempt in range(1, MAX_RECEIVES + 1):
        job = queue.receive(visibility_timeout=1, wait=2)
        assert job is not None and job.body == "later" and job.receive_count == attempt
        farm.advance(1.3)
    assert queue.receive(visibility_timeout=1, wait=0) is None, "too many receives: dead-lettered"
    assert queue.dead_letter_count() == 1
    assert queue.depth() == 0


@parametrize()
def test_dead_letters_are_received_hidden_and_deleted(farm: Farm) -> None:
    queue = farm.queue
    assert queue.receive_dead_letter(visibility_timeout=1) is None, "no dead letters yet"
    queue.send("doomed")
    for _ in range(MAX_RECEIVES):
        assert queue.receive(visibility_timeout=1, wait=2) is not None
        farm.advance(1.3)
    assert queue.receive(visibility_timeout=1, wait=0) is None and queue.dead_letter_count() == 1
    dead = queue.receive_dead_letter(visibility_timeout=30)
    assert dead is not None and dead.body == "doomed"
    assert queue.receive_dead_letter(visibility_timeout=30) is None, "hidden from other readers meanwhile"
    assert queue.receive(visibility_timeout=1, wait=0) is None, "a dead letter never goes back to the workers"
    queue.delete_dead_letter(dead)
    assert queue.dead_letter_count() == 0 and queue.depth() == 0


@parametrize()
def test_router_sends_each_platforms_jobs_to_its_own_queue(farm: Farm) -> None:
    router = farm.queues
    assert {P1, P2} <= set(router.platforms())
    router.for_platform(P1).send("for-x86")
    router.for_platform(P2).send("for-arm")
    arm = router.for_platform(P2).receive(visibility_timeout=30, wait=2)
    x86 = router.for_platform(P1).receive(visibility_timeout=30, wait=2)
    assert arm is not None and arm.body == "for-arm"
    assert x86 is not None and x86.body == "for-x86"
    assert router.for_platform(P2).receive(visibility_timeout=30, wait=0) is None, "no other platform's job"


@pytest.mark.parametrize("farm", ["memory", "aws"], indirect=True)
def test_receive_waits_for_a_job_sent_meanwhile(farm: Farm) -> None:
    """Long polling: a receiver already waiting gets a job sent after it started (real time on both)."""
    queue = farm.queue
    threading.Timer(0.5, lambda: queue.send("late")).start()
    started = time.monotonic()
    job = queue.receive(visibility_timeout=30, wait=5)
    assert job is not None and job.body == "late"
    assert time.monotonic() - started < 4.5


# ----------------------------------------------------------------------------------------------------- BlobStore


@parametrize()
def test_put_content_is_content_addressed(farm: Farm, tmp_path: Path) -> None:
    blobs = farm.blobs
    artifact = tmp_path / "hello.tar.zst"
    artifact.write_bytes(b"\x28\xb5\x2f\xfd" + bytes(range(256)) * 40)
    digest = hashlib.sha256(artifact.read_bytes()).hexdigest()
    name = blobs.put_content("artifacts", artifact)
    assert name == content_blob_name("artifacts", digest) == f"artifacts/sha256/{digest[:2]}/{digest}.tar.zst"
    assert blobs.exists(name) and blobs.get_bytes(name) == artifact.read_bytes()
    log = tmp_path / "build.log"
    log.write_text("cc -O2 hello.c\n")
    log_name = blobs.put_content("logs", log)
    assert log_name.startswith("logs/sha256/") and log_name.endswith(".log")
    assert blobs.get_bytes(log_name) == b"cc -O2 hello.c\n"
    copy = tmp_path / "copy"
    copy.write_bytes(artifact.read_bytes())
    assert blobs.put_content("artifacts", copy) == name, "same content, same name"


@parametrize()
def test_put_content_writes_only_if_absent(farm: Farm, tmp_path: Path) -> None:
    blobs = farm.blobs
    source = tmp_path / "a.log"
    source.write_bytes(b"first")
    name = blobs.put_content("logs", source)
    if farm.kind == "local":  # its put_named refuses content names: plant the earlier copy as a file
        planted = farm.tmp_path / "blobs" / name
        planted.write_bytes(b"already there")
    else:
        blobs.put_named(name, b"already there")  # stands in for the copy an earlier worker stored
    assert blobs.put_content("logs", source) == name
    assert blobs.get_bytes(name) == b"already there", "an existing blob is never rewritten"


@parametrize()
def test_put_content_races_store_one_blob(farm: Farm, tmp_path: Path) -> None:
    blobs = farm.blobs
    source = tmp_path / "a.tar.zst"
    source.write_bytes(b"same bytes from every worker" * 1000)
    names = race(lambda: blobs.put_content("artifacts", source), callers=10)
    assert len(set(names)) == 1 and isinstance(names[0], str), names
    assert blobs.get_bytes(names[0]) == source.read_bytes()


@parametrize()
def test_named_blobs_round_trip_and_refuse_escapes(farm: Farm, tmp_path: Path) -> None:
    blobs = farm.blobs
    blobs.put_named("catalog/snapshot.json", b"[1]")
    blobs.put_named("catalog/snapshot.json", b"[1, 2]")
    assert blobs.get_bytes("catalog/snapshot.json") == b"[1, 2]", "named blobs are replaced"
    out = tmp_path / "out.json"
    assert blobs.download_to("catalog/snapshot.json", out) and out.read_bytes() == b"[1, 2]"
    assert blobs.exists("catalog/snapshot.json")
    assert blobs.get_bytes("missing/blob") is None and not blobs.exists("missing/blob")
    assert not blobs.download_to("missing/blob", tmp_path / "nothing")
    assert not (tmp_path / "nothing").exists()


@pytest.mark.parametrize(
    "farm", ["local", "aws"], indirect=True
)  # the memory fake's names are dictionary keys: nothing to escape from
def test_blob_names_that_escape_are_refused(farm: Farm, tmp_path: Path) -> None:
    for name in ("../escape", "a/../../b", "/etc/passwd"):
        with pytest.raises(ValueError):
            farm.blobs.put_named(name, b"x")
        with pytest.raises(ValueError):
            farm.blobs.get_bytes(name)
        with pytest.raises(ValueError):
            farm.blobs.download_to(name, tmp_path / "out")


@parametrize()
def test_url_for_is_an_api_path_or_an_absolute_url(farm: Farm, tmp_path: Path) -> None:
    source = tmp_path / "a.log"
    source.write_bytes(b"log text")
    name = farm.blobs.put_content("logs", source)
    url = farm.blobs.url_for(name)
    if url.startswith("/"):
        assert url == f"{API_PREFIX}/blobs/{name}"
    else:
        parts = urlsplit(url)
        assert parts.scheme in ("http", "https") and parts.netloc and parts.path.endswith(name)


@parametrize()
def test_url_lifetime_says_how_long_a_url_serves(farm: Farm, tmp_path: Path) -> None:
    """None for URLs that never expire (an API path, a CDN); else positive, and a presigned URL states the same."""
    source = tmp_path / "a.log"
    source.write_bytes(b"log text")
    url = farm.blobs.url_for(farm.blobs.put_content("logs", source))
    lifetime = farm.blobs.url_lifetime()
    if url.startswith("/"):
        assert lifetime is None, "an API path serves as long as the blob is there"
    if "X-Amz-Expires" in url:  # presigned S3 (no CDN): the lifetime is the signature's
        assert lifetime is not None and lifetime > 0
        assert parse_qs(urlsplit(url).query)["X-Amz-Expires"] == [f"{lifetime:.0f}"]
    assert farm.kind != "aws" or lifetime is not None, "the contract suite's AWS farm has no CDN: presigned URLs"


# -------------------------------------------------------------------------------------------------- CatalogStore


@parametrize()
def test_catalog_recipes_round_trip(farm: Farm) -> None:
    catalog = farm.catalog
    catalog.put_recipe("zlib", "name = 'zlib'\n", "compression", "1.3")
    catalog.put_recipe("hello", "name = 'hello'\n", "greeting", "2.10")
    catalog.put_recipe("zlib", "name = 'zlib' # 1.3.1\n", "compression library", "1.3.1")
    assert catalog.get_recipe_text("zlib") == "name = 'zlib' # 1.3.1\n"
    assert catalog.get_recipe_text("absent") is None
    assert catalog.list_packages() == [("hello", "greeting", "2.10"), ("zlib", "compression library", "1.3.1")]


@parametrize()
def test_catalog_snapshot_round_trips(farm: Farm) -> None:
    catalog = farm.catalog
    assert catalog.read_snapshot() is None
    catalog.write_snapshot(b'{"packages": []}')
    catalog.write_snapshot(b'{"packages": [["zlib", "compression", "1.3"]]}')
    assert catalog.read_snapshot() == b'{"packages": [["zlib", "compression", "1.3"]]}'
