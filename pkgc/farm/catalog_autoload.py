"""The embedded farm loads the Debian catalog by itself, so that a newcomer's `pkgc search libtar` finds it.

Without this, the catalog came only from `pkgc farm catalog update`, which a newcomer does not know: a fresh
machine searched the curated recipes alone. Now a farm that starts with no index starts the update in the
background (`python -m pkgc.farm.catalog_autoload`: a process of its own session, its output in
`<home>/debian/update.log`) and goes on serving; the update writes the index, rewrites the catalog snapshot and
records how it ended. It stops when its farm stops, as the workers do (`pkgc farm stop` leaves nothing writing in the
farm's home), and the next start begins it again.

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
import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from pkgc.core.errors import ConflictError, PkgcError, UsageError
from pkgc.core.protocol import DebianCatalogState
from pkgc.farm.debian_catalog import CatalogUpdateFailed, fetch_sources_text, index_path, load_index_text
from pkgc.farm.debian_state import debian_dir, lock_path, log_path, one_line, read_state, state_path
from pkgc.farm.filelock import try_exclusive

AUTOLOAD_ENV = "PKGC_DEBIAN_CATALOG_AUTOLOAD"
SOURCES_FILE_ENV = "PKGC_DEBIAN_SOURCES_FILE"
_OFF = ("0", "false", "no", "off")


def autoload_enabled(env: Mapping[str, str]) -> bool:
    """On unless PKGC_DEBIAN_CATALOG_AUTOLOAD says 0/false/no/off."""
    return env.get(AUTOLOAD_ENV, "1").strip().lower() not in _OFF


# -- the lock ------------------------------------------------------------------------------------------------------


def try_lock(home: Path) -> IO[str] | None:
    """The update lock (an open file holding flock), or None if an update holds it. Close-on-exec, so no other
    process inherits it unless handed over explicitly (`pass_fds`)."""
    return try_exclusive(lock_path(home))


# -- the recorded state --------------------------------------------------------------------------------------------


def _write_record(home: Path, record: dict[str, Any]) -> None:
    target = state_path(home)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(record), encoding="utf-8")
    os.replace(temporary, target)


def catalog_state(home: Path) -> DebianCatalogState:
    """What the farm's Debian catalog is now (`debian_state.read_state`), as the protocol sends it."""
    return DebianCatalogState.model_validate(read_state(home))


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
            hint=f"wait for it to finish; its output goes to {log_path(home)}",
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
                 "--lock-fd", str(handle.fileno()), "--supervisor", str(os.getpid())],
                cwd=home,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(handle.fileno(),),
                start_new_session=True,  # a Ctrl-C meant for the farm's client does not stop it; the farm's end does
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
    return fetch_sources_text(debian_dir(home) / "apt")


def refresh_snapshot(home: Path) -> None:
    """Rewrite the farm's catalog snapshot so that it lists the packages of the new index (a running farm reads it
    within seconds); a home without a farm database gets its snapshot at the farm's first start."""
    from pkgc.farm.bootstrap import FarmConfig, farm_service
    from pkgc.farm.paths import FarmPaths

    if FarmPaths(home).database.is_file():
        farm_service(FarmConfig.local(home)).write_catalog_snapshot()


_PR_SET_PDEATHSIG = 1


class FarmStopped(CatalogUpdateFailed):
    """The farm that started this update stopped: the update stops too (its next start begins it again)."""


def _stop_with_farm(supervisor: int) -> None:
    """Stop (SIGTERM, then FarmStopped in the main thread) when the farm that started us stops, as its workers do:
    after `pkgc farm stop` nothing of the farm's may go on writing in its home (the user may be deleting it). The
    exception unwinds through subprocess.run, which kills apt-get, and is recorded as the catalog's state."""

    def stopped(signum: int, frame: object) -> None:
        raise FarmStopped("the farm stopped before the Debian catalog was loaded; its next start loads it")

    signal.signal(signal.SIGTERM, stopped)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != supervisor:  # it died before the prctl
        os.kill(os.getpid(), signal.SIGTERM)


def _say(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} pkgc debian catalog: {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pkgc.farm.catalog_autoload")
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--lock-fd", type=int, default=None, help="the update lock, held and handed over")
    parser.add_argument("--supervisor", type=int, default=None, help="the farm's pid: stop when it stops")
    args = parser.parse_args(argv)
    home: Path = args.home.absolute()
    lock = os.fdopen(args.lock_fd, "a") if args.lock_fd is not None else None
    source = os.environ.get(SOURCES_FILE_ENV) or "apt's deb-src entries"
    _say(f"loading the Debian catalog of {home} from {source}")
    started = time.monotonic()
    try:
        if args.supervisor is not None:
            _stop_with_farm(args.supervisor)
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
