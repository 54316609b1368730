"""Starting, finding and stopping the embedded farm that runs on the user's own machine.

The farm is a separate long-running process (API plus workers), so the client starts it in the background the first
time it is needed and finds it again through `state.json`. A launch lock makes sure that many clients starting at
once start one farm; the supervisor's own lock on its home (`farm.lock`, held for its life) makes sure that a farm
that is alive but slow to answer is waited for, not doubled. `state.json` names the supervisor by pid, start time
and pkgc version: a stale pid is never signalled, and a farm started by another pkgc version is replaced once it
has no build to finish.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx

import pkgc
from pkgc.client.settings import data_dir
from pkgc.core.errors import FarmUnavailable

# pkgc.farm.lifecycle and pkgc.farm.paths are imported where they are used: a command that finds this pkgc's farm
# answering (every cache-hit install) needs neither, and they cost it about 0.7 ms.

# pkgc.core.protocol.API_PREFIX, not imported from there: that module builds every protocol model with pydantic,
# which `pkgc farm status` does not need (tests/unit/test_import_budget.py checks that both agree).
API_PREFIX = "/v1"

START_TIMEOUT = 60.0
LOCKED_EXIT = 3  # the supervisor's exit status when another one holds the home (pkgc.farm.embedded.LOCKED_EXIT)


def farm_home() -> Path:
    return Path(os.environ.get("PKGC_FARM_HOME") or data_dir() / "farm").absolute()


def _start_timeout() -> float:
    value = os.environ.get("PKGC_FARM_START_TIMEOUT", "")
    return float(value) if value.replace(".", "", 1).isdigit() else START_TIMEOUT


def read_state(home: Path) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads((home / "state.json").read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def health(url: str, http: httpx.Client | None = None) -> dict[str, Any] | None:
    """The farm's /health answer, or None if it does not answer within 2 s."""
    try:
        response = (http or httpx).get(f"{url}{API_PREFIX}/health", timeout=2.0)
        body = response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def is_healthy(url: str, http: httpx.Client | None = None) -> bool:
    return health(url, http) is not None


def running_url(home: Path, http: httpx.Client | None = None) -> str | None:
    state = read_state(home)
    if state and "url" in state and is_healthy(str(state["url"]), http):
        return str(state["url"])
    return None


def started_by_this_pkgc(state: dict[str, Any]) -> bool:
    """Whether the farm of `state` runs this very pkgc (same version, same installation)."""
    return state.get("version") == pkgc.__version__ and state.get("package") == str(Path(pkgc.__file__).parent)


def _usable_url(home: Path, http: httpx.Client | None) -> str | None:
    """The URL of a healthy farm this client may use: one of this pkgc, or one of another that has builds to finish."""
    url = running_url(home, http)
    if url is None:
        return None
    if started_by_this_pkgc(read_state(home) or {}):
        return url
    from pkgc.farm.lifecycle import active_builds

    return url if active_builds(home / "farm.db") > 0 else None


@contextmanager
def _launch_lock(home: Path) -> Iterator[None]:
    home.mkdir(parents=True, exist_ok=True)
    with (home / "launch.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _supervisor_alive(home: Path) -> bool:
    """Whether state.json names a live supervisor of this home (one of an older pkgc holds no home lock)."""
    from pkgc.farm.lifecycle import is_supervisor_of

    state = read_state(home) or {}
    pid, recorded = state.get("pid"), state.get("pid_start")
    return isinstance(pid, int) and is_supervisor_of(pid, home, recorded if isinstance(recorded, int) else None)


def _await_running(home: Path, http: httpx.Client | None, timeout: float) -> str:
    """Wait for the supervisor that holds the home's lock to answer; never start a second one next to it."""
    from pkgc.farm.lifecycle import home_is_locked

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        url = running_url(home, http)
        if url:
            return url
        if not home_is_locked(home) and not _supervisor_alive(home):
            raise FarmUnavailable("the embedded farm exited while starting", hint=f"see {home}/farm.log")
        time.sleep(0.2)
    raise FarmUnavailable(
        f"the embedded farm in {home} is running but not answering",
        hint=f"try again later, or 'pkgc farm stop' and try again; see {home}/farm.log",
    )


def ensure_running(
    home: Path, workers: int | None = None, http: httpx.Client | None = None, idle_timeout: float | None = None
) -> str:
    """The URL of a healthy embedded farm, starting one in the background if none is running.

    A farm started by another pkgc version (an upgrade, or a checkout next to an installation) is stopped and
    started again once it has no build queued or building; until then this client uses it as it is.
    """
    home = home.absolute()
    url = _usable_url(home, http)
    if url:
        return url
    from pkgc.farm.lifecycle import home_is_locked

    with _launch_lock(home):
        url = _usable_url(home, http)
        if url:
            return url
        if running_url(home, http):  # healthy, but another pkgc's farm with nothing left to build
            stop(home)
        if home_is_locked(home) or _supervisor_alive(home):  # alive but not answering in time: wait for it
            return _await_running(home, http, _start_timeout())
        (home / "state.json").unlink(missing_ok=True)
        # -P and cwd=home: the user's current directory must not shadow pkgc's modules (a pkgc.py or uvicorn.py there).
        argv = [sys.executable, "-P", "-m", "pkgc.farm.embedded", "serve", "--home", str(home)]
        if workers:
            argv += ["--workers", str(workers)]
        launched = time.time()
        if idle_timeout is not None:
            argv += ["--idle-timeout", f"{idle_timeout:g}"]
        with (home / "farm.log").open("ab") as log:
            process = subprocess.Popen(
                argv,
                cwd=home,
                env=_farm_environment(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + _start_timeout()
        while time.monotonic() < deadline:
            if process.poll() is not None:
                if process.returncode == LOCKED_EXIT:  # one started outside our launch lock (by hand): use it
                    return _await_running(home, http, max(1.0, deadline - time.monotonic()))
                raise exited_at_start(home, process.returncode, launched)
            url = running_url(home, http)
            if url:
                return url
            time.sleep(0.1)
        process.terminate()
        raise FarmUnavailable("the embedded farm did not become healthy in time", hint=f"see {home}/farm.log")


def _farm_environment() -> dict[str, str]:
    """The environment of a farm this client starts: its own, with the directory this pkgc was imported from first
    on PYTHONPATH.

    The farm starts with -P away from the current directory, so a client run from a checkout (`python -m pkgc` puts
    the current directory first) would otherwise start whatever pkgc PYTHONPATH or site-packages holds: a farm that
    fails to start, or one that every command then replaces as "another version". The workers inherit it.
    """
    env = dict(os.environ)
    here = str(Path(pkgc.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([here, *(p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p)])
    return env


def exited_at_start(home: Path, status: int | None, launched: float) -> FarmUnavailable:
    """The error for a farm that exited while starting: its own one-line reason if it left one, else the status.

    The supervisor writes `start-error.json` when it refuses to start (a damaged database, say); only a reason
    written after this launch counts, so a stale file from an earlier attempt is never shown.
    """
    from pkgc.farm.paths import FarmPaths

    try:
        report = json.loads(FarmPaths(home).start_error.read_text())
        reason = " ".join(str(report["error"]).split())[:500] if float(report["time"]) >= launched - 1.0 else ""
    except (OSError, ValueError, KeyError, TypeError):
        reason = ""
    if reason:
        return FarmUnavailable(f"the embedded farm cannot start: {reason}")
    return FarmUnavailable(f"the embedded farm exited at start (status {status})", hint=f"see {home}/farm.log")


def _wait_gone(pid: int, home: Path, start: int | None, timeout: float, worker: bool = False) -> bool:
    from pkgc.farm.lifecycle import is_worker_of, process_start_time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process_start_time(pid) != start or not (is_worker_of(pid, home) if worker else True):
            return True
        time.sleep(0.1)
    return False


def stop(home: Path, timeout: float = 30.0) -> bool:
    """Stop the embedded farm if it runs; True if one was stopped.

    Only a process that is this home's supervisor (its command line, and its start time when the state records
    it) is signalled: after a crash or a reboot the pid in `state.json` may belong to anything. A stale state
    file is removed. Works for a farm started by any pkgc version.
    """
    from pkgc.farm.lifecycle import is_supervisor_of, is_worker_of, process_start_time

    home = home.absolute()
    state = read_state(home)
    if not state:
        return False
    pid = state.get("pid")
    recorded = state.get("pid_start")
    pid = pid if isinstance(pid, int) and pid > 0 else 0
    if not pid or not is_supervisor_of(pid, home, recorded if isinstance(recorded, int) else None):
        (home / "state.json").unlink(missing_ok=True)
        return False
    start = process_start_time(pid)
    workers = [p for p in (state.get("workers") or {}).values() if isinstance(p, int) and is_worker_of(p, home)]
    worker_starts = {p: process_start_time(p) for p in workers}
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not _wait_gone(pid, home, start, timeout) and process_start_time(pid) == start:
        os.kill(pid, signal.SIGKILL)  # the very process we verified: same pid and start time
        _wait_gone(pid, home, start, 5.0)
    for worker in workers:  # they die with the supervisor; make sure, without touching a reused pid
        if not _wait_gone(worker, home, worker_starts[worker], 10.0, worker=True):
            os.kill(worker, signal.SIGKILL)
    (home / "state.json").unlink(missing_ok=True)
    return True
