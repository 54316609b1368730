"""The worker's composition root: `python -m pkgc.worker --home DIR --id NAME` runs one worker of the embedded farm."""

from __future__ import annotations

import argparse
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
    open_farm_database,
)
from pkgc.farm.paths import FarmPaths
from pkgc.worker.fetch import SourceFetcher
from pkgc.worker.loop import Worker, WorkerSettings
from pkgc.worker.sandbox import bubblewrap_path


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pkgc.worker")
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--id", required=True)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--max-jobs", type=int, default=None)
    args = parser.parse_args(argv)
    paths = FarmPaths(args.home)
    engine = open_farm_database(paths.database)
    bwrap = None if os.environ.get("PKGC_NO_SANDBOX") else bubblewrap_path()
    if bwrap is None:
        print(f"worker {args.id}: bubblewrap is not available; builds run without a sandbox", file=sys.stderr)
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
    worker.run(stop, max_jobs=args.max_jobs)


if __name__ == "__main__":
    main()
