"""The build lifecycle: the farm's use cases that a worker calls around fetch, build and pack.

A worker receives a job from its platform's queue and keeps the job's visibility alive; everything that decides
about the build itself is here: whether the job is worth building (claim: the dependency check, the lease, the
attempt limit), keeping the lease (renew), and ending it (publish, fail, release). Blob names are this module's
business too: a worker hands over files and never names a blob, so the naming rule (content addressed) and the
rule that only the fenced `finish` makes a blob a build's hold for every deployment.

Dependencies wait without churning the queue: a build with an unfinished dependency is registered as a waiter on
it (resolve does this when it creates the build, claim when a job arrives early), and finishing a build sends the
jobs of its waiters whose dependencies have now all finished.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pkgc.core.buildspec import BuildSpec
from pkgc.core.protocol import BuildStatus
from pkgc.farm.ports import BlobStore, BuildRecord, BuildStore, FarmPorts, JobQueue, Lease, Notifier, QueueRouter

_KEY = re.compile(r"[0-9a-f]{64}")


class DependencyUnavailable(Exception):
    """A dependency's artifact cannot be had (not ready, missing, or not the bytes its build recorded)."""


@dataclass(frozen=True)
class Skip:
    """Nothing to do (the build is finished or unknown): acknowledge the job."""

    reason: str


@dataclass(frozen=True)
class Deferred:
    """Another worker holds a live lease; a fresh job was sent for when that lease would expire (the holder may
    have stalled, making this the build's only job): acknowledge this one."""

    delay: float


@dataclass(frozen=True)
class Waiting:
    """Dependencies are still building; the build is their waiter and their finish sends its job: acknowledge.

    Meanwhile the worker may fetch the build's own sources (`record`), and fail it at once when they cannot be had
    (`fail_while_waiting`)."""

    dependencies: tuple[str, ...]
    record: BuildRecord | None = None


@dataclass(frozen=True)
class Build:
    """The worker holds the lease: build `spec`, with the artifacts of `dependencies` (the closure) unpacked."""

    lease: Lease
    record: BuildRecord
    spec: BuildSpec
    dependencies: tuple[BuildRecord, ...] = ()


@dataclass(frozen=True)
class Failed:
    """The build was marked failed without building (a dependency failed, too many attempts): acknowledge."""

    error: str


Claim = Skip | Deferred | Waiting | Build | Failed

DEAD_LETTER_OWNER = "dead-letter"  # the lease owner of `bury`: shown as the holder while it marks a build failed
DEAD_LETTER_LEASE_SECONDS = 60.0


@dataclass(frozen=True)
class Buried:
    """What `bury` did with a dead job: `failed` (its build is now failed with `detail` as the reason) or
    `dropped` (nothing to do: finished, unknown): delete the dead letter; `kept`: leave it for a later look."""

    outcome: Literal["failed", "dropped", "kept"]
    detail: str


def platform_of(record: BuildRecord) -> str:
    """The queue a build's job goes to: its platform (records from before there was one read it from the spec)."""
    if record.platform:
        return record.platform
    try:
        return str(BuildSpec.from_json(record.spec).platform)
    except (KeyError, TypeError, ValueError):
        return ""


def _unfinished_after_waiting(builds: BuildStore, record: BuildRecord) -> tuple[list[str], list[str]]:
    """Register `record` as a waiter on each unfinished dependency; return (still unfinished, missing) keys.

    The add comes first and the status is read from what it returns: a dependency that finishes at the same time
    either sees the waiter when it finishes or is seen finished here, so the build is never stranded.
    """
    found = builds.get_many(list(record.dependencies))
    unfinished, missing = [], []
    for key in record.dependencies:
        current = found.get(key)
        if current is not None and current.status.finished:
            continue
        after = builds.add_waiter(key, record.key)
        if after is None:
            missing.append(key)
        elif not after.status.finished:
            unfinished.append(key)
    return unfinished, missing


def send_when_dependencies_finish(builds: BuildStore, queues: QueueRouter, record: BuildRecord, now: float) -> bool:
    """Send the build's job now if its dependencies have finished; otherwise leave it as their waiter.

    Returns whether a job was sent. A missing dependency sends the job too: the worker then fails the build.
    """
    unfinished, _ = _unfinished_after_waiting(builds, record)
    if unfinished:
        return False
    queues.for_platform(platform_of(record)).send(record.key)
    return True


@dataclass
class BuildLifecycle:
    builds: BuildStore
    queues: QueueRouter
    blobs: BlobStore
    notifier: Notifier
    clock: Callable[[], float] = time.time
    max_attempts: int = 3
    retry_delay: float = 2.0

    @classmethod
    def from_ports(cls, ports: FarmPorts, **settings: float | int) -> BuildLifecycle:
        return cls(
            builds=ports.builds,
            queues=ports.queues,
            blobs=ports.blobs,
            notifier=ports.notifier,
            **settings,  # type: ignore[arg-type]
        )

    def queue_for(self, platform: str) -> JobQueue:
        return self.queues.for_platform(platform)

    # -- claiming -------------------------------------------------------------------------------------------
    def claim(self, job_body: str, worker_id: str, lease_ttl: float) -> Claim:
        """Decide what a received job means; take the lease when it is to be built now."""
        key = job_body.strip()
        if not _KEY.fullmatch(key):
            return Skip(f"not a build key: {job_body[:80]!r}")
        record = self.builds.get(key)
        if record is None:
            return Skip("no such build")
        if record.status.finished:
            return Skip(f"already {record.status.value}")
        dependencies = self.builds.get_many(list(record.dependencies))
        failed = [d for d in dependencies.values() if d.status == BuildStatus.FAILED]
        missing: list[str] = []
        if not failed:
            unfinished, missing = _unfinished_after_waiting(self.builds, record)
            if unfinished and not missing:
                return Waiting(tuple(unfinished), record)
            dependencies = self.builds.get_many(list(record.dependencies))
            failed = [d for d in dependencies.values() if d.status == BuildStatus.FAILED]
        now = self.clock()
        lease = self.builds.acquire_lease(key, worker_id, now, lease_ttl)
        if lease is None:
            current = self.builds.get(key)
            if current is None or current.status.finished:
                return Skip("finished by another worker")
            delay = max(0.0, current.lease_expires - now) + self.retry_delay
            self.queue_for(platform_of(current)).send(key, delay=delay)
            return Deferred(delay)
        if failed:
            return self._refuse(lease, f"dependency {failed[0].name} failed to build")
        if missing:
            return self._refuse(lease, f"dependency build {missing[0][:12]} does not exist")
        if lease.attempts > self.max_attempts:
            # Every earlier lease ended without a result (a release gives its attempt back): its worker died
            # mid-build, an OOM kill or a crash, each time. Say so; there is no build log to point at.
            return self._refuse(
                lease,
                f"gave up after {self.max_attempts} attempts: each ended without a result (the worker died mid-build;"
                " see the workers' log)",
            )
        try:
            spec = BuildSpec.from_json(record.spec)
            closure = self._dependency_closure(record)
        except DependencyUnavailable as exc:
            return self._refuse(lease, str(exc))
        except (KeyError, TypeError, ValueError) as exc:
            return self._refuse(lease, f"the build's spec cannot be read: {exc}")
        return Build(lease, record, spec, closure)

    def _refuse(self, lease: Lease, error: str) -> Failed:
        self._finish(lease, BuildStatus.FAILED, error=error)
        return Failed(error)

    def _dependency_closure(self, record: BuildRecord) -> tuple[BuildRecord, ...]:
        """Every build in the dependency closure, each once: a library's own libraries are needed to link it."""
        closure: dict[str, BuildRecord] = {}
        pending = list(record.dependencies)
        while pending:
            key = pending.pop()
            if key in closure:
                continue
            found = self.builds.get(key)
            if found is None or found.status != BuildStatus.READY or not found.artifact:
                raise DependencyUnavailable(f"dependency {key[:12]} is not ready")
            closure[key] = found
            pending.extend(found.dependencies)
        return tuple(closure.values())

    def fetch_dependency(self, dependency: BuildRecord, destination: Path) -> Path:
        """Download a dependency's artifact to `destination`, checked against the sha256 its build recorded."""
        if dependency.artifact is None or not self.blobs.download_to(dependency.artifact, destination):
            raise DependencyUnavailable(f"artifact of dependency {dependency.name} is missing")
        digest = hashlib.sha256()
        with destination.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        if digest.hexdigest() != dependency.sha256:
            raise DependencyUnavailable(f"artifact of dependency {dependency.name} does not match its checksum")
        return destination

    # -- while building ---------------------------------------------------------------------------------------
    def renew(self, lease: Lease, lease_ttl: float, last_line: str | None = None) -> bool:
        """Extend the lease (and show the log's latest line to watchers); False: the lease is lost, stop building."""
        return self.builds.renew_lease(lease, self.clock(), lease_ttl, last_line)

    def release(self, lease: Lease) -> bool:
        """Give the build back without counting the attempt (the worker is stopping); its job must be made visible."""
        return self.builds.release_lease(lease, self.clock())

    # -- ending -----------------------------------------------------------------------------------------------
    def publish(self, lease: Lease, artifact_path: Path, log_path: Path, sha256: str, size: int) -> bool:
        """Store artifact and log under their content's digest and make them the build's by the fenced finish.

        False if the lease was lost meanwhile: the blobs stay stored (harmless, unreferenced), the build keeps
        whatever its current holder gives it.
        """
        artifact = self.blobs.put_content("artifacts", artifact_path)
        if not artifact.endswith(f"/{sha256}.tar.zst") or artifact_path.stat().st_size != size:
            raise ValueError(f"the artifact stored as {artifact} is not the one packed (sha256 {sha256}, {size} bytes)")
        log = self.blobs.put_content("logs", log_path)
        return self._finish(lease, BuildStatus.READY, artifact=artifact, sha256=sha256, size=size, log=log)

    def fail(self, lease: Lease, log_path: Path | None, error: str) -> bool:
        """Mark the build failed with its log; False if the lease was lost meanwhile."""
        log = self.blobs.put_content("logs", log_path) if log_path is not None and log_path.is_file() else None
        return self._finish(lease, BuildStatus.FAILED, log=log, error=error)

    def waiting_on(self, record: BuildRecord, limit: int = 256) -> list[BuildRecord]:
        """The queued builds that wait, directly or through others, for `record` (its waiters, theirs, ...), at
        most `limit`: what cannot start before it finishes, whose sources can be fetched meanwhile."""
        found: dict[str, BuildRecord] = {}
        pending = list(record.waiters)
        while pending and len(found) < limit:
            batch = [key for key in dict.fromkeys(pending) if key not in found][: limit - len(found)]
            pending = []
            for key, waiter in self.builds.get_many(batch).items():
                if waiter.status == BuildStatus.QUEUED:
                    found[key] = waiter
                    pending.extend(waiter.waiters)
        return list(found.values())

    def fail_while_waiting(self, key: str, worker_id: str, lease_ttl: float, log_path: Path | None, error: str) -> bool:
        """Fail a build whose dependencies are still building, for a reason their builds cannot change (no URL or
        mirror has its own source): the user hears it now, not after minutes of compiling its dependencies, which
        go on (other builds may use them). False if another worker holds the build or it has finished."""
        lease = self.builds.acquire_lease(key, worker_id, self.clock(), lease_ttl)
        return lease is not None and self.fail(lease, log_path, error)

    def _finish(self, lease: Lease, status: BuildStatus, **fields: object) -> bool:
        if not self.builds.finish(lease, self.clock(), status=status, **fields):  # type: ignore[arg-type]
            return False
        record = self.builds.get(lease.key)
        if record is not None:
            self.notifier.build_finished(record)
            self.send_waiters(record)
        return True

    # -- dead letters -----------------------------------------------------------------------------------------
    def bury(self, job_body: str, lease_ttl: float = DEAD_LETTER_LEASE_SECONDS) -> Buried:
        """Deal with a job that went to the dead-letter queue: it was received too often, each time crashing or
        losing its worker before the build finished, so no worker will ever finish it. Mark its build failed with
        a reason the client shows, through the same fenced path as a worker's failure (lease, then finish): a
        build that is READY or FAILED is left as it is, and one that a live worker holds right now is left to it
        (`kept`: look again later; its job is in that worker's hands).
        """
        key = job_body.strip()
        if not _KEY.fullmatch(key):
            return Buried("dropped", f"not a build key: {job_body[:80]!r}")
        record = self.builds.get(key)
        if record is None:
            return Buried("dropped", "no such build")
        if record.status.finished:
            return Buried("dropped", f"already {record.status.value}")
        lease = self.builds.acquire_lease(key, DEAD_LETTER_OWNER, self.clock(), lease_ttl)
        if lease is None:
            current = self.builds.get(key)
            if current is None or current.status.finished:
                return Buried("dropped", "finished meanwhile")
            return Buried("kept", "a worker holds a live lease on it")
        crashes = max(1, lease.attempts - 1)  # this lease counted one attempt itself
        times = "once" if crashes == 1 else f"{crashes} times"
        # No build log exists (the worker died before storing one): the worker's own log is where to look.
        error = f"the worker crashed {times} building it; see its log (journalctl -u pkgc-worker on the instance)"
        if record.last_line:
            error += f" (its last line: {record.last_line[:200]})"
        if not self._finish(lease, BuildStatus.FAILED, error=error):
            return Buried("kept", "another holder took it meanwhile")
        return Buried("failed", error)

    def send_waiters(self, record: BuildRecord) -> list[str]:
        """Send the job of each build waiting for `record` whose dependencies have now all finished."""
        if not record.waiters:
            return []
        now = self.clock()
        sent = []
        waiters = self.builds.get_many(list(record.waiters))
        for waiter in waiters.values():
            if waiter.status != BuildStatus.QUEUED:
                continue  # finished, or a worker holds it already
            dependencies = self.builds.get_many(list(waiter.dependencies))
            if all(key in dependencies and dependencies[key].status.finished for key in waiter.dependencies):
                self.builds.mark_enqueued(waiter.key, now)
                self.queue_for(platform_of(waiter)).send(waiter.key)
                sent.append(waiter.key)
        return sent
