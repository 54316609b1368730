"""kill -9 at every fault point of install, upgrade and remove, and inside the recovery itself: afterwards `pkgc
verify` is clean and the WHOLE prefix tree (every path, its type, mode, symlink target and content) is exactly the
tree before the command or exactly the tree after it, with no extra file or directory.

Recovery rolls forward when the command's history row was committed (a kill at `db-committed` or later) and back
otherwise (docs/architecture.md).

The tree comparison leaves out only pkgc's bookkeeping that is expected to differ between two prefixes in the same
state (see IGNORED): the `.pkgc` directory entry itself and the installed database (both created by the first
command on a prefix; the database is compared through `pkgc list` instead), the lock file (created by the first
changing command), and the transaction scratch area `.pkgc/tx` (a crash before the journal is written leaves
its staging there, which the next changing command sweeps: asserted empty after the re-run). `.pkgc/journal.json`
is part of the tree, so a journal left behind is a difference.

File contents are hashed with the prefix's own path replaced by a token, so trees of two prefixes whose paths have
the same length (relocation writes the prefix into files, NUL-padded to a fixed length) compare equal.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from pkgc.client.transaction import FAULT_ENV, FAULT_POINTS
from tests.conftest import FarmEnv

pytestmark = pytest.mark.e2e

V1 = {"greet": "1.0"}
V2 = {"greet": "2.0"}
EMPTY: dict[str, str] = {}

# operation: setup commands, faulted command, packages before, packages after
OPERATIONS: dict[str, tuple[list[list[str]], list[str], dict[str, str], dict[str, str]]] = {
    "install": ([], ["install", "greet@1.0"], EMPTY, V1),
    "upgrade": ([["install", "greet@1.0"]], ["upgrade", "greet"], V1, V2),
    "remove": ([["install", "greet@1.0"]], ["remove", "greet"], V1, EMPTY),
}
ROLLS_FORWARD = {"db-committed"}

IGNORED = {
    ".pkgc",  # the directory entry only (the first pkgc command on a prefix creates it); its content is compared
    ".pkgc/installed.sqlite",
    ".pkgc/installed.sqlite-wal",
    ".pkgc/installed.sqlite-shm",
    ".pkgc/installed.sqlite-journal",
    ".pkgc/lock",
    ".pkgc/tx",
}
_PREFIX_NAME_WIDTH = 56
Tree = dict[str, tuple[object, ...]]


def tree(prefix: Path) -> Tree:
    """Every path under the prefix (but IGNORED) with its type, permission bits, link target or content hash."""
    token = b"/@PREFIX@"
    own = str(prefix).encode()
    entries: Tree = {}
    for directory, dirs, files in os.walk(prefix):
        for name in dirs + files:
            path = Path(directory) / name
            relative = path.relative_to(prefix).as_posix()
            if relative in IGNORED or relative.startswith(".pkgc/tx/"):
                continue
            info = os.lstat(path)
            mode = stat.S_IMODE(info.st_mode)
            if stat.S_ISLNK(info.st_mode):
                entries[relative] = ("symlink", mode, os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                entries[relative] = ("dir", mode)
            elif stat.S_ISREG(info.st_mode):
                content = path.read_bytes().replace(own, token)
                entries[relative] = ("file", mode, hashlib.sha256(content).hexdigest())
            else:
                entries[relative] = ("other", stat.S_IFMT(info.st_mode))
    return entries


def tree_diff(actual: Tree, expected: Tree) -> list[str]:
    """What differs, one readable line per path, empty when the trees are equal."""
    lines = [f"extra   {p} {actual[p]}" for p in sorted(set(actual) - set(expected))]
    lines += [f"missing {p} {expected[p]}" for p in sorted(set(expected) - set(actual))]
    lines += [
        f"changed {p} {expected[p]} -> {actual[p]}"
        for p in sorted(set(actual) & set(expected))
        if actual[p] != expected[p]
    ]
    return lines


def packages(farm: FarmEnv, prefix: Path) -> dict[str, str]:
    listed = json.loads(farm.pkgc("list", "--json", "--prefix", str(prefix), check=True).stdout)
    return {p["name"]: p["version"] for p in listed}


def fresh_prefix(farm: FarmEnv, label: str) -> Path:
    """A prefix whose path has the same length for every label, so relocated contents compare across prefixes."""
    assert len(label) <= _PREFIX_NAME_WIDTH, label
    prefix = farm.root / "crash-tree" / label.ljust(_PREFIX_NAME_WIDTH, "_")
    assert not prefix.exists(), f"{prefix} is used twice"
    return prefix


@dataclass(frozen=True)
class Reference:
    before: Tree
    after: Tree


_references: dict[str, Reference] = {}


def reference(farm: FarmEnv, operation: str) -> Reference:
    """The trees before and after an uninterrupted run of the operation, in a prefix of its own."""
    if operation not in _references:
        setup, command, before, after = OPERATIONS[operation]
        prefix = fresh_prefix(farm, f"reference-{operation}")
        p = ("--prefix", str(prefix))
        for step in setup:
            farm.pkgc(*step, *p, check=True)
        before_tree = tree(prefix)
        assert packages(farm, prefix) == before
        farm.pkgc(*command, *p, check=True)
        assert packages(farm, prefix) == after
        _references[operation] = Reference(before_tree, tree(prefix))
        assert _references[operation].before != _references[operation].after
    return _references[operation]


def run_killed(farm: FarmEnv, args: list[str], point: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        farm.pkgc_argv(*args), env={**farm.env, FAULT_ENV: point}, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == -signal.SIGKILL, f"{point} was not reached: {result.returncode}\n{result.stderr}"
    return result


def assert_tree(prefix: Path, expected: Tree, what: str) -> None:
    differences = tree_diff(tree(prefix), expected)
    assert differences == [], f"the prefix is not exactly {what}:\n" + "\n".join(differences)


def assert_scratch_empty(prefix: Path) -> None:
    scratch = prefix / ".pkgc" / "tx"
    left = sorted(p.relative_to(prefix).as_posix() for p in scratch.rglob("*")) if scratch.exists() else []
    assert left == [], f"transaction leftovers: {left}"


@pytest.mark.parametrize("point", FAULT_POINTS)
@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_kill_at_fault_point_leaves_exactly_the_old_or_the_new_tree(farm: FarmEnv, operation: str, point: str) -> None:
    setup, command, before, after = OPERATIONS[operation]
    expected = reference(farm, operation)
    prefix = fresh_prefix(farm, f"{operation}-{point}")
    p = ("--prefix", str(prefix))
    for step in setup:
        farm.pkgc(*step, *p, check=True)
    assert_tree(prefix, expected.before, "the reference tree before the command")

    run_killed(farm, [*command, *p], point)
    verified = farm.pkgc("verify", *p)  # the first command after the crash repairs the prefix
    assert verified.returncode == 0, verified.stdout + verified.stderr
    forward = point in ROLLS_FORWARD
    assert_tree(prefix, expected.after if forward else expected.before, "after" if forward else "before")
    assert packages(farm, prefix) == (after if forward else before)

    farm.pkgc(*command, *p, check=not forward)  # the prefix works normally again
    assert_tree(prefix, expected.after, "the tree after the command")
    assert packages(farm, prefix) == after
    assert_scratch_empty(prefix)
    assert farm.pkgc("verify", *p).returncode == 0


# command's fault point, recovery's fault point, which tree the finished recovery must leave
RECOVERY_CASES = [
    pytest.param("new-moved-in", "rollback-half-restored", False, id="rolling-back"),
    pytest.param("db-committed", "cleanup-half-done", True, id="rolling-forward"),
]


@pytest.mark.parametrize(("point", "recovery_point", "forward"), RECOVERY_CASES)
@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_kill_during_recovery_then_the_next_recovery_completes(
    farm: FarmEnv, operation: str, point: str, recovery_point: str, forward: bool
) -> None:
    setup, command, before, after = OPERATIONS[operation]
    expected = reference(farm, operation)
    prefix = fresh_prefix(farm, f"{operation}-{point}-then-{recovery_point}")
    p = ("--prefix", str(prefix))
    for step in setup:
        farm.pkgc(*step, *p, check=True)

    run_killed(farm, [*command, *p], point)
    run_killed(farm, ["verify", *p], recovery_point)  # the recovery itself dies half-way
    assert (prefix / ".pkgc" / "journal.json").exists(), "a half-done recovery keeps its journal"

    verified = farm.pkgc("verify", *p)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert_tree(prefix, expected.after if forward else expected.before, "after" if forward else "before")
    assert packages(farm, prefix) == (after if forward else before)

    farm.pkgc(*command, *p, check=not forward)
    assert_tree(prefix, expected.after, "the tree after the command")
    assert_scratch_empty(prefix)


def test_history_rollback_of_an_install_removes_the_directories_it_created(farm: FarmEnv) -> None:
    prefix = fresh_prefix(farm, "history-rollback")
    p = ("--prefix", str(prefix))
    farm.pkgc("install", "greet@1.0", *p, check=True)  # bin/ and share/ exist before, and must stay
    before = tree(prefix)
    farm.pkgc("install", "lz4", *p, check=True)
    created = {path for path, entry in tree(prefix).items() if entry[0] == "dir"} - set(before)
    assert {"lib", "include"} <= created, f"lz4 creates new directories: {sorted(created)}"

    rolled = farm.pkgc("rollback", *p)
    assert rolled.returncode == 0, rolled.stderr
    assert_tree(prefix, before, "the tree before the rolled-back install")
    assert packages(farm, prefix) == V1
    assert_scratch_empty(prefix)
    assert farm.pkgc("verify", *p).returncode == 0
