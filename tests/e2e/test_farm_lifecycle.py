"""The embedded farm's life: one supervisor per home, stopped safely, no orphans, idle exit, failing workers, upgrades.

Each test runs its own farm in its own PKGC_FARM_HOME under tmp_path (real supervisor and worker processes) and
stops it in a finally, so the session farm of the other e2e tests is not disturbed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from pkgc.core.protocol import API_PREFIX, BuildStatus
from tests.conftest import processes_with_arguments, user_env

pytestmark = pytest.mark.e2e

QUEUED_KEY = "ab" * 32  # a build that stays queued: its record exists, no job was ever sent for it


@dataclass
class Home:
    root: Path
    env: dict[str, str]

    @property
    def farm(self) -> Path:
        return self.root / "farm"

    def pkgc(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pkgc", *args],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def up(self, *args: str, env: dict[str, str] | None = None) -> dict[str, object]:
        started = self.pkgc("farm", "up", *args, env=env)
        assert started.returncode == 0, started.stderr
        return self.state()

    def state(self) -> dict[str, object]:
        state: dict[str, object] = json.loads((self.farm / "state.json").read_text())
        return state

    def supervisors(self) -> list[int]:
        """Live supervisor processes serving this home, found through /proc."""
        return processes_with_arguments(b"pkgc.farm.embedded", str(self.farm).encode(), skip_zombies=True)


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Home]:
    created = Home(tmp_path, user_env(tmp_path))
    try:
        yield created
    finally:
        created.pkgc("farm", "stop", timeout=60)
        for pid in created.supervisors():  # a test that failed may have left a second supervisor
            os.kill(pid, signal.SIGKILL)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def poll(condition: object, timeout: float, what: str) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.1)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_over(pids: list[int], window: float) -> float:
    """CPU seconds the processes used together during the next `window` seconds."""
    before = sum(cpu_seconds(p) for p in pids)
    time.sleep(window)  # the measurement window itself
    return sum(cpu_seconds(p) for p in pids) - before


def add_queued_build(farm_home: Path) -> None:
    """A build record that stays queued (no job is sent), so long-polls on its key hang for their whole timeout."""
    from pkgc.farm.adapters.local import SqliteBuildStore, open_farm_database
    from pkgc.farm.ports import BuildRecord

    now = time.time()
    record = BuildRecord(
        key=QUEUED_KEY, name="hello", version="1.0", options={}, spec={}, dependencies=(),
        runtime_dependencies=(), created_at=now, updated_at=now, enqueued_at=now,
    )  # fmt: skip
    engine = open_farm_database(farm_home / "farm.db")
    SqliteBuildStore(engine).create_if_absent(record)
    engine.dispose()


def add_busy_build(farm_home: Path) -> None:
    """A queued build with its job waiting in the queue, delayed an hour so no worker takes it: work in progress."""
    from pkgc.farm.adapters.local import SqliteJobQueue, open_farm_database

    add_queued_build(farm_home)
    engine = open_farm_database(farm_home / "farm.db")
    SqliteJobQueue(engine).send(QUEUED_KEY, delay=3600)
    engine.dispose()


# -- 2: stop signals only the farm ----------------------------------------------------------------------------------


def test_stop_leaves_an_unrelated_process_named_by_a_stale_state_alive(home: Home) -> None:
    home.farm.mkdir(parents=True)
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        state = {"pid": bystander.pid, "url": "http://127.0.0.1:9", "workers": {"w1": bystander.pid}, "started": 0}
        (home.farm / "state.json").write_text(json.dumps(state))
        stopped = home.pkgc("farm", "stop")
        assert stopped.returncode == 0, stopped.stderr
        assert alive(bystander.pid), "pkgc farm stop signalled a process that is not the farm"
        assert bystander.poll() is None
        assert not (home.farm / "state.json").exists(), "the stale state.json was left behind"
        assert "not running" in stopped.stdout
    finally:
        bystander.kill()
        bystander.wait()


# -- 3: one farm per home, and health answers while many clients wait -----------------------------------------------


def test_health_answers_during_45_long_polls_and_no_second_supervisor_starts(home: Home) -> None:
    state = home.up("--workers", "1")
    url = str(state["url"])
    add_queued_build(home.farm)
    answers: list[int] = []
    started = threading.Barrier(46)

    def long_poll() -> None:
        with httpx.Client(timeout=60) as client:
            started.wait()
            answer = client.post(f"{url}{API_PREFIX}/wait", json={"keys": [QUEUED_KEY], "timeout": 15})
            answers.append(answer.status_code)

    threads = [threading.Thread(target=long_poll) for _ in range(45)]
    for thread in threads:
        thread.start()
    started.wait()
    try:

        def all_waiting() -> bool:  # the health check must answer within 2 s while the 45 long-polls are in flight
            began = time.monotonic()
            health = httpx.get(f"{url}{API_PREFIX}/health", timeout=2.0)
            assert health.status_code == 200 and time.monotonic() - began < 2.0
            return int(health.json()["requests"]) >= 46  # the 45 waits and this health check

        poll(all_waiting, 10, "the 45 long-polls to be in flight")
        again = home.pkgc("farm", "up", "--workers", "1")
        assert again.returncode == 0, again.stderr
        assert url in again.stdout
        assert home.supervisors() == [state["pid"]]
    finally:
        for thread in threads:
            thread.join(timeout=60)
    assert answers == [200] * 45


def test_a_client_waits_for_a_supervisor_that_holds_the_home_lock(home: Home) -> None:
    """The lock, not the health check, decides: a farm that holds it is not started twice even when it is silent."""
    state = home.up("--workers", "1")
    pid = int(str(state["pid"]))
    os.kill(pid, signal.SIGSTOP)  # the API cannot answer at all, but the supervisor lives and holds its lock
    try:
        waited = home.pkgc("farm", "up", "--workers", "1", env={"PKGC_FARM_START_TIMEOUT": "3"})
        assert home.supervisors() == [pid], "a second supervisor was started on the same home"
        assert waited.returncode == 4
        assert "not answering" in waited.stderr
    finally:
        os.kill(pid, signal.SIGCONT)


# -- 4: no orphans --------------------------------------------------------------------------------------------------


def test_workers_exit_when_the_supervisor_is_killed_and_work_dirs_are_cleaned(home: Home) -> None:
    state = home.up("--workers", "2")
    workers = [int(p) for p in dict(state["workers"]).values()]  # type: ignore[call-overload]
    assert len(workers) == 2 and all(alive(p) for p in workers)
    os.kill(int(str(state["pid"])), signal.SIGKILL)
    poll(lambda: not any(alive(p) for p in workers), 15, "the workers of a killed supervisor to exit")

    leftover = home.farm / "work" / "hello-killed"
    (leftover / "src").mkdir(parents=True)
    (leftover / "src" / "main.c").write_text("int main(void) { return 0; }\n")
    home.up("--workers", "1")
    assert not leftover.exists(), "a killed worker's work directory survived the next start"


# -- 15: idle exit and no CPU while idle ----------------------------------------------------------------------------


def test_an_idle_farm_uses_no_cpu_and_stops_by_itself(home: Home) -> None:
    state = home.up("--workers", "2", env={"PKGC_FARM_IDLE_TIMEOUT": "8"})
    pids = [int(str(state["pid"])), *(int(p) for p in dict(state["workers"]).values())]  # type: ignore[call-overload]
    poll(lambda: _cpu_over(pids, 0.5) <= 0.02, 30, "the workers to finish starting (importing, probing bubblewrap)")
    used = _cpu_over(pids, 3.0)
    # The supervisor and two workers together: under 2% of a core (about 0.7% here; 1.9% when each worker polled
    # the jobs table five times a second, before SqliteJobQueue.receive waited for commits).
    assert used < 0.06, f"an idle farm used {used:.2f} s of CPU in 3 s"
    poll(lambda: not any(alive(p) for p in pids), 30, "the idle farm to stop by itself")
    assert not (home.farm / "state.json").exists()


def test_requests_keep_the_farm_alive(home: Home) -> None:
    state = home.up("--workers", "1", env={"PKGC_FARM_IDLE_TIMEOUT": "3"})
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:  # a client that keeps asking is not idle
        assert httpx.get(f"{state['url']}{API_PREFIX}/packages?q=hello", timeout=5).status_code == 200
        time.sleep(0.5)
    assert home.supervisors() == [state["pid"]]


# -- 20: workers that die at start ----------------------------------------------------------------------------------


def test_workers_dying_at_start_back_off_and_are_reported(home: Home) -> None:
    broken = {"PKGC_FARM_VISIBILITY_TIMEOUT": "not-a-number", "PKGC_FARM_LOG_MAX_BYTES": "6000"}
    state = home.up("--workers", "1", env=broken)
    url = str(state["url"])
    log = home.farm / "farm.log"

    def failing() -> bool:
        status = home.pkgc("farm", "status", "--json")
        return bool(json.loads(status.stdout).get("workers_failing"))

    poll(failing, 30, "pkgc farm status to report failing workers")
    status = home.pkgc("farm", "status")
    assert "workers failing" in status.stdout, status.stdout

    starts = log.read_text(errors="replace").count("ValueError") + _rotated(log).count("ValueError")
    time.sleep(4.0)  # the measurement window: restarts every 0.5 s would start the worker 8 more times
    later = log.read_text(errors="replace").count("ValueError") + _rotated(log).count("ValueError")
    assert later - starts <= 2, f"{later - starts} restarts in 4 s"

    add_queued_build(home.farm)
    answer = httpx.post(f"{url}{API_PREFIX}/wait", json={"keys": [QUEUED_KEY], "timeout": 5}, timeout=30)
    assert answer.status_code == 503
    assert "workers" in answer.json()["reason"]
    assert httpx.get(f"{url}{API_PREFIX}/health", timeout=5).json()["workers"] == "failing"
    installed = home.pkgc("install", "hello", "--prefix", str(home.root / "prefix"), env=broken)
    assert installed.returncode == 4, installed.stderr
    assert "workers keep exiting at start" in installed.stderr and "farm.log" in installed.stderr


def test_farm_log_is_rotated(home: Home) -> None:
    broken = {"PKGC_FARM_VISIBILITY_TIMEOUT": "not-a-number", "PKGC_FARM_LOG_MAX_BYTES": "3000"}
    home.up("--workers", "2", env=broken)
    log = home.farm / "farm.log"
    poll(lambda: log.with_name("farm.log.1").exists(), 40, "farm.log to be rotated")
    assert log.stat().st_size < 3000 * 3
    assert not log.with_name("farm.log.3").exists()


def _rotated(log: Path) -> str:
    old = log.with_name("farm.log.1")
    return old.read_text(errors="replace") if old.exists() else ""


# -- 21: another version of pkgc ------------------------------------------------------------------------------------


def _pretend_older_version(home: Home) -> None:
    state = home.state()
    state["version"] = "0.0.1"
    state["package"] = "/nonexistent/old/site-packages/pkgc"
    (home.farm / "state.json").write_text(json.dumps(state))


def test_a_farm_of_another_version_is_restarted_once_idle(home: Home) -> None:
    old = home.up("--workers", "1")
    _pretend_older_version(home)
    new = home.up("--workers", "1")
    assert new["pid"] != old["pid"]
    assert not alive(int(str(old["pid"])))
    assert home.supervisors() == [new["pid"]]
    import pkgc

    assert new["version"] == pkgc.__version__
    assert new["package"] == str(Path(pkgc.__file__).parent)


def test_a_busy_farm_of_another_version_is_kept(home: Home) -> None:
    old = home.up("--workers", "1")
    add_busy_build(home.farm)
    from pkgc.farm.adapters.local import SqliteBuildStore, open_farm_database

    assert SqliteBuildStore(open_farm_database(home.farm / "farm.db")).get(QUEUED_KEY).status == BuildStatus.QUEUED  # type: ignore[union-attr]
    _pretend_older_version(home)
    kept = home.up("--workers", "1")
    assert kept["pid"] == old["pid"]
    stopped = home.pkgc("farm", "stop")  # stop works whatever version started the farm
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert not alive(int(str(old["pid"])))


def test_the_farm_runs_the_same_pkgc_as_the_client_that_starts_it(home: Home, tmp_path: Path) -> None:
    """A client run from a checkout (`python -m pkgc` puts the current directory first) while PYTHONPATH names
    another pkgc: the farm, which starts with -P away from the current directory, must still run the client's pkgc,
    or it would not start at all, or be restarted by every command as 'another version'."""
    import pkgc

    decoy = tmp_path / "decoy"
    (decoy / "pkgc").mkdir(parents=True)
    (decoy / "pkgc" / "__init__.py").write_text('__version__ = "0.0.decoy"\n')
    checkout = Path(pkgc.__file__).resolve().parent.parent
    started = subprocess.run(
        [sys.executable, "-m", "pkgc", "farm", "up", "--workers", "1"],
        env={**home.env, "PYTHONPATH": str(decoy)},
        cwd=checkout,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert started.returncode == 0, started.stderr
    state = home.state()
    assert state["package"] == str(checkout / "pkgc") and state["version"] == pkgc.__version__
