"""Ports: what the farm's use cases need from storage, the queue, blobs and notifications.

Each port is shaped so that DynamoDB, SQS, S3 and SNS can implement it as well as SQLite and a directory can:
key-value access by build key, conditional writes instead of transactions across items, no joins, no
server-side full-text search, at-least-once delivery with visibility timeouts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from pkgc.core.protocol import BuildStatus
from pkgc.core.recipe import Recipe


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


class GeneratedRecipes(Protocol):
    """Recipes made on lookup from a distribution's source catalog (pkgc/farm/debian_catalog.py); the curated
    catalog is asked first, so a curated recipe overrides a generated one of the same name."""

    def identity(self, name: str) -> str | None:
        """A string that changes whenever the package's generated recipe would; None if the catalog lacks it."""
        ...

    def recipe(self, name: str) -> Recipe | None: ...

    def packages(self) -> list[tuple[str, str, str, str]]:
        """(name, summary, version, homepage) of every package: a full read, for the catalog snapshot."""
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
    def depth(self) -> int:
        """Jobs waiting or being worked on (visible + in flight; not delayed ones): the autoscaling backlog."""
        ...

    def dead_letter_count(self) -> int: ...

    def receive_dead_letter(self, visibility_timeout: float) -> Job | None:
        """One job of the dead letters (received too often: each receive crashed or lost its worker), hidden
        from other readers of the dead letters for `visibility_timeout` seconds; None if there is none now."""
        ...

    def delete_dead_letter(self, job: Job) -> None:
        """Forget a dead letter received with `receive_dead_letter` (its build has been dealt with)."""
        ...


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

    def url_lifetime(self) -> float | None:
        """How many seconds a URL from `url_for` stays valid after it is made; None: it never expires.

        The farm service keeps ready builds' answers (URLs included) in memory; it makes a URL again once half
        of this has passed, so a client always gets at least half the lifetime. A presigned URL expires (AWS
        without a CDN); an API path or a CDN URL does not, and then the cached answer is kept as it is.
        """
        ...


class Notifier(Protocol):
    def build_finished(self, record: BuildRecord) -> None: ...


class BacklogMetrics(Protocol):
    """Where the job backlog per build platform goes for the workers' autoscaling (CloudWatch `pkgc/Backlog`)."""

    def publish_backlog(self, backlog: Mapping[str, int]) -> None:
        """One data point per platform: jobs waiting or being built on that platform's queue now."""
        ...
class InstanceProtection(Protocol):
    """Whether autoscaling may take away the machine a worker runs on (an Auto Scaling group's scale-in).

    A worker turns protection on when it starts building and off when its queue has nothing for it, so a group
    that shrinks with the backlog only ever terminates idle workers, never one in the middle of a build. The worker
    calls it on those transitions only, not once per job. A failure raises (FarmUnavailable on AWS): the worker
    reports it and tries again at the next transition.
    """

    def protect(self, on: bool) -> None: ...


@dataclass(frozen=True)
class FarmPorts:
    """Every adapter a farm deployable needs, as chosen by its composition root (pkgc/farm/bootstrap.py)."""

    catalog: CatalogStore
    builds: BuildStore
    queues: QueueRouter
    blobs: BlobStore
    notifier: Notifier
    # API tokens (pkgc/farm/access.py); None where the deployment has no token store configured.
    tokens: TokenStore | None = None


TokenRole = Literal["user", "admin"]
TOKEN_ROLES: tuple[TokenRole, ...] = ("user", "admin")
HOUR_SECONDS = 3600


def hour_window(now: float) -> int:
    """The fixed hourly window `now` falls in: quotas of new builds per hour count per window, not sliding."""
    return int(now // HOUR_SECONDS)


@dataclass(frozen=True)
class TokenRecord:
    """An API token as stored: the sha256 of its secret (never the secret), who it is for, what it may do.

    `window`/`window_count` count the builds it started in the current hourly window; `in_flight` holds the keys of
    the builds it started that were not yet seen finished (bounded by `max_in_flight`: no scan is needed to count
    them, and finished ones are pruned with one batch read of their records).
    """

    token_hash: str
    name: str
    role: TokenRole = "user"
    builds_per_hour: int = 20
    max_in_flight: int = 10
    created_at: float = 0.0
    revoked_at: float | None = None
    window: int = 0
    window_count: int = 0
    in_flight: tuple[str, ...] = ()
    builds_started: int = 0
    last_used_at: float = 0.0

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def started_in_window(self, window: int) -> int:
        return self.window_count if self.window == window else 0


class TokenStore(Protocol):
    """API tokens keyed by the sha256 of their secret (DynamoDB: partition key `token_hash`).

    The request path reads and writes one token by key; only the administrator's `list_tokens` (and so revoking by
    name) reads them all, a handful of items.
    """

    def create(self, record: TokenRecord) -> bool:
        """Store a new token unless one with this hash exists; True if stored."""
        ...

    def get(self, token_hash: str) -> TokenRecord | None: ...

    def list_tokens(self) -> list[TokenRecord]:
        """Every token, revoked ones too, oldest first (a scan: for the administrator, not per request)."""
        ...

    def revoke(self, token_hash: str, now: float) -> bool:
        """Mark the token revoked at `now` unless it already is; every later `admit` refuses it."""
        ...

    def admit(self, token_hash: str, now: float, keys: tuple[str, ...]) -> tuple[bool, TokenRecord | None]:
        """Charge the token for starting the builds `keys`, atomically, only if it stays within its quotas.

        One conditional write: the token exists and is not revoked, the builds it started in `hour_window(now)`
        plus len(keys) stay within `builds_per_hour` (a new window starts its count afresh), and its in-flight
        keys plus len(keys) stay within `max_in_flight`; then the count goes up by len(keys) and the keys join the
        in-flight set. Of concurrent callers, never more are admitted than the quotas allow. Returns whether it
        was admitted, and the record (as stored after the write, or as read when refused; None if unknown).
        """
        ...

    def forget_in_flight(self, token_hash: str, keys: tuple[str, ...]) -> None:
        """Drop keys (builds seen finished) from the token's in-flight set; absent keys are ignored."""
        ...
