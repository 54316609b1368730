"""Ports: what the farm's use cases need from storage, the queue, blobs and notifications.

Each port is shaped so that DynamoDB, SQS, S3 and SNS can implement it as well as SQLite and a directory can:
key-value access by build key, conditional writes instead of transactions across items, no joins, no
server-side full-text search, at-least-once delivery with visibility timeouts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from pkgc.core.protocol import BuildStatus


@dataclass(frozen=True)
class BuildRecord:
    """One build, keyed by its build key; the only source of truth about its state."""

    key: str
    name: str
    version: str
    options: dict[str, str]
    spec: dict[str, Any]
    status: BuildStatus = BuildStatus.QUEUED
    dependencies: tuple[str, ...] = ()
    runtime_dependencies: tuple[str, ...] = ()
    artifact: str | None = None
    sha256: str | None = None
    size: int | None = None
    log: str | None = None
    error: str | None = None
    lease_owner: str | None = None
    lease_token: int = 0
    lease_expires: float = 0.0
    attempts: int = 0
    last_line: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0
    enqueued_at: float = 0.0
    # The build platform (str(Platform)): the key includes it and it names the queue whose workers build it.
    platform: str = ""
    # Builds waiting for this one to finish; finishing it sends their jobs (no job re-sent while they wait).
    waiters: tuple[str, ...] = ()


@dataclass(frozen=True)
class Lease:
    """Proof that a worker holds a build; the token fences off the writes of anyone who held it before."""

    key: str
    owner: str
    token: int
    attempts: int


@dataclass(frozen=True)
class Job:
    body: str
    receipt: str
    receive_count: int
    extra: dict[str, Any] = field(default_factory=dict)


class CatalogStore(Protocol):
    def put_recipe(self, name: str, text: str, summary: str, latest: str) -> None: ...
    def get_recipe_text(self, name: str) -> str | None: ...
    def list_packages(self) -> list[tuple[str, str, str]]:
        """(name, summary, latest version) of every package: a full scan, for writing the snapshot, not per request."""
        ...

    def write_snapshot(self, data: bytes) -> None:
        """Store the catalog snapshot (the encoded list of every package) that search and /catalog read."""
        ...

    def read_snapshot(self) -> bytes | None: ...


class BuildStore(Protocol):
    def create_if_absent(self, record: BuildRecord) -> tuple[bool, BuildRecord]:
        """Store `record` unless the key exists; return whether this call created it, and the stored record."""
        ...

    def get(self, key: str) -> BuildRecord | None: ...
    def get_many(self, keys: list[str]) -> dict[str, BuildRecord]: ...

    def acquire_lease(self, key: str, owner: str, now: float, ttl: float) -> Lease | None:
        """Take the build if it is queued, or building under an expired lease; bump the fencing token."""
        ...

    def renew_lease(self, lease: Lease, now: float, ttl: float, last_line: str | None = None) -> bool:
        """Extend the lease (and note the build log's latest line, for clients watching); False if it was lost."""
        ...

    def release_lease(self, lease: Lease, now: float) -> bool:
        """Give the build back (status queued) without counting an attempt, e.g. while dependencies build."""
        ...

    def finish(
        self,
        lease: Lease,
        now: float,
        *,
        status: BuildStatus,
        artifact: str | None = None,
        sha256: str | None = None,
        size: int | None = None,
        log: str | None = None,
        error: str | None = None,
    ) -> bool:
        """Mark ready or failed, only if `lease` is still the current one: a stalled worker's late write fails."""
        ...

    def mark_enqueued(self, key: str, now: float) -> None: ...

    def add_waiter(self, dependency_key: str, waiter_key: str) -> BuildRecord | None:
        """Note (atomically, as a set add) that `waiter_key` waits for `dependency_key` to finish; return the
        dependency's record as stored after the write (None if absent), so the caller can re-check its status: a
        dependency that finished before the add does not leave its waiter stranded."""
        ...

    def requeue_failed(self, key: str, now: float) -> bool:
        """Failed → queued for another try, only if it is failed now: of N concurrent retries exactly one wins."""
        ...

    def builds_of(self, name: str, limit: int = 100) -> list[BuildRecord]:
        """Builds of one package, newest first (a secondary index on name; a GSI on DynamoDB)."""
        ...


class JobQueue(Protocol):
    def send(self, body: str, delay: float = 0.0) -> None: ...

    def receive(self, visibility_timeout: float, wait: float) -> Job | None:
        """One message, hidden from others for `visibility_timeout` seconds; waits up to `wait` for one."""
        ...

    def extend(self, job: Job, visibility_timeout: float) -> None: ...
    def ack(self, job: Job) -> None: ...
    def retry_later(self, job: Job, delay: float) -> None: ...
    def depth(self) -> int: ...
    def dead_letter_count(self) -> int: ...


class QueueRouter(Protocol):
    """One job queue per build platform: a worker receives only jobs it can build."""

    def for_platform(self, platform: str) -> JobQueue: ...
    def platforms(self) -> list[str]:
        """The platforms that have a queue (and so workers): the ones the farm builds for."""
        ...


BlobKind = Literal["artifacts", "logs"]
_BLOB_SUFFIX: dict[str, str] = {"artifacts": ".tar.zst", "logs": ".log"}


def content_blob_name(kind: BlobKind, digest: str) -> str:
    """The one naming rule for content-addressed blobs: the name is the content's sha256, so it never changes."""
    return f"{kind}/sha256/{digest[:2]}/{digest}{_BLOB_SUFFIX[kind]}"


class BlobStore(Protocol):
    def put_content(self, kind: BlobKind, path: Path) -> str:
        """Store the file under the sha256 of its content, unless a blob of that name exists; return the name.

        A blob stored this way never changes, so it can be served as immutable; it becomes a build's artifact or
        log only through the fenced `BuildStore.finish`, so a stale worker's upload is harmless.
        """
        ...

    def put_named(self, name: str, data: bytes) -> None:
        """Replace a mutable named object (the catalog snapshot); not for artifacts or logs."""
        ...

    def get_bytes(self, name: str) -> bytes | None: ...
    def download_to(self, name: str, path: Path) -> bool: ...
    def exists(self, name: str) -> bool: ...

    def url_for(self, name: str) -> str:
        """The URL a client fetches the blob from: the only place blob URLs are made.

        Either an absolute http(s) URL (a CDN, a presigned URL: the client sends no token there) or a path under
        the API (`/v1/blobs/...`) that the client resolves against the farm's URL.
        """
        ...


class Notifier(Protocol):
    def build_finished(self, record: BuildRecord) -> None: ...


@dataclass(frozen=True)
class FarmPorts:
    """Every adapter a farm deployable needs, as chosen by its composition root (pkgc/farm/bootstrap.py)."""

    catalog: CatalogStore
    builds: BuildStore
    queues: QueueRouter
    blobs: BlobStore
    notifier: Notifier
