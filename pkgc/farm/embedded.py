"""The embedded farm: API, workers and state on this machine, under the user's data directory.

This module is the farm's composition root for the embedded deployment: it is the only place that chooses the
SQLite and directory adapters for the API. `python -m pkgc.farm.embedded serve` is the supervisor process: it
loads the recipes, serves the API on loopback and keeps N worker processes alive, restarting any that dies.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import uvicorn
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from pkgc.core.errors import PkgcError
from pkgc.core.platform import detect_platform
from pkgc.farm.adapters.local import (
    DirectoryBlobStore,
    SqliteBuildStore,
    SqliteCatalogStore,
    SqliteJobQueue,
    check_farm_database,
    checkpoint_farm_database,
    open_farm_database,
)
from pkgc.farm.api import create_app
from pkgc.farm.paths import FarmPaths
from pkgc.farm.service import FarmService
from pkgc.recipes import recipe_files


def build_service(paths: FarmPaths, engine: Engine | None = None) -> FarmService:
    engine = engine if engine is not None else open_farm_database(paths.database)
    return FarmService(
        catalog=SqliteCatalogStore(engine),
        builds=SqliteBuildStore(engine),
        queue=SqliteJobQueue(engine),
        blobs=DirectoryBlobStore(paths.blobs),
        platform=detect_platform(),
    )


@dataclass(frozen=True)
class SkippedRecipe:
    """A recipe file the farm could not publish, with the one-line reason (shown in farm.log and `farm status`)."""

    file: str
    error: str

    def as_dict(self) -> dict[str, str]:
        return {"file": self.file, "error": self.error}


def publish_recipes(service: FarmService) -> list[SkippedRecipe]:
    """Publish every recipe on the recipe path; a recipe with an error is skipped and named, the rest still serve.

    One broken file among the user's own recipes must not take the whole farm down with it.
    """
    skipped: list[SkippedRecipe] = []
    for path in recipe_files():
        try:
            service.publish_recipe(path.read_text(encoding="utf-8"), source=path.name)
        except Exception as exc:  # any error in one recipe (its TOML, its fields, its bytes) skips that recipe only
            reason = str(exc) if isinstance(exc, PkgcError | OSError) else f"{type(exc).__name__}: {exc}"
            skipped.append(SkippedRecipe(str(path), " ".join(reason.split())[:500]))
    return skipped


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class WorkerPool:
    """Keeps `count` worker processes running; a worker that dies (even by kill -9) is started again."""

    def __init__(self, paths: FarmPaths, count: int) -> None:
        self.paths = paths
        self.count = count
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.stopping = threading.Event()

    def _start(self, worker_id: str) -> None:
        log = self.paths.log.open("ab")
        self.processes[worker_id] = subprocess.Popen(
            [sys.executable, "-m", "worker", "--home", str(self.paths.home), "--id", worker_id],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()

    def supervise(self) -> None:
        for index in range(self.count):
            self._start(f"w{index + 1}")
        while not self.stopping.wait(0.5):
            for worker_id, process in list(self.processes.items()):
                if process.poll() is not None:
                    self._start(worker_id)

    def pids(self) -> dict[str, int]:
        return {worker_id: process.pid for worker_id, process in self.processes.items()}

    def stop(self) -> None:
        self.stopping.set()
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


FARM_UMASK = 0o077  # the farm's files (database, artifacts, logs) are the user's alone


def private_home(paths: FarmPaths) -> None:
    """Create the farm home readable by its owner only, and tighten what a client or an older pkgc left there."""
    paths.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(paths.home, 0o700)
    for entry in paths.home.iterdir():
        if entry.is_file() and not entry.is_symlink():
            os.chmod(entry, 0o600)


def refuse_start(paths: FarmPaths, reason: str, status: int) -> NoReturn:
    """Leave the one-line reason where the client that launched us finds it (and in farm.log), then exit."""
    line = " ".join(reason.split())
    print(f"pkgc farm: cannot start: {line}", file=sys.stderr, flush=True)
    temporary = paths.start_error.with_suffix(".tmp")
    temporary.write_text(json.dumps({"time": time.time(), "error": line}))
    os.replace(temporary, paths.start_error)
    raise SystemExit(status)


def open_checked_database(paths: FarmPaths) -> Engine:
    """The farm database, after SQLite's quick_check; a damaged or unopenable file refuses the start."""
    try:
        check_farm_database(paths.database)
        return open_farm_database(paths.database)
    except PkgcError as exc:
        refuse_start(paths, str(exc), exc.exit_code)
    except (SQLAlchemyError, sqlite3.Error) as exc:
        refuse_start(paths, f"cannot open the farm database {paths.database}: {exc}", 1)


def serve(home: Path, workers: int, port: int) -> None:
    paths = FarmPaths(home)
    os.umask(FARM_UMASK)  # inherited by the workers; their build commands set their own
    private_home(paths)
    paths.start_error.unlink(missing_ok=True)
    engine = open_checked_database(paths)
    service = build_service(paths, engine)
    skipped = publish_recipes(service)
    for recipe in skipped:  # farm.log: where the user looks when a package is missing
        print(f"pkgc farm: skipped recipe {recipe.file}: {recipe.error}", file=sys.stderr, flush=True)
    port = port or _free_port()
    pool = WorkerPool(paths, workers)
    supervisor = threading.Thread(target=pool.supervise, daemon=True)
    supervisor.start()
    app = create_app(service, loopback_only=True)  # this farm is the user's alone: refuse DNS-rebound requests
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))

    def write_state() -> None:
        while not server.started and supervisor.is_alive():
            time.sleep(0.05)
        state: dict[str, Any] = {
            "pid": os.getpid(),
            "url": f"http://127.0.0.1:{port}",
            "workers": pool.pids(),
            "started": time.time(),
            "skipped_recipes": [recipe.as_dict() for recipe in skipped],
        }
        temporary = paths.state.with_suffix(".tmp")
        temporary.write_text(json.dumps(state))
        os.replace(temporary, paths.state)

    threading.Thread(target=write_state, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: setattr(server, "should_exit", True))
    try:
        server.run()
    finally:
        pool.stop()
        stop_database(engine)
        paths.state.unlink(missing_ok=True)


def stop_database(engine: Engine) -> None:
    """A clean stop leaves the whole database in farm.db: checkpoint the WAL (TRUNCATE) once the workers are gone."""
    try:
        checkpoint_farm_database(engine, "TRUNCATE")
    except (SQLAlchemyError, sqlite3.Error) as exc:
        print(f"pkgc farm: could not checkpoint the database at stop: {exc}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pkgc.farm.embedded")
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    serve(args.home, max(1, args.workers), args.port)


if __name__ == "__main__":
    main()
