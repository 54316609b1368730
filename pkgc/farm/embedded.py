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
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

from pkgc.core.platform import detect_platform
from pkgc.farm.adapters.local import (
    DirectoryBlobStore,
    SqliteBuildStore,
    SqliteCatalogStore,
    SqliteJobQueue,
    open_farm_database,
)
from pkgc.farm.api import create_app
from pkgc.farm.paths import FarmPaths
from pkgc.farm.service import FarmService
from pkgc.recipes import recipe_files


def build_service(paths: FarmPaths) -> FarmService:
    engine = open_farm_database(paths.database)
    return FarmService(
        catalog=SqliteCatalogStore(engine),
        builds=SqliteBuildStore(engine),
        queue=SqliteJobQueue(engine),
        blobs=DirectoryBlobStore(paths.blobs),
        platform=detect_platform(),
    )


def publish_recipes(service: FarmService) -> int:
    files = recipe_files()
    for path in files:
        service.publish_recipe(path.read_text(encoding="utf-8"), source=path.name)
    return len(files)


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
            # -P and cwd=home: no file in the directory the farm was started from can stand in for the worker.
            [sys.executable, "-P", "-m", "pkgc.worker", "--home", str(self.paths.home), "--id", worker_id],
            cwd=self.paths.home,
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


def serve(home: Path, workers: int, port: int) -> None:
    paths = FarmPaths(home)
    paths.home.mkdir(parents=True, exist_ok=True)
    service = build_service(paths)
    publish_recipes(service)
    port = port or _free_port()
    pool = WorkerPool(paths, workers)
    supervisor = threading.Thread(target=pool.supervise, daemon=True)
    supervisor.start()
    server = uvicorn.Server(
        uvicorn.Config(create_app(service), host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )

    def write_state() -> None:
        while not server.started and supervisor.is_alive():
            time.sleep(0.05)
        state: dict[str, Any] = {
            "pid": os.getpid(),
            "url": f"http://127.0.0.1:{port}",
            "workers": pool.pids(),
            "started": time.time(),
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
        paths.state.unlink(missing_ok=True)


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
