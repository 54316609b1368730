"""The worker's composition root: `python -m pkgc.worker --home DIR --id NAME` runs one worker of the embedded farm."""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import sys
import threading
from pathlib import Path

from pkgc.farm.adapters.local import (
    DirectoryBlobStore,
    JsonLinesNotifier,
    SqliteBuildStore,
    SqliteJobQueue,
    checkpoint_farm_database,
    open_farm_database,
)
from pkgc.farm.paths import FarmPaths
from pkgc.worker.fetch import SourceFetcher
from pkgc.worker.loop import Worker, WorkerSettings
from pkgc.worker.sandbox import bubblewrap_path


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


_PR_SET_PDEATHSIG = 1


def _die_with_supervisor() -> None:
    """Be killed (SIGKILL) when the supervisor dies, however it dies, so no worker is left taking jobs unseen.

    Linux delivers the signal when the parent exits; the ppid check covers a supervisor that died before the
    prctl, and the worker loop checks the ppid again between jobs where prctl is not available. A build in
    progress dies too (its processes have the same setting), its lease expires and its job comes back; the next
    supervisor removes the work directory.
    """
    expected = os.environ.get("PKGC_FARM_SUPERVISOR_PID", "")
    if not expected.isdigit():
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != int(expected):
        sys.exit(f"worker: the supervisor (pid {expected}) is gone")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pkgc.worker")
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--id", required=True)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--max-jobs", type=int, default=None)
    args = parser.parse_args(argv)
    _die_with_supervisor()
    os.umask(0o077)  # blobs, logs and sources are the user's alone (build commands run with their own umask)
    bwrap = None if os.environ.get("PKGC_NO_SANDBOX") else bubblewrap_path()
    if bwrap is None:
        if os.environ.get("PKGC_REQUIRE_SANDBOX") == "1":
            # CI and the tests' farm: an unsandboxed build there would pass silently and prove nothing.
            raise SystemExit(
                f"worker {args.id}: PKGC_REQUIRE_SANDBOX=1, but bubblewrap is missing, cannot create namespaces here, "
                "or PKGC_NO_SANDBOX is set: refusing to build without a sandbox"
            )
        print(f"worker {args.id}: bubblewrap is not available; builds run without a sandbox", file=sys.stderr)
    paths = FarmPaths(args.home)
    engine = open_farm_database(paths.database)
    visibility = _env_float("PKGC_FARM_VISIBILITY_TIMEOUT", 60.0)
    settings = WorkerSettings(
        worker_id=f"{args.id}-{os.getpid()}",
        workroot=paths.work,
        jobs=args.jobs,
        build_timeout=_env_float("PKGC_FARM_BUILD_TIMEOUT", 3600.0),
        visibility_timeout=visibility,
        lease_ttl=_env_float("PKGC_FARM_LEASE_TTL", visibility),
        heartbeat_interval=max(0.5, min(visibility / 4, 5.0)),
        bubblewrap=bwrap,
    )
    worker = Worker(
        builds=SqliteBuildStore(engine),
        queue=SqliteJobQueue(engine),
        blobs=DirectoryBlobStore(paths.blobs),
        notifier=JsonLinesNotifier(paths.events),
        fetcher=SourceFetcher(paths.sources, loopback_only=os.environ.get("PKGC_FETCH_LOOPBACK_ONLY") == "1"),
        settings=settings,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    supervised = os.environ.get("PKGC_FARM_SUPERVISOR_PID", "")
    worker.run(stop, max_jobs=args.max_jobs, orphaned=lambda: bool(supervised) and str(os.getppid()) != supervised)
    checkpoint_farm_database(engine, "PASSIVE")  # leave what this worker wrote in farm.db, without waiting for others


if __name__ == "__main__":
    main()
