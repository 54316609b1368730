"""The worker loop: receive a job, take the lease, build, upload, finish; idempotent by build key.

Delivery is at least once, so every step tolerates repeats: a job for a finished build is acknowledged and dropped,
a job whose build another worker holds comes back as a fresh message when that worker's lease would have expired
(so a stalled holder that then dies does not strand its build), and writes after a lost lease are refused by the
build store's fencing token. A job is acknowledged only after the build is marked finished, so a worker killed at
any point leaves a job that comes back.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pkgc.artifact import Manifest, PackError, pack_tree, relocate_tree, unpack_artifact
from pkgc.core.buildspec import BuildSpec
from pkgc.core.errors import PkgcError
from pkgc.core.protocol import BuildStatus
from pkgc.farm.ports import BlobStore, BuildRecord, BuildStore, Job, JobQueue, Lease, Notifier
from pkgc.farm.service import artifact_blob_name, log_blob_name
from pkgc.worker.builder import BuildError, run_build
from pkgc.worker.fetch import SourceFetcher
from pkgc.worker.sandbox import BuildTimedOut, CommandFailed, Sandbox

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
    dependency_retry_delay: float = 2.0
    max_attempts: int = 3
    bubblewrap: str | None = None


class Worker:
    def __init__(
        self,
        *,
        builds: BuildStore,
        queue: JobQueue,
        blobs: BlobStore,
        notifier: Notifier,
        fetcher: SourceFetcher,
        settings: WorkerSettings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.builds = builds
        self.queue = queue
        self.blobs = blobs
        self.notifier = notifier
        self.fetcher = fetcher
        self.settings = settings
        self.clock = clock

    def run(
        self, stop: threading.Event, max_jobs: int | None = None, orphaned: Callable[[], bool] = lambda: False
    ) -> int:
        """Take jobs until stopped, `max_jobs` were handled, or the supervisor is gone (`orphaned`)."""
        handled = 0
        while not stop.is_set() and (max_jobs is None or handled < max_jobs) and not orphaned():
            job = self.queue.receive(self.settings.visibility_timeout, self.settings.receive_wait)
            if job is not None:
                self.handle(job)
                handled += 1
        return handled

    def handle(self, job: Job) -> None:
        key = job.body
        record = self.builds.get(key)
        if record is None or record.status.finished:
            self.queue.ack(job)
            return
        dependencies = self.builds.get_many(list(record.dependencies))
        failed = [d for d in dependencies.values() if d.status == BuildStatus.FAILED]
        waiting = [k for k in record.dependencies if k not in dependencies or not dependencies[k].status.finished]
        lease = None
        if not waiting or failed:
            lease = self.builds.acquire_lease(key, self.settings.worker_id, self.clock(), self.settings.lease_ttl)
            if lease is None:
                # Another worker holds a live lease. This may be the build's only job (the holder stalled past the
                # visibility timeout and its message came to us), so dropping it could strand the build if the
                # holder then dies: come back as a fresh message once the lease would have expired.
                current = self.builds.get(key)
                if current is not None and not current.status.finished:
                    remaining = max(0.0, current.lease_expires - self.clock())
                    self.queue.send(key, delay=remaining + self.settings.dependency_retry_delay)
                self.queue.ack(job)
                return
        if lease is None:
            # Dependencies still building: come back later as a fresh message, so waiting costs no retry.
            self.queue.send(key, delay=self.settings.dependency_retry_delay)
            self.queue.ack(job)
            return
        if failed:
            self._finish(lease, job, BuildStatus.FAILED, error=f"dependency {failed[0].name} failed to build")
            return
        if lease.attempts > self.settings.max_attempts:
            self._finish(lease, job, BuildStatus.FAILED, error=f"gave up after {self.settings.max_attempts} attempts")
            return
        self._build(record, lease, job)

    def _finish(self, lease: Lease, job: Job, status: BuildStatus, **fields: object) -> None:
        if self.builds.finish(lease, self.clock(), status=status, **fields):  # type: ignore[arg-type]
            record = self.builds.get(lease.key)
            if record is not None:
                self.notifier.build_finished(record)
        self.queue.ack(job)

    def _collect_dependencies(self, record: BuildRecord) -> list[BuildRecord]:
        """Every build in the dependency closure, each once: a library's own libraries are needed to link it."""
        closure: dict[str, BuildRecord] = {}
        pending = list(record.dependencies)
        while pending:
            key = pending.pop()
            if key in closure:
                continue
            found = self.builds.get(key)
            if found is None or found.status != BuildStatus.READY or not found.artifact:
                raise BuildError(f"dependency {key[:12]} is not ready")
            closure[key] = found
            pending.extend(found.dependencies)
        return list(closure.values())

    def _install_dependencies(self, record: BuildRecord, depsdir: Path, scratch: Path) -> None:
        scratch.mkdir(parents=True, exist_ok=True)
        for dependency in self._collect_dependencies(record):
            archive = scratch / f"{dependency.key}.tar.zst"
            assert dependency.artifact is not None
            if not self.blobs.download_to(dependency.artifact, archive):
                raise BuildError(f"artifact of dependency {dependency.name} is missing")
            if hashlib.sha256(archive.read_bytes()).hexdigest() != dependency.sha256:
                raise BuildError(f"artifact of dependency {dependency.name} does not match its checksum")
            unpacked = scratch / f"{dependency.key}.d"
            manifest = unpack_artifact(archive, unpacked)
            relocate_tree(unpacked, manifest, str(depsdir))
            shutil.copytree(unpacked, depsdir, symlinks=True, dirs_exist_ok=True)

    def _heartbeat(self, lease: Lease, job: Job, log_path: Path, done: threading.Event, lost: threading.Event) -> None:
        while not done.wait(self.settings.heartbeat_interval):
            self.queue.extend(job, self.settings.visibility_timeout)
            if not self.builds.renew_lease(lease, self.clock(), self.settings.lease_ttl, _last_line(log_path)):
                lost.set()
                return

    def _build(self, record: BuildRecord, lease: Lease, job: Job) -> None:
        self.settings.workroot.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix=f"{record.name}-", dir=self.settings.workroot))
        log_path = workdir / "build.log"
        done, lost = threading.Event(), threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(lease, job, log_path, done, lost), daemon=True)
        beat.start()
        status, error, artifact_fields = BuildStatus.FAILED, "", {}
        try:
            with log_path.open("wb") as log:
                try:
                    spec = BuildSpec.from_json(record.spec)
                    source = self.fetcher.fetch(spec.source)
                    depsdir: Path | None = None
                    if record.dependencies:
                        depsdir = workdir / "deps"
                        depsdir.mkdir()
                        self._install_dependencies(record, depsdir, workdir / "scratch")
                    sandbox = Sandbox(
                        workdir,
                        bwrap=self.settings.bubblewrap,
                        deadline=time.monotonic() + self.settings.build_timeout,
                    )
                    staged = run_build(
                        spec,
                        workdir=workdir,
                        source_archive=source,
                        depsdir=depsdir,
                        sandbox=sandbox,
                        jobs=self.settings.jobs,
                        log=log,
                    )
                    artifact_fields = self._pack(spec, staged, workdir / "artifact.tar.zst")
                    status = BuildStatus.READY
                    log.write(
                        f"pkgc: packed {artifact_fields['size']} bytes, sha256 {artifact_fields['sha256']}\n".encode()
                    )
                except (CommandFailed, BuildTimedOut, BuildError, PackError, PkgcError, OSError) as exc:
                    error = str(exc)
                    log.write(f"pkgc: build failed: {error}\n".encode())
                except Exception as exc:  # a bug in pkgc must still end the build, with its trace in the log
                    error = f"internal error: {exc}"
                    log.write(traceback.format_exc().encode())
            done.set()
            if lost.is_set():
                return  # someone else owns the build now; writing would be refused anyway
            log_blob = log_blob_name(record.key)
            self.blobs.put_file(log_blob, log_path)
            if status == BuildStatus.READY:
                artifact_blob = artifact_blob_name(record.key)
                self.blobs.put_file(artifact_blob, workdir / "artifact.tar.zst")
                self._finish(lease, job, status, artifact=artifact_blob, log=log_blob, **artifact_fields)
            else:
                self._finish(lease, job, status, log=log_blob, error=error)
        finally:
            done.set()
            shutil.rmtree(workdir, ignore_errors=True)

    def _pack(self, spec: BuildSpec, staged: Path, out: Path) -> dict[str, object]:
        manifest = Manifest(
            name=spec.name,
            version=spec.version,
            key=spec.key,
            options=spec.options.as_dict(),
            platform=spec.platform.as_dict(),
            dependencies=[list(pair) for pair in spec.dependencies],
            runtime_dependencies=list(spec.runtime_dependencies),
            smoke={"command": list(spec.smoke_command), "expect": spec.smoke_expect},
        )
        pack_tree(staged, manifest, out)
        data = out.read_bytes()
        return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def _last_line(log_path: Path) -> str:
    """The last non-empty line of a log that is still being written."""
    try:
        with log_path.open("rb") as handle:
            handle.seek(max(0, log_path.stat().st_size - 4096))
            lines = [line for line in handle.read().decode(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""
