"""The farm's life rules without a farm: who is the supervisor, the home lock, restart backoff, log rotation,
the idle setting, activity tracking and the async long-poll."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pkgc.client.settings import resolve, settings_from, validate_document
from pkgc.core.errors import UsageError
from pkgc.core.protocol import BuildStatus
from pkgc.farm.adapters.local import SqliteBuildStore, SqliteJobQueue, open_farm_database
from pkgc.farm.bootstrap import FarmConfig, farm_service
from pkgc.farm.embedded import ActivityTracker
from pkgc.farm.lifecycle import (
    RestartPolicy,
    active_builds,
    clean_work_dirs,
    home_is_locked,
    is_supervisor_of,
    process_start_time,
    rotate_log,
    try_lock_home,
)
from pkgc.farm.ports import BuildRecord
from pkgc.farm.service import FarmService


def _lookalike(home: Path) -> subprocess.Popen[bytes]:
    """A process whose command line is a supervisor's for `home` (python -c ignores the arguments after it)."""
    code = "import time; time.sleep(60)"
    return subprocess.Popen([sys.executable, "-c", code, "-m", "pkgc.farm.embedded", "serve", "--home", str(home)])


def test_only_the_supervisor_of_this_home_started_at_that_time_counts(tmp_path: Path) -> None:
    home = tmp_path / "farm"
    bystander = subprocess.Popen(["sleep", "60"])
    supervisor = _lookalike(home)
    try:
        assert not is_supervisor_of(bystander.pid, home)
        deadline = time.monotonic() + 10
        while not is_supervisor_of(supervisor.pid, home):  # its command line appears once it has exec'd
            assert time.monotonic() < deadline
            time.sleep(0.05)
        started = process_start_time(supervisor.pid)
        assert started is not None
        assert is_supervisor_of(supervisor.pid, home, started)
        assert not is_supervisor_of(supervisor.pid, home, started - 1)  # same pid, another process (pid reuse)
        assert not is_supervisor_of(supervisor.pid, tmp_path / "other")
    finally:
        for process in (bystander, supervisor):
            process.kill()
            process.wait()
    assert not is_supervisor_of(supervisor.pid, home)


def test_the_home_lock_is_exclusive_and_probing_it_does_not_take_it(tmp_path: Path) -> None:
    assert not home_is_locked(tmp_path)
    held = try_lock_home(tmp_path)
    assert held is not None
    assert home_is_locked(tmp_path)
    assert try_lock_home(tmp_path) is None
    held.close()
    assert not home_is_locked(tmp_path)
    again = try_lock_home(tmp_path)
    assert again is not None
    again.close()


def test_restart_delay_doubles_after_quick_exits_is_capped_and_resets() -> None:
    policy = RestartPolicy(first_delay=0.5, cap=4.0, quick=10.0, failing_after=3)
    delays = [policy.exited("w1", 0.2) for _ in range(6)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert policy.failing
    policy.lived("w1")
    assert not policy.failing
    assert policy.exited("w1", 0.2) == 0.5
    assert policy.exited("w1", 60.0) == 0.0  # a long-lived worker that dies is started again at once
    assert not policy.failing


def test_log_is_copied_and_truncated_past_its_size_keeping_two_old_files(tmp_path: Path) -> None:
    log = tmp_path / "farm.log"
    with log.open("ab") as writer:  # a writer that keeps its descriptor, as the workers do
        for round_ in range(4):
            writer.write(f"round {round_}\n".encode() * 100)
            writer.flush()
            assert rotate_log(log, 500)
        writer.write(b"after\n")
        writer.flush()
    assert log.read_bytes() == b"after\n"  # appending continued at the start of the truncated file
    assert log.with_name("farm.log.1").read_text().startswith("round 3")
    assert log.with_name("farm.log.2").read_text().startswith("round 2")
    assert not log.with_name("farm.log.3").exists()
    assert not rotate_log(log, 500)


def test_leftover_work_dirs_are_removed(tmp_path: Path) -> None:
    (tmp_path / "work" / "hello-x1" / "src").mkdir(parents=True)
    (tmp_path / "work" / "stray.tmp").write_text("x")
    assert clean_work_dirs(tmp_path / "work") == 2
    assert list((tmp_path / "work").iterdir()) == []
    assert clean_work_dirs(tmp_path / "missing") == 0


def test_farm_idle_timeout_setting_and_its_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("PKGC_FARM_IDLE_TIMEOUT", raising=False)
    path = tmp_path / "config.toml"

    def loaded(values: dict[str, object]) -> float:
        return settings_from(resolve(values, path), []).farm_idle_timeout

    assert loaded({}) == 900
    values, _ = validate_document({"farm_idle_timeout": 60}, path)
    assert loaded(values) == 60
    with pytest.raises(UsageError, match="farm_idle_timeout"):
        validate_document({"farm_idle_timeout": -1}, path)
    monkeypatch.setenv("PKGC_FARM_IDLE_TIMEOUT", "0")
    assert loaded(values) == 0
    monkeypatch.setenv("PKGC_FARM_IDLE_TIMEOUT", "soon")
    with pytest.raises(UsageError, match="PKGC_FARM_IDLE_TIMEOUT"):
        loaded(values)


def test_activity_counts_requests_in_flight_as_not_idle() -> None:
    now = [100.0]

    async def slow_app(scope: object, receive: object, send: object) -> None:
        now[0] += 50.0
        assert tracker.idle_for() == 0.0  # a long-poll in flight keeps the farm busy

    tracker = ActivityTracker(slow_app, clock=lambda: now[0])  # type: ignore[arg-type]
    now[0] = 130.0
    assert tracker.idle_for() == 30.0
    asyncio.run(tracker({"type": "http"}, None, None))  # type: ignore[arg-type]
    assert tracker.idle_for() == 0.0
    now[0] += 5
    assert tracker.idle_for() == 5.0


def _service(tmp_path: Path) -> FarmService:
    service = farm_service(FarmConfig.local(tmp_path))
    service.poll_interval = 0.02
    return service


def test_many_async_waits_share_one_thread_and_see_the_build_finish(tmp_path: Path) -> None:
    service = _service(tmp_path)
    key = "c" * 64
    service.builds.create_if_absent(
        BuildRecord(key=key, name="hello", version="1.0", options={}, spec={}, enqueued_at=time.time())
    )
    queue = service.queues.for_platform("linux-test")
    queue.send(key)
    assert active_builds(tmp_path / "farm.db") == 1
    queue.ack(queue.receive(visibility_timeout=60, wait=0) or pytest.fail("no job"))

    async def scenario() -> list[list[str]]:
        waits = [asyncio.create_task(service.wait_async([key], 10)) for _ in range(200)]
        await asyncio.sleep(0.2)
        assert not any(task.done() for task in waits)
        lease = service.builds.acquire_lease(key, "w", time.time(), 60)
        assert lease is not None
        service.builds.finish(lease, time.time(), status=BuildStatus.FAILED, error="test")
        answers = await asyncio.wait_for(asyncio.gather(*waits), timeout=10)
        return [[info.key for info in answer.finished] for answer in answers]

    assert asyncio.run(scenario()) == [[key]] * 200
    assert active_builds(tmp_path / "farm.db") == 0


def test_only_queued_jobs_and_live_leases_keep_a_farm_busy(tmp_path: Path) -> None:
    """A queued build whose job was dead-lettered is not work in progress: it must not keep the farm from idling."""
    database = tmp_path / "farm.db"
    engine = open_farm_database(database)
    builds, queue = SqliteBuildStore(engine), SqliteJobQueue(engine, max_receives=1)
    key = "d" * 64
    builds.create_if_absent(BuildRecord(key=key, name="hello", version="1.0", options={}, spec={}))
    queue.send(key)
    assert active_builds(database) == 1, "a job waiting in the queue is work"
    job = queue.receive(visibility_timeout=0, wait=0)
    assert job is not None
    assert queue.receive(visibility_timeout=60, wait=0) is None  # received once too often: dead-lettered
    assert queue.dead_letter_count() == 1
    assert active_builds(database) == 0, "a queued build with a dead job is stranded, not active"
    lease = builds.acquire_lease(key, "w", now=time.time(), ttl=60)
    assert lease is not None
    assert active_builds(database) == 1, "a build with a live lease is work"
    assert active_builds(database, now=time.time() + 120) == 0, "an expired lease is a dead worker's"
