"""In-memory fakes of every farm port: fast use-case tests of the farm service and the worker's lifecycle.

They keep the ports' promises exactly (conditional writes, lease fencing, visibility timeouts, dead letters, blobs
written only if absent) and pass the same contract suite as the SQLite, directory and AWS adapters; one lock per
fake makes every operation atomic, as a conditional write is on the real stores.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from pkgc.core.protocol import API_PREFIX, BuildStatus
from pkgc.farm.adapters.memory_tokens import MemoryTokenStore
from pkgc.farm.ports import BlobKind, BuildRecord, FarmPorts, Job, Lease, content_blob_name


class MemoryCatalogStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._recipes: dict[str, tuple[str, str, str]] = {}  # name -> (text, summary, latest)
        self._snapshot: bytes | None = None

    def put_recipe(self, name: str, text: str, summary: str, latest: str) -> None:
        with self._lock:
            self._recipes[name] = (text, summary, latest)

    def get_recipe_text(self, name: str) -> str | None:
        with self._lock:
            found = self._recipes.get(name)
        return None if found is None else found[0]

    def list_packages(self) -> list[tuple[str, str, str]]:
        with self._lock:
            return [(name, summary, latest) for name, (_, summary, latest) in sorted(self._recipes.items())]

    def write_snapshot(self, data: bytes) -> None:
        with self._lock:
            self._snapshot = bytes(data)

    def read_snapshot(self) -> bytes | None:
        with self._lock:
            return self._snapshot


class MemoryBuildStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, BuildRecord] = {}

    def create_if_absent(self, record: BuildRecord) -> tuple[bool, BuildRecord]:
        with self._lock:
            existing = self._records.get(record.key)
            if existing is not None:
                return False, existing
            stored = replace(record, lease_owner=None, lease_token=0, lease_expires=0.0, attempts=0, last_line="")
            self._records[record.key] = stored
            return True, stored

    def get(self, key: str) -> BuildRecord | None:
        with self._lock:
            return self._records.get(key)

    def get_many(self, keys: list[str]) -> dict[str, BuildRecord]:
        with self._lock:
            return {key: self._records[key] for key in keys if key in self._records}

    def acquire_lease(self, key: str, owner: str, now: float, ttl: float) -> Lease | None:
        with self._lock:
            record = self._records.get(key)
            if record is None:
                return None
            takeable = record.status == BuildStatus.QUEUED or (
                record.status == BuildStatus.BUILDING and record.lease_expires < now
            )
            if not takeable:
                return None
            record = replace(
                record,
                status=BuildStatus.BUILDING,
                lease_owner=owner,
                lease_token=record.lease_token + 1,
                lease_expires=now + ttl,
                attempts=record.attempts + 1,
                updated_at=now,
            )
            self._records[key] = record
            return Lease(key=key, owner=owner, token=record.lease_token, attempts=record.attempts)

    def _holds(self, lease: Lease) -> BuildRecord | None:
        record = self._records.get(lease.key)
        if (
            record is None
            or record.status != BuildStatus.BUILDING
            or record.lease_token != lease.token
            or record.lease_owner != lease.owner
        ):
            return None
        return record

    def renew_lease(self, lease: Lease, now: float, ttl: float, last_line: str | None = None) -> bool:
        with self._lock:
            record = self._holds(lease)
            if record is None:
                return False
            line = record.last_line if last_line is None else last_line[:500]
            self._records[lease.key] = replace(record, lease_expires=now + ttl, updated_at=now, last_line=line)
            return True

    def release_lease(self, lease: Lease, now: float) -> bool:
        with self._lock:
            record = self._holds(lease)
            if record is None:
                return False
            self._records[lease.key] = replace(
                record,
                status=BuildStatus.QUEUED,
                lease_owner=None,
                lease_expires=0.0,
                attempts=record.attempts - 1,
                updated_at=now,
            )
            return True

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
        if not status.finished:
            raise ValueError("finish() takes ready or failed")
        with self._lock:
            record = self._holds(lease)
            if record is None:
                return False
            self._records[lease.key] = replace(
                record,
                status=status,
                artifact=artifact,
                sha256=sha256,
                size=size,
                log=log,
                error=error,
                lease_owner=None,
                lease_expires=0.0,
                updated_at=now,
            )
            return True

    def mark_enqueued(self, key: str, now: float) -> None:
        with self._lock:
            record = self._records.get(key)
            if record is not None:
                self._records[key] = replace(record, enqueued_at=now)

    def add_waiter(self, dependency_key: str, waiter_key: str) -> BuildRecord | None:
        with self._lock:
            record = self._records.get(dependency_key)
            if record is None:
                return None
            if waiter_key not in record.waiters:
                record = replace(record, waiters=(*record.waiters, waiter_key))
                self._records[dependency_key] = record
            return record

    def requeue_failed(self, key: str, now: float) -> bool:
        with self._lock:
            record = self._records.get(key)
            if record is None or record.status != BuildStatus.FAILED:
                return False
            self._records[key] = replace(
                record,
                status=BuildStatus.QUEUED,
                error=None,
                last_line="",
                attempts=0,
                lease_owner=None,
                lease_expires=0.0,
                updated_at=now,
                enqueued_at=now,
            )
            return True

    def builds_of(self, name: str, limit: int = 100) -> list[BuildRecord]:
        with self._lock:
            found = [r for r in self._records.values() if r.name == name]
        return sorted(found, key=lambda r: r.created_at, reverse=True)[:limit]


@dataclass
class _Message:
    body: str
    visible_at: float
    receive_count: int = 0
    receipt: str | None = None


class MemoryJobQueue:
    """At-least-once delivery with visibility timeouts; a job received `max_receives` times goes to dead letters."""

    def __init__(
        self, *, max_receives: int = 5, clock: Callable[[], float] = time.time, poll_interval: float = 0.01
    ) -> None:
        self._lock = threading.Lock()
        self._messages: list[_Message] = []
        self._dead: list[_Message] = []
        self._max_receives = max_receives
        self._clock = clock
        self._poll_interval = poll_interval
        self.sent: list[str] = []  # every body ever sent, in order: what tests count ("N requests, one job")

    def send(self, body: str, delay: float = 0.0) -> None:
        with self._lock:
            self._messages.append(_Message(body, self._clock() + delay))
            self.sent.append(body)

    def _receive_once(self, visibility_timeout: float) -> Job | None:
        now = self._clock()
        with self._lock:
            for message in list(self._messages):
                if message.visible_at > now:
                    continue
                if message.receive_count >= self._max_receives:
                    self._messages.remove(message)
                    self._dead.append(message)
                    continue
                message.receive_count += 1
                message.receipt = uuid.uuid4().hex
                message.visible_at = now + visibility_timeout
                return Job(body=message.body, receipt=message.receipt, receive_count=message.receive_count)
        return None

    def receive(self, visibility_timeout: float, wait: float) -> Job | None:
        deadline = time.monotonic() + wait
        while True:
            job = self._receive_once(visibility_timeout)
            if job is not None or time.monotonic() >= deadline:
                return job
            time.sleep(self._poll_interval)

    def _find(self, job: Job) -> _Message | None:
        return next((m for m in self._messages if m.receipt == job.receipt), None)

    def extend(self, job: Job, visibility_timeout: float) -> None:
        with self._lock:
            message = self._find(job)
            if message is not None:
                message.visible_at = self._clock() + visibility_timeout

    def ack(self, job: Job) -> None:
        with self._lock:
            message = self._find(job)
            if message is not None:
                self._messages.remove(message)

    def retry_later(self, job: Job, delay: float) -> None:
        self.extend(job, delay)

    def depth(self) -> int:
        with self._lock:
            return len(self._messages)

    def dead_letter_count(self) -> int:
        with self._lock:
            return len(self._dead)

    def receive_dead_letter(self, visibility_timeout: float) -> Job | None:
        now = self._clock()
        with self._lock:
            for message in self._dead:
                if message.visible_at > now:
                    continue
                message.receive_count += 1
                message.receipt = uuid.uuid4().hex
                message.visible_at = now + visibility_timeout
                return Job(body=message.body, receipt=message.receipt, receive_count=message.receive_count)
        return None

    def delete_dead_letter(self, job: Job) -> None:
        with self._lock:
            self._dead = [m for m in self._dead if m.receipt != job.receipt]


@dataclass
class MemoryQueueRouter:
    """One MemoryJobQueue per platform, made on first use (the embedded and test farms serve what they are asked)."""

    make_queue: Callable[[], MemoryJobQueue] = MemoryJobQueue
    queues: dict[str, MemoryJobQueue] = field(default_factory=dict)

    def for_platform(self, platform: str) -> MemoryJobQueue:
        if platform not in self.queues:
            self.queues[platform] = self.make_queue()
        return self.queues[platform]

    def platforms(self) -> list[str]:
        return sorted(self.queues)


_EXPIRING_URL_BASE = "https://blobs.invalid"  # a reserved name: nothing ever answers there


class MemoryBlobStore:
    """Blobs in a dict. With `url_lifetime`, its URLs behave like presigned ones: each names the time (by `clock`)
    it expires at, and `urls_made` counts them, so a test can see when the service makes them again."""

    def __init__(
        self,
        url_base: str = f"{API_PREFIX}/blobs",
        *,
        url_lifetime: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._lock = threading.Lock()
        self._blobs: dict[str, bytes] = {}
        self._url_base = url_base.rstrip("/")
        self._url_lifetime = url_lifetime
        self._clock = clock
        self.writes = 0  # how many times a blob's bytes were stored (content already present is not rewritten)
        self.urls_made = 0

    def put_content(self, kind: BlobKind, path: Path) -> str:
        data = path.read_bytes()
        name = content_blob_name(kind, hashlib.sha256(data).hexdigest())
        with self._lock:
            if name not in self._blobs:
                self._blobs[name] = data
                self.writes += 1
        return name

    def put_named(self, name: str, data: bytes) -> None:
        with self._lock:
            self._blobs[name] = bytes(data)
            self.writes += 1

    def get_bytes(self, name: str) -> bytes | None:
        with self._lock:
            return self._blobs.get(name)

    def download_to(self, name: str, path: Path) -> bool:
        data = self.get_bytes(name)
        if data is None:
            return False
        path.write_bytes(data)
        return True

    def exists(self, name: str) -> bool:
        with self._lock:
            return name in self._blobs

    def url_for(self, name: str) -> str:
        self.urls_made += 1
        if self._url_lifetime is None:
            return f"{self._url_base}/{name}"
        # Like a presigned URL: absolute (an API path takes no query) and naming its expiry.
        return f"{_EXPIRING_URL_BASE}/{name}?expires={self._clock() + self._url_lifetime:.0f}"

    def url_lifetime(self) -> float | None:
        return self._url_lifetime


class MemoryInstanceProtection:
    """Records each change of scale-in protection the worker asks for (`changes`) and the current state."""

    def __init__(self) -> None:
        self.changes: list[bool] = []
        self.protected = False

    def protect(self, on: bool) -> None:
        self.changes.append(on)
        self.protected = on


class MemoryBacklogMetrics:
    """Every backlog published, in order (what tests read instead of CloudWatch)."""

    def __init__(self) -> None:
        self.published: list[dict[str, int]] = []

    def publish_backlog(self, backlog: Mapping[str, int]) -> None:
        self.published.append(dict(backlog))


class MemoryNotifier:
    def __init__(self) -> None:
        self.finished: list[BuildRecord] = []

    def build_finished(self, record: BuildRecord) -> None:
        self.finished.append(record)


def memory_ports(
    *, clock: Callable[[], float] = time.time, max_receives: int = 5, url_lifetime: float | None = None
) -> FarmPorts:
    """A whole farm's adapters in memory (the composition root of the fast use-case tests); `url_lifetime`: blob
    URLs that expire, as presigned ones do."""
    return FarmPorts(
        catalog=MemoryCatalogStore(),
        builds=MemoryBuildStore(),
        queues=MemoryQueueRouter(lambda: MemoryJobQueue(max_receives=max_receives, clock=clock)),
        blobs=MemoryBlobStore(url_lifetime=url_lifetime, clock=clock),
        notifier=MemoryNotifier(),
        tokens=MemoryTokenStore(),
    )
