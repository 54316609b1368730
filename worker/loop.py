"""The worker loop: receive a job, claim the build, fetch, build, pack, hand the result to the farm; ack last.

Everything that decides about a build (is it worth building, the lease, the attempt limit, blob names, the fenced
finish, waking up the builds that wait for it) is the farm's build lifecycle (pkgc/farm/work.py); the worker keeps
its queue (receive, keep the job invisible while it builds, ack) and the work itself (fetch, build, pack).

Delivery is at least once, so every step tolerates repeats, and a job is acknowledged only after the build is
marked finished, so a worker killed at any point leaves a job that comes back. A worker that loses its lease kills
its build at once; a worker asked to stop (SIGTERM, a Spot interruption notice) kills its build, gives the lease
back and makes the job visible again, so another worker starts it without waiting for a timeout.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from pkgc.artifact import Manifest, PackError, pack_tree, relocate_tree, unpack_artifact
from pkgc.core.buildspec import BuildSpec
from pkgc.core.errors import PkgcError, SourceUnavailable
from pkgc.core.toolchain import ToolchainDefinition, load_toolchain
from pkgc.farm.ports import BuildRecord, InstanceProtection, Job, JobQueue, Lease
from pkgc.farm.work import Build, BuildLifecycle, DependencyUnavailable, Waiting
from pkgc.worker.builder import BuildError, run_build
from pkgc.worker.buildroot import ToolchainMissing, make_root
from pkgc.worker.fetch import SourceFetcher
from pkgc.worker.needed import UnsatisfiedLibrary, check_needed
from pkgc.worker.sandbox import BuildAborted, BuildTimedOut, CommandFailed, Sandbox

LOG_TAIL_LINES = 30


@dataclass(frozen=True)
class WorkerSettings:
    worker_id: str
    workroot: Path
    jobs: int = 2
    build_timeout: float = 3600.0
    visibility_timeout: float = 60.0
    lease_ttl: float = 60.0
    heartbeat_interval: float = 10.0
    receive_wait: float = 2.0
    bubblewrap: str | None = None
    # Where the hermetic build roots are kept (pkgc/worker/buildroot.py); None: workroot/../roots.
    roots: Path | None = None
    # Host directories every hermetic build also sees, read-only (PKGC_SANDBOX_EXTRA_RO; the tests' marker files).
    extra_ro: tuple[Path, ...] = ()

    @property
    def roots_dir(self) -> Path:
        return self.roots if self.roots is not None else self.workroot.parent / "roots"


def report_to_stderr(message: str) -> None:
    """One line in the worker's log (its stderr: farm.log for the embedded farm, the journal under systemd)."""
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}", file=sys.stderr, flush=True)


class Worker:
    def __init__(
        self,
        *,
        lifecycle: BuildLifecycle,
        queue: JobQueue,
        fetcher: SourceFetcher,
        settings: WorkerSettings,
        report: Callable[[str], None] = report_to_stderr,
        protection: InstanceProtection | None = None,
    ) -> None:
        self.lifecycle = lifecycle
        self.queue = queue
        self.fetcher = fetcher
        self.settings = settings
        self.report = report
        self.stop = threading.Event()  # set by run()'s caller (SIGTERM, a Spot notice): stop and give the job back
        # Scale-in protection of this worker's machine (an EC2 instance in an Auto Scaling group): on while it
        # builds, off when its queue is empty; changed on those transitions only, not once per job. Unknown (None)
        # at start: a worker killed mid-build left it on, so the first idle moment turns it off.
        self.protection = protection
        self.protected: bool | None = None

    def run(
        self,
        stop: threading.Event | None = None,
        max_jobs: int | None = None,
        orphaned: Callable[[], bool] = lambda: False,
    ) -> int:
        """Take jobs until stopped, `max_jobs` were handled, or the supervisor is gone (`orphaned`)."""
        if stop is not None:
            self.stop = stop
        handled = 0
        try:
            while not self.stop.is_set() and (max_jobs is None or handled < max_jobs) and not orphaned():
                job = self.queue.receive(self.settings.visibility_timeout, self.settings.receive_wait)
                if job is None:
                    self._protect(False)  # idle: the group may take this machine
                    continue
                self.handle(job)
                handled += 1
        finally:
            self._protect(False)
        return handled

    def _protect(self, on: bool) -> None:
        """Turn scale-in protection on or off if that changes it. A failure is reported and the state kept as it
        was, so the next transition (the next build, the next empty receive) tries again; the build goes on: an
        unprotected build risks only being redone elsewhere if the group takes this machine."""
        if self.protection is None or self.protected == on:
            return
        try:
            self.protection.protect(on)
        except Exception as exc:
            self.report(
                f"worker {self.settings.worker_id}: cannot turn scale-in protection {'on' if on else 'off'}: {exc}"
            )
            return
        self.protected = on

    def handle(self, job: Job) -> None:
        claim = self.lifecycle.claim(job.body, self.settings.worker_id, self.settings.lease_ttl)
        if isinstance(claim, Build):
            self._protect(True)  # before any work: a build in progress is never scaled in
            self._build(claim, job)
        else:
            # Skip, Deferred (a fresh job was sent), Waiting (the dependencies' finish sends one), Failed.
            if isinstance(claim, Waiting) and claim.record is not None:
                self._fetch_while_waiting(claim.record)
            self.queue.ack(job)

    def _prefetch_waiters(self, record: BuildRecord) -> None:
        """Fetch the sources of every build that cannot start before this one (see `_fetch_while_waiting`); a
        problem there is reported and never fails this build."""
        try:
            waiters = self.lifecycle.waiting_on(record)
        except Exception as exc:
            self.report(f"worker {self.settings.worker_id}: cannot list the builds waiting for {record.name}: {exc}")
            return
        for waiter in waiters:
            try:
                self._fetch_while_waiting(waiter)
            except Exception as exc:
                self.report(f"worker {self.settings.worker_id}: fetching the sources of {waiter.name} failed: {exc}")

    def _fetch_while_waiting(self, record: BuildRecord) -> None:
        """Fetch the sources of a build whose dependencies are still building (the worker that starts one of them
        does it for every build that waits on it): they are cached for its build, and when no URL or mirror has
        them the build fails now (its log says why), instead of after its dependencies' compiles. Anything else is
        left for the build itself to meet and report."""
        try:
            spec = BuildSpec.from_json(record.spec)
        except (KeyError, TypeError, ValueError):
            return
        try:
            self.fetcher.fetch(spec.source)
            if spec.source.series is not None:
                self.fetcher.fetch(spec.source.series)
        except SourceUnavailable as exc:
            error = failure_reason(spec, str(exc))
            self.settings.workroot.mkdir(parents=True, exist_ok=True)
            workdir = Path(tempfile.mkdtemp(prefix=f"{record.name}-", dir=self.settings.workroot))
            try:
                log_path = workdir / "build.log"
                log_path.write_text(
                    f"pkgc: fetched the sources while {len(record.dependencies)} dependencies were building\n"
                    f"pkgc: build failed: {error}\n",
                    encoding="utf-8",
                )
                if self.lifecycle.fail_while_waiting(
                    record.key, self.settings.worker_id, self.settings.lease_ttl, log_path, error
                ):
                    self.report(f"worker {self.settings.worker_id}: {record.name} failed before building: {error}")
            finally:
                shutil.rmtree(workdir, ignore_errors=True)

    def _install_dependencies(
        self, dependencies: tuple[BuildRecord, ...], depsdir: Path, scratch: Path
    ) -> dict[str, tuple[Manifest, Path]]:
        """Unpack every dependency into `depsdir`; return each one's manifest and own unpacked tree by name."""
        scratch.mkdir(parents=True, exist_ok=True)
        unpacked_by_name: dict[str, tuple[Manifest, Path]] = {}
        for dependency in dependencies:
            archive = self.lifecycle.fetch_dependency(dependency, scratch / f"{dependency.key}.tar.zst")
            unpacked = scratch / f"{dependency.key}.d"
            manifest = unpack_artifact(archive, unpacked)
            relocate_tree(unpacked, manifest, str(depsdir))
            shutil.copytree(unpacked, depsdir, symlinks=True, dirs_exist_ok=True)
            unpacked_by_name[dependency.name] = (manifest, unpacked)
        return unpacked_by_name

    def _heartbeat(self, lease: Lease, job: Job, log_path: Path, done: threading.Event, lost: threading.Event) -> None:
        """Keep the job invisible and the lease alive; a lost lease sets `lost`, which aborts the build.

        An error of the queue or the store is reported (a queue that cannot extend visibility lets another worker
        take the job: the operator must see why) and the next beat tries again.
        """
        worker = self.settings.worker_id
        while not done.wait(self.settings.heartbeat_interval):
            try:
                self.queue.extend(job, self.settings.visibility_timeout)
            except Exception as exc:
                self.report(f"worker {worker}: cannot extend the visibility of the job of {lease.key[:12]}: {exc}")
            try:
                renewed = self.lifecycle.renew(lease, self.settings.lease_ttl, _last_line(log_path))
            except Exception as exc:
                self.report(f"worker {worker}: cannot renew the lease of {lease.key[:12]}: {exc}")
                continue
            if not renewed:
                self.report(f"worker {worker}: lost the lease of {lease.key[:12]}; aborting its build")
                lost.set()
                return

    def _build(self, claim: Build, job: Job) -> None:
        record, lease, spec = claim.record, claim.lease, claim.spec
        self.settings.workroot.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix=f"{record.name}-", dir=self.settings.workroot))
        log_path = workdir / "build.log"
        artifact_path = workdir / "artifact.tar.zst"
        done, lost = threading.Event(), threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(lease, job, log_path, done, lost), daemon=True)
        beat.start()
        ready, aborted, error, packed = False, False, "", ("", 0)
        try:
            with log_path.open("wb") as log:
                try:
                    self._prefetch_waiters(record)  # first: a waiter whose source is missing hears it now
                    definition = _toolchain_of(spec)
                    source = self.fetcher.fetch(spec.source)
                    series = self.fetcher.fetch(spec.source.series) if spec.source.series is not None else None
                    depsdir: Path | None = None
                    unpacked: dict[str, tuple[Manifest, Path]] = {}
                    if claim.dependencies:
                        depsdir = workdir / "deps"
                        depsdir.mkdir()
                        unpacked = self._install_dependencies(claim.dependencies, depsdir, workdir / "scratch")
                    root = None
                    if self.settings.bubblewrap:
                        root = make_root(definition, spec.build.tools, spec.build.system, self.settings.roots_dir)
                    sandbox = Sandbox(
                        workdir,
                        bwrap=self.settings.bubblewrap,
                        deadline=time.monotonic() + self.settings.build_timeout,
                        abort=lambda: lost.is_set() or self.stop.is_set(),
                        root=root,
                        extra_ro=self.settings.extra_ro if root is not None else (),
                    )
                    staged = run_build(
                        spec,
                        workdir=workdir,
                        source_archive=source,
                        depsdir=depsdir,
                        sandbox=sandbox,
                        jobs=self.settings.jobs,
                        log=log,
                        series_archive=series,
                    )
                    packed = self._pack(spec, staged, artifact_path)
                    checked = check_needed(
                        staged,
                        base_sonames=definition.base_sonames,
                        runtime_trees=_runtime_trees(spec, unpacked),
                        toolchain=definition.name,
                        log=lambda line: _write_line(log, line),
                    )
                    log.write(f"pkgc: NEEDED check: {checked} ELF files, every library found\n".encode())
                    ready = True
                    log.write(f"pkgc: packed {packed[1]} bytes, sha256 {packed[0]}\n".encode())
                except BuildAborted as exc:
                    aborted = True
                    log.write(f"pkgc: {exc}\n".encode())
                except (
                    CommandFailed,
                    BuildTimedOut,
                    BuildError,
                    ToolchainMissing,
                    UnsatisfiedLibrary,
                    DependencyUnavailable,
                    PackError,
                    PkgcError,
                    OSError,
                ) as exc:
                    error = str(exc)
                    log.write(f"pkgc: build failed: {error}\n".encode())
                except Exception as exc:  # a bug in pkgc must still end the build, with its trace in the log
                    error = f"internal error: {exc}"
                    log.write(traceback.format_exc().encode())
            done.set()
            if lost.is_set():
                return  # someone else owns the build now; its job comes back to whoever should see it
            if aborted or (self.stop.is_set() and not ready):
                # Stopping: give the build back without counting the attempt and let another worker have the job now.
                self.lifecycle.release(lease)
                self.queue.retry_later(job, 0)
                self.report(f"worker {self.settings.worker_id}: stopping; gave back the build of {record.name}")
                return
            if ready:
                self.lifecycle.publish(lease, artifact_path, log_path, packed[0], packed[1])
            else:
                self.lifecycle.fail(lease, log_path, failure_reason(spec, error))
            self.queue.ack(job)
        finally:
            done.set()
            shutil.rmtree(workdir, ignore_errors=True)

    def _pack(self, spec: BuildSpec, staged: Path, out: Path) -> tuple[str, int]:
        manifest = Manifest(
            name=spec.name,
            version=spec.version,
            key=spec.key,
            options=spec.options.as_dict(),
            platform=spec.platform.as_dict(),
            dependencies=[list(pair) for pair in spec.dependencies],
            runtime_dependencies=list(spec.runtime_dependencies),
            smoke=smoke_manifest(spec),
        )
        pack_tree(staged, manifest, out)
        digest = hashlib.sha256()
        with out.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        return digest.hexdigest(), out.stat().st_size


def failure_reason(spec: BuildSpec, error: str) -> str:
    """A failed build's reason as the user reads it: a generated recipe's says so (no one curated it)."""
    if spec.recipe_content.get("origin") == "generated":
        return f"generated recipe (from the Debian catalog): {error}"
    return error


def smoke_manifest(spec: BuildSpec) -> dict[str, Any]:
    """The artifact manifest's smoke entry: the first test as `command`/`expect` (as before), and every test,
    with stdin and environment, under `tests` when there is any."""
    smoke: dict[str, Any] = {"command": list(spec.smoke_command), "expect": spec.smoke_expect}
    if spec.smoke_tests:
        smoke["tests"] = [test.as_dict() for test in spec.smoke_tests]
    return smoke


def _write_line(log: BinaryIO, line: str) -> None:
    log.write(f"{line}\n".encode())


def _toolchain_of(spec: BuildSpec) -> ToolchainDefinition:
    """The toolchain definition the spec was keyed with, which must be the one this worker has."""
    name, version = spec.toolchain["name"], spec.toolchain["version"]
    try:
        definition = load_toolchain(name)
    except (OSError, ValueError):
        raise BuildError(f"this worker has no toolchain definition {name!r}") from None
    if definition.version != version:
        raise BuildError(
            f"the build asks for toolchain {name} version {version}; this worker has version {definition.version}"
        )
    return definition


def _runtime_trees(spec: BuildSpec, unpacked: dict[str, tuple[Manifest, Path]]) -> list[Path]:
    """The unpacked trees of the spec's runtime dependencies and of theirs, transitively: what a client installs
    with the artifact."""
    trees: list[Path] = []
    seen: set[str] = set()
    pending = list(spec.runtime_dependencies)
    while pending:
        name = pending.pop()
        if name in seen or name not in unpacked:
            continue
        seen.add(name)
        manifest, tree = unpacked[name]
        trees.append(tree)
        pending.extend(manifest.runtime_dependencies)
    return trees


def _last_line(log_path: Path) -> str:
    """The last non-empty line of a log that is still being written."""
    try:
        with log_path.open("rb") as handle:
            handle.seek(max(0, log_path.stat().st_size - 4096))
            lines = [line for line in handle.read().decode(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""
