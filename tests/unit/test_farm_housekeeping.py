"""Use-case tests on the in-memory fakes: the wait's safety net for stranded waiters, burying dead jobs (a build
whose job reached the dead letters is marked failed with a reason, fenced), the backlog publication, and the wait
settings the composition root hands the service."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pkgc.core.errors import UsageError
from pkgc.core.protocol import BuildStatus, ResolveRequest
from pkgc.farm.adapters.memory import MemoryBacklogMetrics, memory_ports
from pkgc.farm.bootstrap import AWS_WAIT_POLL_SECONDS, FarmConfig, farm_service
from pkgc.farm.embedded import publish_recipes
from pkgc.farm.housekeeping import tend
from pkgc.farm.work import Build
from tests.unit.test_farm_use_cases import TTL, Clock, Farm, _farm, _files


@pytest.fixture
def farm() -> Farm:
    clock = Clock()
    return _farm(memory_ports(clock=clock, max_receives=2), clock)


def _strand_waiter(farm: Farm) -> tuple[str, str]:
    """pigz waits for zlib; zlib's worker dies right after its fenced finish, before sending pigz's job."""
    keys = farm.resolve("pigz")
    zlib, pigz = keys["zlib"], keys["pigz"]
    claim = farm.lifecycle.claim(zlib, "w1", TTL)
    assert isinstance(claim, Build)
    assert farm.ports.builds.finish(claim.lease, farm.clock(), status=BuildStatus.READY, artifact="a", sha256="s", size=1)
    assert farm.sent() == [zlib], "nobody sent pigz's job"
    return zlib, pigz


def test_wait_resends_a_waiter_stranded_by_a_worker_that_died_after_its_finish(farm: Farm) -> None:
    _, pigz = _strand_waiter(farm)
    assert farm.service.wait([pigz], 0).pending == [pigz]
    assert farm.sent()[-1] != pigz, "not before requeue_after: the waiter may just be about to be sent"
    farm.clock.now += farm.service.requeue_after + 1
    answer = farm.service.wait([pigz], 0)
    assert answer.pending == [pigz]
    assert farm.sent()[-1] == pigz, "the wait that saw it stale sent its job"
    sends = len(farm.sent())
    for _ in range(5):
        farm.service.wait([pigz], 0)
    assert len(farm.sent()) == sends, "the timer restarted: many waiting clients send it once"
    job = farm.receive()
    while job is not None and job.body != pigz:
        job = farm.receive()
    assert job is not None and isinstance(farm.lifecycle.claim(job.body, "w2", TTL), Build)


def test_wait_leaves_a_waiter_whose_dependency_is_still_building_to_the_dependency(farm: Farm) -> None:
    keys = farm.resolve("pigz")
    claim = farm.lifecycle.claim(keys["zlib"], "w1", TTL)
    assert isinstance(claim, Build)
    farm.clock.now += farm.service.requeue_after + 1
    assert farm.lifecycle.renew(claim.lease, TTL)
    farm.service.wait([keys["pigz"], keys["zlib"]], 0)
    assert farm.sent() == [keys["zlib"]], "no job while zlib builds; pigz stays zlib's waiter"
    zlib = farm.ports.builds.get(keys["zlib"])
    assert zlib is not None and keys["pigz"] in zlib.waiters


def test_wait_resends_a_queued_build_whose_job_was_lost(farm: Farm) -> None:
    key = farm.resolve("hello")["hello"]
    lost = farm.receive()
    assert lost is not None
    farm.queue.ack(lost)  # e.g. a worker of an older version acknowledged it without building
    farm.clock.now += farm.service.requeue_after + 1
    farm.service.wait([key], 0)
    assert farm.sent() == [key, key]


def _kill_worker_each_time(farm: Farm, key: str, times: int) -> None:
    """A job whose build kills its worker: each receive takes the lease, then the worker dies (no ack)."""
    for _ in range(times):
        job = farm.receive()
        assert job is not None and job.body == key
        assert isinstance(farm.lifecycle.claim(job.body, "doomed", TTL), Build)
        farm.clock.now += TTL + 1  # the job's visibility and the lease run out


def test_a_dead_job_fails_its_build_with_the_reason_and_its_waiters_follow(farm: Farm) -> None:
    keys = farm.resolve("pigz")
    zlib, pigz = keys["zlib"], keys["pigz"]
    _kill_worker_each_time(farm, zlib, 2)
    assert farm.receive() is None and farm.queue.dead_letter_count() == 1, "two receives: dead-lettered"
    metrics = MemoryBacklogMetrics()
    report = tend(farm.lifecycle, metrics)
    platform = str(farm.service.platform)
    (buried,) = report.buried[platform]
    assert buried[1].outcome == "failed"
    record = farm.ports.builds.get(zlib)
    assert record is not None and record.status == BuildStatus.FAILED
    assert record.error.startswith("the worker crashed 2 times building it; see its log")
    assert farm.service.build(zlib).error == record.error, "the client is told why"
    assert farm.queue.dead_letter_count() == 0, "the dead letter is deleted"
    assert farm.sent()[-1] == pigz, "its waiter's job is sent, and fails at once"
    assert metrics.published == [{platform: 1}]
    assert json.loads(json.dumps(report.summary()))["backlog"] == {platform: 1}


def test_burying_never_touches_a_ready_build_nor_one_a_live_worker_holds(farm: Farm, tmp_path: Path) -> None:
    key = farm.resolve("hello")["hello"]
    _kill_worker_each_time(farm, key, 2)
    assert farm.receive() is None and farm.queue.dead_letter_count() == 1
    claim = farm.lifecycle.claim(key, "alive", TTL)  # a duplicate job reached a healthy worker meanwhile
    assert isinstance(claim, Build)
    metrics = MemoryBacklogMetrics()
    (kept,) = tend(farm.lifecycle, metrics).buried[str(farm.service.platform)]
    assert kept[1].outcome == "kept" and farm.queue.dead_letter_count() == 1, "looked at again later"
    record = farm.ports.builds.get(key)
    assert record is not None and record.status == BuildStatus.BUILDING and record.lease_owner == "alive"
    assert farm.lifecycle.publish(claim.lease, *_files(tmp_path, b"hello"))
    farm.clock.now += 60  # the kept dead letter is visible again
    (dropped,) = tend(farm.lifecycle, metrics).buried[str(farm.service.platform)]
    assert dropped[1].outcome == "dropped" and farm.queue.dead_letter_count() == 0
    ready = farm.ports.builds.get(key)
    assert ready is not None and ready.status == BuildStatus.READY and ready.error is None, "READY stays READY"
    assert farm.lifecycle.bury("not a key").outcome == "dropped"


def test_the_wait_settings_come_from_the_composition_root(tmp_path: Path) -> None:
    aws = {
        "PKGC_FARM_BACKEND": "aws",
        "PKGC_AWS_BUILDS_TABLE": "b",
        "PKGC_AWS_CATALOG_TABLE": "c",
        "PKGC_AWS_BUCKET": "k",
        "PKGC_AWS_QUEUES": '{"linux-x86_64-glibc-2.36": "http://127.0.0.1:1/q"}',
        "AWS_REGION": "us-east-1",
    }
    config = FarmConfig.from_env(aws)
    assert config.wait_poll == AWS_WAIT_POLL_SECONDS == 1.0 and config.wait_max == 20.0
    tuned = FarmConfig.from_env({**aws, "PKGC_FARM_WAIT_MAX_SECONDS": "15", "PKGC_FARM_WAIT_POLL_SECONDS": "0.5"})
    assert (tuned.wait_poll, tuned.wait_max) == (0.5, 15.0)
    for name, value in (("PKGC_FARM_WAIT_MAX_SECONDS", "25"), ("PKGC_FARM_WAIT_POLL_SECONDS", "nan")):
        with pytest.raises(UsageError, match=name):
            FarmConfig.from_env({**aws, name: value})
    local = FarmConfig.from_env({"PKGC_FARM_WAIT_MAX_SECONDS": "2"}, home=tmp_path)
    service = farm_service(local)
    assert service.poll_interval == 0.1 and service.max_wait == 2.0
    assert publish_recipes(service) == []
    clock = Clock()
    service.clock = clock

    def sleep(seconds: float) -> None:
        clock.now += seconds

    service.sleep = sleep
    key = service.resolve(ResolveRequest.model_validate({"packages": [{"name": "hello"}]})).builds[0].key
    start = clock.now
    answer = service.wait([key], 20)
    assert answer.pending == [key] and clock.now - start == pytest.approx(2.0), "clamped to the configured 2 s"
