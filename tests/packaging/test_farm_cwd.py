"""The embedded farm's processes run pkgc's code whatever directory the user starts pkgc from.

They are started with `python -m`, which put the current directory first on sys.path: a `worker.py` there replaced
the farm's workers (restarted 170 times in 45 s while the install sat at "queued"). Now they start in the farm's home
with the current directory kept off sys.path (`python -P`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import user_env

pytestmark = pytest.mark.e2e

# Modules the supervisor and the workers import by name; a file of that name in the user's directory must not win.
SHADOWS = ("pkgc.py", "worker.py", "uvicorn.py", "sqlalchemy.py")


def _pkgc(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # The client itself is started with -P: this test is about the processes pkgc starts, not about how the user
    # started pkgc (a console script does not put the current directory on sys.path either).
    return subprocess.run(
        [sys.executable, "-P", "-m", "pkgc", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=180
    )


def _open_files(pid: int) -> set[str]:
    paths = set()
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:  # the process has exited
        return paths
    for fd in fds:
        try:
            paths.add(os.readlink(fd))
        except OSError:
            continue
    return paths


@pytest.fixture
def shadowed(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str], Path]]:
    """A user directory full of files named like the farm's modules, each of which leaves a marker when imported."""
    cwd = tmp_path / "project"
    cwd.mkdir()
    marker = tmp_path / "shadow-imported"
    for name in SHADOWS:
        (cwd / name).write_text(
            f"with open({str(marker)!r}, 'a') as f:\n    f.write({name!r} + '\\n')\nraise SystemExit(3)\n"
        )
    env = user_env(tmp_path)
    try:
        yield cwd, env, marker
    finally:
        _pkgc(env, cwd, "farm", "stop")


def test_farm_started_from_a_directory_with_shadowing_files_runs_its_own_code(
    shadowed: tuple[Path, dict[str, str], Path],
) -> None:
    cwd, env, marker = shadowed
    home = Path(env["PKGC_FARM_HOME"])
    up = _pkgc(env, cwd, "farm", "up", "--workers", "2")
    assert up.returncode == 0, up.stderr
    _assert_runs_real_code(home, marker)
    status = _pkgc(env, cwd, "farm", "status")
    assert status.returncode == 0, status.stderr


def test_workers_run_their_own_code_when_the_supervisor_runs_in_a_shadowing_directory(
    shadowed: tuple[Path, dict[str, str], Path],
) -> None:
    """The supervisor started by hand (or by a service manager) in such a directory still starts real workers."""
    cwd, env, marker = shadowed
    home = Path(env["PKGC_FARM_HOME"])
    supervisor = subprocess.Popen(
        [sys.executable, "-P", "-m", "pkgc.farm.embedded", "serve", "--home", str(home), "--workers", "2"],
        env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (home / "state.json").exists():
            assert supervisor.poll() is None, "the supervisor exited"
            assert time.monotonic() < deadline, "the supervisor never wrote its state"
            time.sleep(0.1)
        _assert_runs_real_code(home, marker, supervisor_cwd=cwd)
    finally:
        supervisor.terminate()
        supervisor.wait(timeout=60)


def _assert_runs_real_code(home: Path, marker: Path, supervisor_cwd: Path | None = None) -> None:
    state = json.loads((home / "state.json").read_text())
    supervisor = int(state["pid"])
    workers = [int(pid) for pid in state["workers"].values()]
    assert len(workers) == 2

    # A worker that got as far as opening the farm's database ran the real worker; one that imported a shadow
    # would have exited, and the supervisor would have started another with a new pid.
    database = str((home / "farm.db").resolve())
    deadline = time.monotonic() + 60
    while not all(database in _open_files(pid) for pid in workers):
        gone = [pid for pid in workers if not Path(f"/proc/{pid}").exists()]
        shadows = marker.read_text().split() if marker.exists() else []
        assert not gone, f"workers {gone} exited; the user's files imported: {shadows}"
        log = (home / "farm.log").read_text()
        assert time.monotonic() < deadline, f"workers never opened {database}; farm.log:\n{log}"
        time.sleep(0.2)

    assert Path(f"/proc/{supervisor}/cwd").resolve() == (supervisor_cwd or home).resolve()
    for pid in workers:
        assert Path(f"/proc/{pid}/cwd").resolve() == home.resolve(), f"worker {pid} runs in the user's directory"
        assert "State:\tZ" not in Path(f"/proc/{pid}/status").read_text(), f"pid {pid} has exited"
    assert not marker.exists(), f"the farm imported the user's files: {marker.read_text()}"
