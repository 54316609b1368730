"""The embedded farm's process life, shared by the supervisor and the client that starts and stops it.

Kept free of web and database libraries (only the standard library), so that `pkgc farm stop` and the client's
start-up check stay fast, and so that every rule here (who is the supervisor of a home, when a restarting worker
counts as failing, when the log is rotated) can be tested without processes.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from dataclasses import field
from pathlib import Path
from typing import IO

from pkgc.core.record import record
from pkgc.farm.filelock import is_locked, try_exclusive

SUPERVISOR_MODULE = "pkgc.farm.embedded"
LOCK_NAME = "farm.lock"
DEFAULT_LOG_MAX_BYTES = 5 * 1024 * 1024
ROTATED_LOGS = 2  # farm.log.1 and farm.log.2


# -- processes ------------------------------------------------------------------------------------------------------


def process_argv(pid: int) -> list[str] | None:
    """The command line of a live process, or None if there is none (or it is a zombie)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    if not raw or process_start_time(pid) is None:
        return None
    return [part.decode(errors="replace") for part in raw.rstrip(b"\0").split(b"\0")]


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses; the rest follows the last ')'.
    fields = text.rsplit(")", 1)[-1].split()
    return fields if len(fields) > 20 else None


def process_start_time(pid: int) -> int | None:
    """When the process started, in clock ticks since boot: with the pid, it names one process for good."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] == "Z":
        return None
    return int(fields[19])


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time a live process has used so far."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cwd(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return "/"


def is_supervisor_of(pid: int, home: Path, start_time: int | None = None) -> bool:
    """Whether `pid` is the supervisor serving `home` (and, if known, the very process that wrote the state).

    After a kill -9, an OOM kill or a reboot, the pid in an old state.json may belong to any process; it is
    only ours if its command line is `... -m pkgc.farm.embedded serve ... --home HOME` and it started when
    the state says. Works for state written by any pkgc version, since the command line has not changed.
    """
    argv = process_argv(pid)
    if not argv or SUPERVISOR_MODULE not in argv or "serve" not in argv:
        return False
    try:
        given = argv[argv.index("--home") + 1]
    except (ValueError, IndexError):
        return False
    if os.path.realpath(os.path.join(_cwd(pid), given)) != os.path.realpath(home):
        return False
    return start_time is None or process_start_time(pid) == start_time


def is_worker_of(pid: int, home: Path) -> bool:
    """Whether `pid` is a worker process of the farm in `home` (`-m worker` or `-m pkgc.worker`)."""
    argv = process_argv(pid)
    if not argv or "--home" not in argv or not any(part in ("worker", "pkgc.worker") for part in argv):
        return False
    given = argv[argv.index("--home") + 1] if argv.index("--home") + 1 < len(argv) else ""
    return os.path.realpath(os.path.join(_cwd(pid), given)) == os.path.realpath(home)


# -- the home lock --------------------------------------------------------------------------------------------------


def try_lock_home(home: Path) -> IO[str] | None:
    """Take the home's exclusive lock for the life of this process, or None if a live supervisor holds it.

    The kernel drops the lock when the process dies, however it dies, so a lock never goes stale. The file is
    opened close-on-exec, so workers do not inherit it and cannot keep a dead supervisor's home locked.
    """
    return try_exclusive(home / LOCK_NAME)


def home_is_locked(home: Path) -> bool:
    """Whether a live supervisor holds the home's lock."""
    return is_locked(home / LOCK_NAME)


# -- state of a farm ------------------------------------------------------------------------------------------------


def active_builds(database: Path, now: float | None = None) -> int:
    """Work the farm still has: jobs waiting in its queue (not dead-lettered) and builds whose lease is live.

    A build that merely says "queued" does not count: if its job was dead-lettered nothing will build it until a
    resolve sends a new one, and counting it would keep the farm from ever going idle (or from being replaced by a
    newer pkgc). Read with plain sqlite3, so that any pkgc version's farm can be asked.
    """
    if not database.exists():
        return 0
    moment = time.time() if now is None else now
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as conn:
            jobs = conn.execute("SELECT count(*) FROM jobs WHERE dead = 0").fetchone()[0]
            building = conn.execute(
                "SELECT count(*) FROM builds WHERE status = 'building' AND lease_expires > ?", (moment,)
            ).fetchone()[0]
    except sqlite3.Error:
        return 0
    return int(jobs) + int(building)


def clean_work_dirs(work: Path) -> int:
    """Remove what killed workers left in the work directory; only called while holding the home's lock."""
    if not work.is_dir():
        return 0
    removed = 0
    for entry in work.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed += 1
    return removed


def rotate_log(log: Path, max_bytes: int, keep: int = ROTATED_LOGS) -> bool:
    """Copy the log to `.1` (older copies shift up to `.keep`) and truncate it, once it passes `max_bytes`.

    Copy-and-truncate rather than rename: the supervisor and every worker hold the log open in append mode, so
    after the truncation they keep writing at the start of the same file without reopening it.
    """
    try:
        if log.stat().st_size <= max_bytes:
            return False
    except OSError:
        return False
    for index in range(keep, 1, -1):
        older = log.with_name(f"{log.name}.{index - 1}")
        if older.exists():
            os.replace(older, log.with_name(f"{log.name}.{index}"))
    shutil.copyfile(log, log.with_name(f"{log.name}.1"))
    with log.open("r+b") as handle:
        handle.truncate(0)
    return True


# -- restarting workers ---------------------------------------------------------------------------------------------


@record(frozen=False)
class RestartPolicy:
    """When to start a worker again after it exited: at once after a long life, later and later after quick exits.

    A worker that exits within `quick` seconds of starting counts as failing at start; the delay doubles with each
    such exit up to `cap`, and after `failing_after` of them in a row the farm reports its workers as failing.
    """

    first_delay: float = 0.5
    cap: float = 30.0
    quick: float = 10.0
    failing_after: int = 3
    quick_exits: dict[str, int] = field(default_factory=dict)

    def exited(self, worker_id: str, lifetime: float) -> float:
        """Record an exit; return how long to wait before starting the worker again."""
        if lifetime >= self.quick:
            self.quick_exits[worker_id] = 0
            return 0.0
        count = self.quick_exits.get(worker_id, 0) + 1
        self.quick_exits[worker_id] = count
        return float(min(self.cap, self.first_delay * 2.0 ** (count - 1)))

    def lived(self, worker_id: str) -> None:
        """The worker has now run for longer than `quick`: it started well, forget its earlier failures."""
        self.quick_exits[worker_id] = 0

    @property
    def failing(self) -> bool:
        return any(count >= self.failing_after for count in self.quick_exits.values())
