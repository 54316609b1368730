"""Ports: what the farm's use cases need from storage, the queue, blobs and notifications.

Each port is shaped so that DynamoDB, SQS, S3 and SNS can implement it as well as SQLite and a directory can:
key-value access by build key, conditional writes instead of transactions across items, no joins, no
server-side full-text search, at-least-once delivery with visibility timeouts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

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
        """(name, summary, latest version) of every package."""
        ...


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


class BlobStore(Protocol):
    def put_file(self, name: str, path: Path) -> None: ...
    def put_bytes(self, name: str, data: bytes) -> None: ...
    def get_bytes(self, name: str) -> bytes | None: ...
    def download_to(self, name: str, path: Path) -> bool: ...
    def local_path(self, name: str) -> Path | None:
        """A file the embedded API can serve directly; None where blobs live elsewhere."""
        ...

    def public_url(self, name: str) -> str | None:
        """A URL clients can fetch the blob from (a CDN); None when the farm API serves it."""
        ...


class Notifier(Protocol):
    def build_finished(self, record: BuildRecord) -> None: ...
