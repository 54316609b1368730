"""The embedded farm loads the Debian catalog by itself, so that a newcomer's `pkgc search libtar` finds it.

Without this, the catalog came only from `pkgc farm catalog update`, which a newcomer does not know: a fresh
machine searched the curated recipes alone. Now a farm that starts with no index starts the update in the
background (`python -m pkgc.farm.catalog_autoload`: a detached process, its output in `<home>/debian/update.log`)
and goes on serving; the update writes the index, rewrites the catalog snapshot and records how it ended.

One update at a time, whoever starts it (this, or `pkgc farm catalog update`): `<home>/debian/update.lock` is held
(flock) for the update's whole life. The supervisor takes it before it starts the process and hands the locked file
to it, so there is no moment when an update runs unlocked or a second one can start; the kernel drops the lock when
the process ends, however it ends. Whether the lock is held is what "loading" means (`catalog_state`), so a killed
update never reads as loading for ever.

`<home>/debian/update.json` records the last update's end: failed with one line of why (the farm reports it, and
the next farm start tries again, at the earliest: never in a loop). `PKGC_DEBIAN_CATALOG_AUTOLOAD=0` turns the
autoload off (the test suite does, so that its farms never leave loopback); `PKGC_DEBIAN_SOURCES_FILE=FILE` loads
that Sources file instead of fetching through apt (a test of the autoload itself stays on loopback with it).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from pkgc.core.errors import ConflictError, PkgcError, UsageError
from pkgc.core.protocol import MAX_SHORT_TEXT_LENGTH, DebianCatalogState
from pkgc.core.text import visible
from pkgc.farm.debian_catalog import DebianCatalog, fetch_sources_text, index_path, load_index_text

AUTOLOAD_ENV = "PKGC_DEBIAN_CATALOG_AUTOLOAD"
SOURCES_FILE_ENV = "PKGC_DEBIAN_SOURCES_FILE"
_OFF = ("0", "false", "no", "off")
_INTERRUPTED = "the last update stopped before it finished"


def autoload_enabled(env: Mapping[str, str]) -> bool:
    """On unless PKGC_DEBIAN_CATALOG_AUTOLOAD says 0/false/no/off."""
    return env.get(AUTOLOAD_ENV, "1").strip().lower() not in _OFF


def _debian(home: Path) -> Path:
    return home / "debian"


def lock_path(home: Path) -> Path:
    return _debian(home) / "update.lock"


def state_path(home: Path) -> Path:
    return _debian(home) / "update.json"


def log_path(home: Path) -> Path:
    return _debian(home) / "update.log"


def one_line(text: str, limit: int = MAX_SHORT_TEXT_LENGTH) -> str:
    """`text` as one line a terminal shows inertly, at most `limit` characters (the protocol's short text)."""
    line = visible(" ".join(text.split()))
    return line if len(line) <= limit else line[: limit - 3] + "..."


# -- the lock ------------------------------------------------------------------------------------------------------


def try_lock(home: Path) -> IO[str] | None:
    """The update lock (an open file holding flock), or None if an update holds it. Close-on-exec, so no other
    process inherits it unless handed over explicitly (`pass_fds`)."""
    _debian(home).mkdir(parents=True, exist_ok=True)
    handle = lock_path(home).open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def update_running(home: Path) -> bool:
    """Whether an update holds the lock (a probe: a shared lock taken and dropped at once)."""
    try:
        handle = lock_path(home).open("r")
    except OSError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


# -- the recorded state --------------------------------------------------------------------------------------------


def _read_record(home: Path) -> dict[str, Any]:
    try:
        data = json.loads(state_path(home).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_record(home: Path, record: dict[str, Any]) -> None:
    target = state_path(home)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(record), encoding="utf-8")
    os.replace(temporary, target)


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and 0 <= value < 1e11 else None


_counts: dict[tuple[str, int, int], int] = {}


def _package_count(index: Path) -> tuple[int, float] | None:
    """(source packages, when written) of the index, counted once per index file (an update replaces it)."""
    try:
        info = index.stat()
    except OSError:
        return None
    key = (str(index), info.st_ino, info.st_mtime_ns)
    if key not in _counts:
        _counts.clear()
        _counts[key] = DebianCatalog(index).count()
    return _counts[key], info.st_mtime


def catalog_state(home: Path) -> DebianCatalogState:
    """What the farm's Debian catalog is now: loading (an update holds the lock), loaded (an index exists), failed
    (the last update said why, or was killed), or absent. Read live, so it is never staler than the files."""
    record = _read_record(home)
    if update_running(home):
        since = _number(record.get("since")) if record.get("state") == "loading" else None
        return DebianCatalogState(state="loading", since=since if since is not None else time.time())
    counted = _package_count(index_path(home))
    if counted is not None:
        return DebianCatalogState(state="loaded", since=counted[1], packages=counted[0])
    if record.get("state") == "failed":
        return DebianCatalogState(
            state="failed", since=_number(record.get("at")), error=one_line(str(record.get("error") or "unknown"))
        )
    if record.get("state") == "loading":  # its lock is free: the process died
        error = one_line(f"{_INTERRUPTED} (see {log_path(home)})")
        return DebianCatalogState(state="failed", since=_number(record.get("since")), error=error)
    return DebianCatalogState(state="absent")


def failure_reason(exc: BaseException) -> str:
    """One line saying why an update failed: a pkgc error's own words, else the exception's type and text."""
    if isinstance(exc, PkgcError):
        return one_line(str(exc))
    return one_line(f"{type(exc).__name__}: {exc}")


def record_update(
    home: Path,
    load: Callable[[], tuple[int, int]],
    *,
    lock: IO[str] | None = None,
    after: Callable[[], None] | None = None,
) -> tuple[int, int]:
    """Run one update under the update lock (`lock`: one already held, handed over by the supervisor): record it
    as loading, `load` the index, run `after` (the catalog snapshot) while still holding the lock, then record how
    it ended. The lock is released last, so whoever sees "loaded" also finds the snapshot that lists the packages.

    Raises ConflictError when another update holds the lock; re-raises what `load` or `after` raised, once recorded.
    """
    handle = lock if lock is not None else try_lock(home)
    if handle is None:
        raise ConflictError(
            "the Debian catalog is being loaded already",
            hint=f"wait for it to finish (its output: {log_path(home)})",
        )
    try:
        _write_record(home, {"state": "loading", "since": time.time(), "pid": os.getpid()})
        try:
            result = load()
            if after is not None:
                after()
        except BaseException as exc:
            _write_record(home, {"state": "failed", "at": time.time(), "error": failure_reason(exc)})
            raise
        _write_record(home, {"state": "loaded", "at": time.time(), "packages": result[0], "skipped": result[1]})
        return result
    finally:
        handle.close()


# -- starting it from the farm ---------------------------------------------------------------------------------------


def start_autoload(home: Path, env: Mapping[str, str]) -> str | None:
    """At the farm's start: begin loading the Debian catalog in the background if it is on, there is no index yet
    and no update runs. Returns a line for farm.log saying what was done (None: nothing to do). Never waits."""
    if not autoload_enabled(env) or index_path(home).is_file():
        return None
    handle = try_lock(home)
    if handle is None:
        return None  # an update runs already (`pkgc farm catalog update`, or one that outlived its farm)
    try:
        _write_record(home, {"state": "loading", "since": time.time()})
        log = log_path(home).open("ab")
        try:
            process = subprocess.Popen(
                [sys.executable, "-P", "-m", "pkgc.farm.catalog_autoload", "--home", str(home),
                 "--lock-fd", str(handle.fileno())],
                cwd=home,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(handle.fileno(),),
                start_new_session=True,  # detached: a Ctrl-C meant for the farm's client does not stop it
                env=dict(env),
            )  # fmt: skip
        finally:
            log.close()
    except OSError as exc:
        _write_record(home, {"state": "failed", "at": time.time(), "error": failure_reason(exc)})
        return f"could not start loading the Debian catalog: {failure_reason(exc)}"
    finally:
        handle.close()  # the process holds the lock now (the same open file), for as long as it runs
    threading.Thread(target=process.wait, name="debian-catalog-reaper", daemon=True).start()
    return f"loading the Debian catalog in the background (pid {process.pid}; output in {log_path(home)})"


def sources_text(home: Path, env: Mapping[str, str]) -> str:
    """The Sources index to load: PKGC_DEBIAN_SOURCES_FILE's file when set, else what apt fetches (and verifies)."""
    override = env.get(SOURCES_FILE_ENV, "")
    if override:
        path = Path(override)
        try:
            return path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise UsageError(f"cannot read {SOURCES_FILE_ENV}={path}: {exc.strerror}") from None
    return fetch_sources_text(_debian(home) / "apt")


def refresh_snapshot(home: Path) -> None:
    """Rewrite the farm's catalog snapshot so that it lists the packages of the new index (a running farm reads it
    within seconds); a home without a farm database gets its snapshot at the farm's first start."""
    from pkgc.farm.bootstrap import FarmConfig, farm_service
    from pkgc.farm.paths import FarmPaths

    if FarmPaths(home).database.is_file():
        farm_service(FarmConfig.local(home)).write_catalog_snapshot()


def _say(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} pkgc debian catalog: {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pkgc.farm.catalog_autoload")
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--lock-fd", type=int, default=None, help="the update lock, held and handed over")
    args = parser.parse_args(argv)
    home: Path = args.home.absolute()
    lock = os.fdopen(args.lock_fd, "a") if args.lock_fd is not None else None
    source = os.environ.get(SOURCES_FILE_ENV) or "apt's deb-src entries"
    _say(f"loading the Debian catalog of {home} from {source}")
    started = time.monotonic()
    try:
        stored, skipped = record_update(
            home,
            lambda: load_index_text(home, sources_text(home, os.environ)),
            lock=lock,
            after=lambda: refresh_snapshot(home),
        )
    except ConflictError as exc:
        _say(str(exc))
        return 0
    except Exception as exc:  # recorded as the catalog's state; the next farm start tries again
        _say(f"failed: {failure_reason(exc)}; the next farm start tries again ('pkgc farm catalog update' now)")
        return 1
    _say(f"loaded {stored} source packages ({skipped} skipped) in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
