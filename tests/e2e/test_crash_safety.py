"""kill -9 at every fault point of install, upgrade and remove: afterwards `pkgc verify` is clean and the prefix and
its database hold exactly the old state or exactly the new one."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from pkgc.client.transaction import FAULT_ENV, FAULT_POINTS
from tests.conftest import FarmEnv

pytestmark = pytest.mark.e2e

V1 = ({"greet": "1.0"}, ["bin/greet", "share/greet/notes-1.0.txt"])
V2 = ({"greet": "2.0"}, ["bin/greet", "share/greet/notes-2.0.txt"])
EMPTY: tuple[dict[str, str], list[str]] = ({}, [])

# operation, setup commands, faulted command, state before, state after
OPERATIONS = {
    "install": ([], ["install", "greet@1.0"], EMPTY, V1),
    "upgrade": ([["install", "greet@1.0"]], ["upgrade", "greet"], V1, V2),
    "remove": ([["install", "greet@1.0"]], ["remove", "greet"], V1, EMPTY),
}


def state(farm: FarmEnv, prefix: Path) -> tuple[dict[str, str], list[str]]:
    listed = json.loads(farm.pkgc("list", "--json", "--prefix", str(prefix), check=True).stdout)
    files = sorted(
        p.relative_to(prefix).as_posix() for p in prefix.rglob("*") if p.is_file() and ".pkgc" not in p.parts
    )
    return {p["name"]: p["version"] for p in listed}, files


@pytest.mark.parametrize("point", FAULT_POINTS)
@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_kill_at_fault_point_leaves_old_or_new_state(farm: FarmEnv, operation: str, point: str) -> None:
    setup, command, before, after = OPERATIONS[operation]
    prefix = farm.root / "crash" / f"{operation}-{point}"
    p = ("--prefix", str(prefix))
    for step in setup:
        farm.pkgc(*step, *p, check=True)
    crashed = subprocess.run(
        farm.pkgc_argv(*command, *p), env={**farm.env, FAULT_ENV: point}, capture_output=True, text=True, timeout=300
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr

    verified = farm.pkgc("verify", *p)  # the first command after the crash repairs the prefix
    assert verified.returncode == 0, verified.stdout + verified.stderr
    expected = after if point == "db-committed" else before
    assert state(farm, prefix) == expected
    assert not (prefix / ".pkgc" / "journal.json").exists()

    farm.pkgc(*command, *p, check=point != "db-committed")  # the prefix works normally again
    assert state(farm, prefix) == after
    assert farm.pkgc("verify", *p).returncode == 0
