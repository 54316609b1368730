"""The embedded farm: API, workers and state on this machine, under the user's data directory.

Its adapters come from the farm's composition root (pkgc/farm/bootstrap.py, the local backend). `python -m pkgc.farm.embedded serve` is the supervisor process: it
takes the home's lock (one supervisor per home, whatever the clients do), loads the recipes, serves the API on
loopback, keeps N worker processes alive (restarting any that dies, later and later if they keep dying at start),
and stops by itself after `--idle-timeout` seconds without a request or a build to do.
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
from typing import IO, Any, NoReturn

import uvicorn
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.types import ASGIApp, Receive, Scope, Send

import pkgc
from pkgc.core.errors import PkgcError
from pkgc.core.recipe import bundle_recipe_text
from pkgc.farm.access import AccessPolicy
from pkgc.farm.adapters.local import check_farm_database, checkpoint_farm_database, open_farm_database
from pkgc.farm.api import create_app
from pkgc.farm.bootstrap import FarmConfig, blob_files, farm_access, farm_service, open_ports
from pkgc.farm.catalog_autoload import start_autoload
from pkgc.farm.lifecycle import (
    DEFAULT_LOG_MAX_BYTES,
    RestartPolicy,
    active_builds,
    clean_work_dirs,
    process_start_time,
    rotate_log,
    try_lock_home,
)
from pkgc.farm.paths import FarmPaths
from pkgc.farm.ports import FarmPorts
from pkgc.farm.service import FarmService, recipe_error_reason
from pkgc.recipes import recipe_files

DEFAULT_IDLE_TIMEOUT = 900.0
LOCKED_EXIT = 3  # another supervisor holds this home: the client then waits for that one
SUPERVISOR_PID_ENV = "PKGC_FARM_SUPERVISOR_PID"  # the parent a worker must not outlive


def build_service(paths: FarmPaths, engine: Engine | None = None) -> FarmService:
    """The embedded farm's service (the local backend in `paths.home`), from the composition root."""
    return farm_service(FarmConfig.local(paths.home), engine=engine)


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
    texts: list[tuple[str, str]] = []
    paths: dict[str, Path] = {}
    files = recipe_files()
    for path in files:  # one file per package name, so file names are unique
        try:
            texts.append((path.name, bundle_recipe_text(path)))  # with its patch files (recipes/NAME/)
            paths[path.name] = path
        except Exception as exc:  # an unreadable file (its bytes, its permissions) skips that recipe only
            skipped.append(SkippedRecipe(str(path), _reason(exc)))
    # One batch: the catalog snapshot is written once, after the last recipe.
    for source, error in service.publish_recipes(texts):
        skipped.append(SkippedRecipe(str(paths[source]), _reason(error)))
    order = {str(path): index for index, path in enumerate(files)}
    return sorted(skipped, key=lambda s: order[s.file])


def _reason(exc: Exception) -> str:
    return recipe_error_reason(exc)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _say(message: str) -> None:
    """One line in farm.log (the supervisor's stdout)."""
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} pkgc farm: {message}", flush=True)


class WorkerPool:
    """Keeps `count` worker processes running; a worker that dies (even by kill -9) is started again.

    A worker that keeps dying at start (a broken installation, a bad setting) is restarted with an exponential,
    capped delay instead of twice a second forever, and the pool then reports itself as failing. Workers are
    started and stopped from the one supervising thread: they get SIGKILL when the thread that started them ends
    (PR_SET_PDEATHSIG), so that thread lives until they are stopped.
    """

    def __init__(self, paths: FarmPaths, count: int, policy: RestartPolicy | None = None, tick: float = 0.5) -> None:
        self.paths = paths
        self.count = count
        self.policy = policy or RestartPolicy()
        self.tick = tick
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.started_at: dict[str, float] = {}
        self.restart_at: dict[str, float] = {}
        self.stopping = threading.Event()
        self.changed: list[Any] = []  # callbacks run after workers were (re)started
        self._thread: threading.Thread | None = None

    def _start(self, worker_id: str) -> None:
        log = self.paths.log.open("ab")
        # --backend local: an embedded worker is one whatever PKGC_FARM_BACKEND the user's environment holds.
        argv = ["-m", "pkgc.worker", "--backend", "local", "--home", str(self.paths.home), "--id", worker_id]
        self.processes[worker_id] = subprocess.Popen(
            # -P and cwd=home: no file in the directory the farm was started from can stand in for the worker.
            [sys.executable, "-P", *argv],
            cwd=self.paths.home,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, SUPERVISOR_PID_ENV: str(os.getpid())},
        )
        log.close()
        self.started_at[worker_id] = time.monotonic()

    def start(self) -> None:
        self._thread = threading.Thread(target=self.supervise, name="worker-pool", daemon=True)
        self._thread.start()

    def supervise(self) -> None:
        for index in range(self.count):
            self._start(f"w{index + 1}")
        self._changed()
        while not self.stopping.wait(self.tick):  # blocks between checks: no CPU while nothing happens
            if self._check(time.monotonic()):
                self._changed()
        self._terminate()

    def _check(self, now: float) -> bool:
        restarted = False
        for worker_id, process in list(self.processes.items()):
            due = self.restart_at.get(worker_id)
            if due is not None:
                if now >= due:
                    del self.restart_at[worker_id]
                    self._start(worker_id)
                    restarted = True
                continue
            code = process.poll()
            lifetime = now - self.started_at[worker_id]
            if code is None:
                if lifetime >= self.policy.quick:
                    self.policy.lived(worker_id)
                continue
            delay = self.policy.exited(worker_id, lifetime)
            _say(
                f"worker {worker_id} exited with status {code} after {lifetime:.1f} s; "
                f"starting it again in {delay:.1f} s" + (" (workers failing)" if self.policy.failing else "")
            )
            self.restart_at[worker_id] = now + delay
        return restarted

    def _changed(self) -> None:
        for callback in self.changed:
            callback()

    @property
    def failing(self) -> bool:
        return self.policy.failing

    def pids(self) -> dict[str, int]:
        return {worker_id: process.pid for worker_id, process in self.processes.items() if process.poll() is None}

    def _terminate(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def stop(self) -> None:
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=30)


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


class ActivityTracker:
    """ASGI middleware that notes when the API last had a request in flight, for the idle exit.

    It lives here, not in the API: idling out is the embedded deployment's concern (Lambda has its own).
    """

    def __init__(self, app: ASGIApp, clock: Any = time.monotonic) -> None:
        self.app = app
        self.clock = clock
        self.last = clock()
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.in_flight += 1
        self.last = self.clock()
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            self.last = self.clock()

    def touch(self) -> None:
        self.last = self.clock()

    def idle_for(self) -> float:
        return 0.0 if self.in_flight else self.clock() - self.last


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.isdigit() else default


def _lock_home(home: Path, patience: float = 5.0) -> IO[str] | None:
    """The home's lock, retrying a little: a client probing it holds it for an instant."""
    deadline = time.monotonic() + patience
    while True:
        handle = try_lock_home(home)
        if handle is not None or time.monotonic() >= deadline:
            return handle
        time.sleep(0.1)


def embedded_access(paths: FarmPaths, ports: FarmPorts) -> AccessPolicy | None:
    """Tokens for the embedded farm: none by default (loopback, one user); PKGC_FARM_REQUIRE_TOKEN=1 asks for the
    tokens made with `pkgc farm token create` (and PKGC_FARM_PUBLIC_READ=0 for reads too)."""
    try:
        return farm_access(FarmConfig.local(paths.home), ports, os.environ)
    except PkgcError as exc:
        refuse_start(paths, str(exc), exc.exit_code)


def serve(home: Path, workers: int, port: int, idle_timeout: float = DEFAULT_IDLE_TIMEOUT) -> None:
    paths = FarmPaths(home)
    os.umask(FARM_UMASK)  # inherited by the workers; their build commands set their own
    private_home(paths)
    lock = _lock_home(paths.home)
    if lock is None:
        _say(f"another supervisor already serves {paths.home}; not starting a second one")
        sys.exit(LOCKED_EXIT)
    log_max = _env_int("PKGC_FARM_LOG_MAX_BYTES", DEFAULT_LOG_MAX_BYTES)
    rotate_log(paths.log, log_max)
    if clean_work_dirs(paths.work):  # workers killed with their supervisor left these; no worker runs now
        _say(f"removed work directories left by killed workers in {paths.work}")
    paths.start_error.unlink(missing_ok=True)
    engine = open_checked_database(paths)
    ports = open_ports(FarmConfig.local(paths.home), engine=engine)
    service = farm_service(FarmConfig.local(paths.home), ports=ports)
    skipped = publish_recipes(service)
    for recipe in skipped:  # farm.log: where the user looks when a package is missing
        _say(f"skipped recipe {recipe.file}: {recipe.error}")
    # After the start's snapshot is written (the update rewrites it when done), before the API answers (so that
    # the first /v1/catalog already says "loading"); never waited for.
    autoload = start_autoload(paths.home, os.environ)
    if autoload is not None:
        _say(autoload)
    port = port or _free_port()
    pool = WorkerPool(paths, workers)

    def status() -> dict[str, Any]:
        return {"workers": "failing" if pool.failing else "ok", "pid": os.getpid(), "requests": activity.in_flight}

    def problem() -> str | None:
        if pool.failing:
            return f"the embedded farm's workers keep exiting at start; see {paths.log}"
        return None

    # loopback_only: this farm is the user's alone, so DNS-rebound requests from a web page are refused.
    access = embedded_access(paths, ports)
    app = create_app(
        service, loopback_only=True, status=status, problem=problem, access=access, blob_file=blob_files(ports.blobs)
    )
    activity = ActivityTracker(app)
    server = uvicorn.Server(
        uvicorn.Config(activity, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    started = time.time()
    state_lock = threading.Lock()

    def write_state() -> None:
        if not server.started:
            return
        state: dict[str, Any] = {
            "pid": os.getpid(),
            "pid_start": process_start_time(os.getpid()),
            "url": f"http://127.0.0.1:{port}",
            "workers": pool.pids(),
            "started": started,
            "version": pkgc.__version__,
            "package": str(Path(pkgc.__file__).parent),
            "home": str(paths.home),
            "idle_timeout": idle_timeout,
            "skipped_recipes": [recipe.as_dict() for recipe in skipped],
        }
        with state_lock:
            temporary = paths.state.with_suffix(".tmp")
            temporary.write_text(json.dumps(state))
            os.replace(temporary, paths.state)

    def watch() -> None:
        """Write the state once the API listens; then rotate the log and stop the farm when it has been idle."""
        while not server.started and not pool.stopping.is_set():
            time.sleep(0.05)
        write_state()
        interval = min(5.0, max(0.5, idle_timeout / 4)) if idle_timeout > 0 else 5.0
        while not pool.stopping.wait(interval):
            rotate_log(paths.log, log_max)
            if idle_timeout <= 0:
                continue
            if active_builds(paths.database):
                activity.touch()
            elif activity.idle_for() >= idle_timeout:
                _say(f"idle for {idle_timeout:g} s: stopping")
                server.should_exit = True
                return

    pool.changed.append(write_state)
    pool.start()
    threading.Thread(target=watch, name="watch", daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: setattr(server, "should_exit", True))
    try:
        server.run()
    finally:
        pool.stop()
        stop_database(engine)
        paths.state.unlink(missing_ok=True)
        lock.close()


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
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=DEFAULT_IDLE_TIMEOUT,
        help="seconds without work before stopping; 0: never",
    )
    args = parser.parse_args(argv)
    serve(args.home.absolute(), max(1, args.workers), args.port, max(0.0, args.idle_timeout))


if __name__ == "__main__":
    main()
