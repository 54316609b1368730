"""Starting, finding and stopping the embedded farm that runs on the user's own machine.

The farm is a separate long-running process (API plus workers), so the client starts it in the background the first
time it is needed and finds it again through `state.json`. A lock file makes sure that many clients starting at
once start one farm.
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
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from pkgc.client.settings import data_dir
from pkgc.core.errors import FarmUnavailable
from pkgc.core.protocol import API_PREFIX

START_TIMEOUT = 60.0


def farm_home() -> Path:
    return Path(os.environ.get("PKGC_FARM_HOME") or data_dir() / "farm")


def read_state(home: Path) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads((home / "state.json").read_text())
    except (OSError, ValueError):
        return None
    return state


def is_healthy(url: str, http: httpx.Client | None = None) -> bool:
    try:
        if http is None:
            return httpx.get(f"{url}{API_PREFIX}/health", timeout=2.0).status_code == 200
        return http.get(f"{url}{API_PREFIX}/health", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def running_url(home: Path, http: httpx.Client | None = None) -> str | None:
    state = read_state(home)
    if state and is_healthy(str(state["url"]), http):
        return str(state["url"])
    return None


@contextmanager
def _launch_lock(home: Path) -> Iterator[None]:
    home.mkdir(parents=True, exist_ok=True)
    with (home / "launch.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_running(home: Path, workers: int | None = None, http: httpx.Client | None = None) -> str:
    """The URL of a healthy embedded farm, starting one in the background if none is running."""
    url = running_url(home, http)
    if url:
        return url
    with _launch_lock(home):
        url = running_url(home, http)
        if url:
            return url
        (home / "state.json").unlink(missing_ok=True)
        # -P and cwd=home: the user's current directory must not shadow pkgc's modules (a pkgc.py or uvicorn.py there).
        argv = [sys.executable, "-P", "-m", "pkgc.farm.embedded", "serve", "--home", str(home)]
        if workers:
            argv += ["--workers", str(workers)]
        with (home / "farm.log").open("ab") as log:
            process = subprocess.Popen(
                argv, cwd=home, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise FarmUnavailable(
                    f"the embedded farm exited at start (status {process.returncode})",
                    hint=f"see {home}/farm.log",
                )
            url = running_url(home, http)
            if url:
                return url
            time.sleep(0.1)
        process.terminate()
        raise FarmUnavailable("the embedded farm did not become healthy in time", hint=f"see {home}/farm.log")


def stop(home: Path, timeout: float = 30.0) -> bool:
    """Stop the embedded farm if it runs; True if one was stopped."""
    state = read_state(home)
    if not state:
        return False
    pid = int(state["pid"])
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        (home / "state.json").unlink(missing_ok=True)
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    return True
