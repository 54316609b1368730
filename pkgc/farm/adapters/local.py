"""Embedded adapters: SQLite through SQLAlchemy for catalog, builds and queue, a directory for blobs.

Several processes (the API and the workers) share one SQLite file, so the database runs in WAL mode with a busy
timeout, and every state change is a single conditional UPDATE or INSERT: the same shape as a DynamoDB
conditional write, and atomic in SQLite without holding a transaction open across calls.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from pkgc.core.errors import FarmUnavailable
from pkgc.core.platform import detect_platform
from pkgc.core.protocol import API_PREFIX, BuildStatus
from pkgc.farm.blobnames import is_content_blob, valid_blob_name
from pkgc.farm.ports import BlobKind, BuildRecord, Job, Lease, content_blob_name
from pkgc.sqlite import open_sqlite

metadata = MetaData()

catalog_table = Table(
    "catalog",
    metadata,
    Column("name", String, primary_key=True),
    Column("summary", Text, nullable=False),
    Column("latest", String, nullable=False),
    Column("recipe", Text, nullable=False),
)

builds_table = Table(
    "builds",
    metadata,
    Column("key", String, primary_key=True),
    Column("name", String, nullable=False, index=True),
    Column("version", String, nullable=False),
    Column("options", Text, nullable=False),
    Column("spec", Text, nullable=False),
    Column("status", String, nullable=False),
    Column("dependencies", Text, nullable=False),
    Column("runtime_dependencies", Text, nullable=False),
    Column("artifact", String),
    Column("sha256", String),
    Column("size", Integer),
    Column("log", String),
    Column("error", Text),
    Column("lease_owner", String),
    Column("lease_token", Integer, nullable=False, default=0),
    Column("lease_expires", Float, nullable=False, default=0.0),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_line", Text, nullable=False, default=""),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("enqueued_at", Float, nullable=False),
    Column("platform", String, nullable=False, default=""),
    Column("waiters", Text, nullable=False, default="[]"),
)

jobs_table = Table(
    "jobs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("body", Text, nullable=False),
    Column("visible_at", Float, nullable=False, index=True),
    Column("receive_count", Integer, nullable=False, default=0),
    Column("receipt", String),
    Column("dead", Integer, nullable=False, default=0),
    # The build platform whose workers take the job: one logical queue per platform, as SQS has one per platform.
    Column("queue", String, nullable=False, default=""),
    Index("jobs_by_queue", "queue", "dead", "visible_at"),
)

# Named mutable documents of the farm (the catalog snapshot): one row each.
documents_table = Table(
    "documents",
    metadata,
    Column("name", String, primary_key=True),
    Column("data", Text, nullable=False),
)

# How many times a job with each body (a build key) was sent: the queue itself forgets a job once it is acknowledged,
# and "N identical requests make one build" is a promise about jobs sent, not only about builds finished.
job_sends_table = Table(
    "job_sends",
    metadata,
    Column("body", Text, primary_key=True),
    Column("count", Integer, nullable=False),
)


def open_farm_database(path: Path) -> Engine:
    """One engine per process; WAL lets the API read while a worker writes."""
    engine = open_sqlite(path, metadata)
    _migrate(engine)
    return engine


def _migrate(engine: Engine) -> None:
    """Forward-only migration of a farm database made by an older pkgc: add the columns it lacks.

    Builds and jobs made before there was one queue per platform were all for this machine's platform (the embedded
    farm built only for itself), so they get that platform and its queue. Each step runs under the write lock
    (BEGIN IMMEDIATE), so a supervisor and its workers opening the same old file at once migrate it once.
    """
    with engine.connect() as conn:
        if not _missing_columns(conn):
            return
    legacy = str(detect_platform())
    with engine.connect() as conn:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            missing = _missing_columns(conn)
            if ("builds", "last_line") in missing:
                conn.exec_driver_sql("ALTER TABLE builds ADD COLUMN last_line TEXT NOT NULL DEFAULT ''")
            if ("builds", "platform") in missing:
                conn.exec_driver_sql("ALTER TABLE builds ADD COLUMN platform VARCHAR NOT NULL DEFAULT ''")
                conn.exec_driver_sql("UPDATE builds SET platform = ?", (legacy,))
            if ("builds", "waiters") in missing:
                conn.exec_driver_sql("ALTER TABLE builds ADD COLUMN waiters TEXT NOT NULL DEFAULT '[]'")
            if ("jobs", "queue") in missing:
                conn.exec_driver_sql("ALTER TABLE jobs ADD COLUMN queue VARCHAR NOT NULL DEFAULT ''")
                conn.exec_driver_sql("UPDATE jobs SET queue = ?", (legacy,))
                conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS jobs_by_queue ON jobs (queue, dead, visible_at)")
            conn.exec_driver_sql("COMMIT")
        except BaseException:
            conn.exec_driver_sql("ROLLBACK")
            raise


_MIGRATED_COLUMNS = (
    ("builds", "last_line"),
    ("builds", "platform"),
    ("builds", "waiters"),
    ("jobs", "queue"),
)


def _missing_columns(conn: Any) -> set[tuple[str, str]]:
    present = {
        (table, row[1]) for table in ("builds", "jobs") for row in conn.exec_driver_sql(f"PRAGMA table_info({table})")
    }
    return {column for column in _MIGRATED_COLUMNS if column not in present}


class FarmDatabaseDamaged(FarmUnavailable):
    """The farm's SQLite file fails its integrity check; the farm refuses to start on it."""


def check_farm_database(path: Path) -> None:
    """Run SQLite's quick_check on the farm database before anything opens it for real.

    A damaged file otherwise shows up later as odd failures in the middle of builds (or an exit at start with no
    reason); checking first lets the farm refuse with one line that names the file and the way out.
    """
    if not path.exists():
        return
    problem: str | None = None
    try:
        connection = sqlite3.connect(str(path), timeout=30)
        try:
            rows = connection.execute("PRAGMA quick_check").fetchall()
        finally:
            connection.close()
    except sqlite3.OperationalError as exc:  # locked, unreadable: not proof of damage, so no reset advice
        raise FarmUnavailable(f"cannot open the farm database {path}: {exc}") from None
    except sqlite3.DatabaseError as exc:  # "file is not a database", "database disk image is malformed"
        problem = str(exc)
    else:
        if [tuple(row) for row in rows] != [("ok",)]:
            problem = " ".join(str(rows[0][0]).split()) if rows else "quick_check gave no answer"
    if problem is not None:
        raise FarmDatabaseDamaged(
            f"the farm database {path} is damaged ({problem[:200]}): "
            "run 'pkgc farm reset' to start it afresh (built artifacts are kept)"
        )


def checkpoint_farm_database(engine: Engine, mode: str = "TRUNCATE") -> None:
    """Copy the WAL into the database file and close every connection: what a clean stop leaves is one file.

    Without it a stopped farm keeps its recent writes only in farm.db-wal, and losing that file loses them.
    The supervisor uses TRUNCATE once the workers are gone; a worker uses PASSIVE, which never waits for others.
    """
    if mode not in ("PASSIVE", "FULL", "RESTART", "TRUNCATE"):
        raise ValueError(f"unknown checkpoint mode {mode!r}")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f"PRAGMA wal_checkpoint({mode})")
    finally:
        engine.dispose()


class SqliteCatalogStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def put_recipe(self, name: str, text: str, summary: str, latest: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                insert(catalog_table)
                .prefix_with("OR REPLACE")
                .values(name=name, recipe=text, summary=summary, latest=latest)
            )

    def get_recipe_text(self, name: str) -> str | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(catalog_table.c.recipe).where(catalog_table.c.name == name)).first()
        return None if row is None else str(row[0])

    def list_packages(self) -> list[tuple[str, str, str]]:
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(catalog_table.c.name, catalog_table.c.summary, catalog_table.c.latest).order_by(
                    catalog_table.c.name
                )
            ).all()
        return [(str(r[0]), str(r[1]), str(r[2])) for r in rows]

    def write_snapshot(self, data: bytes) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                insert(documents_table)
                .prefix_with("OR REPLACE")
                .values(name=_SNAPSHOT_DOCUMENT, data=data.decode("utf-8"))
            )

    def read_snapshot(self) -> bytes | None:
        with self._engine.connect() as conn:
            found = conn.execute(
                select(documents_table.c.data).where(documents_table.c.name == _SNAPSHOT_DOCUMENT)
            ).scalar()
        return None if found is None else str(found).encode("utf-8")


_SNAPSHOT_DOCUMENT = "catalog-snapshot"


def _record_from_row(row: Any) -> BuildRecord:
    m = row._mapping
    return BuildRecord(
        key=m["key"],
        name=m["name"],
        version=m["version"],
        options=json.loads(m["options"]),
        spec=json.loads(m["spec"]),
        status=BuildStatus(m["status"]),
        dependencies=tuple(json.loads(m["dependencies"])),
        runtime_dependencies=tuple(json.loads(m["runtime_dependencies"])),
        artifact=m["artifact"],
        sha256=m["sha256"],
        size=m["size"],
        log=m["log"],
        error=m["error"],
        lease_owner=m["lease_owner"],
        lease_token=m["lease_token"],
        lease_expires=m["lease_expires"],
        attempts=m["attempts"],
        last_line=m["last_line"] or "",
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        enqueued_at=m["enqueued_at"],
        platform=m["platform"] or "",
        waiters=tuple(json.loads(m["waiters"] or "[]")),
    )


def _new_row(record: BuildRecord) -> dict[str, Any]:
    """The columns of a build that has just been created (or adopted): no lease held, no attempt made yet."""
    return {
        "key": record.key,
        "name": record.name,
        "version": record.version,
        "options": json.dumps(record.options, sort_keys=True),
        "spec": json.dumps(record.spec, sort_keys=True),
        "status": record.status.value,
        "dependencies": json.dumps(list(record.dependencies)),
        "runtime_dependencies": json.dumps(list(record.runtime_dependencies)),
        "lease_token": 0,
        "lease_expires": 0.0,
        "attempts": 0,
        "last_line": "",
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "enqueued_at": record.enqueued_at,
        "platform": record.platform,
        "waiters": json.dumps(list(record.waiters)),
    }


class SqliteBuildStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def create_if_absent(self, record: BuildRecord) -> tuple[bool, BuildRecord]:
        values = _new_row(record)
        with self._engine.begin() as conn:
            created = bool(conn.execute(insert(builds_table).prefix_with("OR IGNORE").values(**values)).rowcount)
            row = conn.execute(select(builds_table).where(builds_table.c.key == record.key)).one()
        return created, _record_from_row(row)

    def get(self, key: str) -> BuildRecord | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(builds_table).where(builds_table.c.key == key)).first()
        return None if row is None else _record_from_row(row)

    def get_many(self, keys: list[str]) -> dict[str, BuildRecord]:
        if not keys:
            return {}
        with self._engine.connect() as conn:
            rows = conn.execute(select(builds_table).where(builds_table.c.key.in_(keys))).all()
        return {row._mapping["key"]: _record_from_row(row) for row in rows}

    def acquire_lease(self, key: str, owner: str, now: float, ttl: float) -> Lease | None:
        table = builds_table
        with self._engine.begin() as conn:
            changed = conn.execute(
                update(table)
                .where(table.c.key == key)
                .where(
                    (table.c.status == BuildStatus.QUEUED.value)
                    | ((table.c.status == BuildStatus.BUILDING.value) & (table.c.lease_expires < now))
                )
                .values(
                    status=BuildStatus.BUILDING.value,
                    lease_owner=owner,
                    lease_token=table.c.lease_token + 1,
                    lease_expires=now + ttl,
                    attempts=table.c.attempts + 1,
                    updated_at=now,
                )
            ).rowcount
            if not changed:
                return None
            row = conn.execute(select(table.c.lease_token, table.c.attempts).where(table.c.key == key)).one()
        return Lease(key=key, owner=owner, token=int(row[0]), attempts=int(row[1]))

    def _update_leased(self, lease: Lease, **values: Any) -> bool:
        table = builds_table
        with self._engine.begin() as conn:
            changed = conn.execute(
                update(table)
                .where(table.c.key == lease.key)
                .where(table.c.lease_token == lease.token)
                .where(table.c.lease_owner == lease.owner)
                .where(table.c.status == BuildStatus.BUILDING.value)
                .values(**values)
            ).rowcount
        return bool(changed)

    def renew_lease(self, lease: Lease, now: float, ttl: float, last_line: str | None = None) -> bool:
        values: dict[str, Any] = {"lease_expires": now + ttl, "updated_at": now}
        if last_line is not None:
            values["last_line"] = last_line[:500]
        return self._update_leased(lease, **values)

    def release_lease(self, lease: Lease, now: float) -> bool:
        return self._update_leased(
            lease,
            status=BuildStatus.QUEUED.value,
            lease_owner=None,
            lease_expires=0.0,
            attempts=builds_table.c.attempts - 1,
            updated_at=now,
        )

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
        return self._update_leased(
            lease,
            status=status.value,
            artifact=artifact,
            sha256=sha256,
            size=size,
            log=log,
            error=error,
            lease_owner=None,
            lease_expires=0.0,
            updated_at=now,
        )

    def builds_of(self, name: str, limit: int = 100) -> list[BuildRecord]:
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(builds_table)
                .where(builds_table.c.name == name)
                .order_by(builds_table.c.created_at.desc())
                .limit(limit)
            ).all()
        return [_record_from_row(row) for row in rows]

    def adopt_ready(self, record: BuildRecord) -> bool:
        """Insert a ready build with its artifact, unless the key exists: `farm reset` re-adopting an artifact."""
        if record.status != BuildStatus.READY or not record.artifact or not record.sha256:
            raise ValueError("adopt_ready() takes a ready build with its artifact and sha256")
        values = {
            **_new_row(record),
            "artifact": record.artifact,
            "sha256": record.sha256,
            "size": record.size,
            "log": record.log,
        }
        with self._engine.begin() as conn:
            return bool(conn.execute(insert(builds_table).prefix_with("OR IGNORE").values(**values)).rowcount)

    def mark_enqueued(self, key: str, now: float) -> None:
        with self._engine.begin() as conn:
            conn.execute(update(builds_table).where(builds_table.c.key == key).values(enqueued_at=now))

    def add_waiter(self, dependency_key: str, waiter_key: str) -> BuildRecord | None:
        table = builds_table
        # One UPDATE: SQLite runs it under the write lock, so concurrent adds (and a finish) never lose a waiter.
        with self._engine.begin() as conn:
            conn.execute(
                text(
                    "UPDATE builds SET waiters = json_insert(waiters, '$[#]', :waiter) WHERE key = :key "
                    "AND NOT EXISTS (SELECT 1 FROM json_each(builds.waiters) WHERE json_each.value = :waiter)"
                ),
                {"key": dependency_key, "waiter": waiter_key},
            )
            row = conn.execute(select(table).where(table.c.key == dependency_key)).first()
        return None if row is None else _record_from_row(row)

    def requeue_failed(self, key: str, now: float) -> bool:
        table = builds_table
        with self._engine.begin() as conn:
            changed = conn.execute(
                update(table)
                .where(table.c.key == key)
                .where(table.c.status == BuildStatus.FAILED.value)
                .values(
                    status=BuildStatus.QUEUED.value,
                    error=None,
                    last_line="",
                    attempts=0,  # an explicit retry starts afresh: earlier tries must not count toward giving up
                    lease_owner=None,
                    lease_expires=0.0,
                    updated_at=now,
                    enqueued_at=now,
                )
            ).rowcount
        return bool(changed)


class SqliteJobQueue:
    """At-least-once delivery with visibility timeouts, as SQS does; too many receives move a job aside.

    One instance is one platform's queue: the rows of the shared jobs table whose `queue` column is its name.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        queue: str = "",
        max_receives: int = 5,
        clock: Callable[[], float] = time.time,
        poll_interval: float = 0.2,
    ) -> None:
        self._engine = engine
        self.name = queue
        self._max_receives = max_receives
        self._clock = clock
        self._poll_interval = poll_interval

    def send(self, body: str, delay: float = 0.0) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                insert(jobs_table).values(
                    body=body, visible_at=self._clock() + delay, receive_count=0, queue=self.name
                )
            )
            counted = sqlite_insert(job_sends_table).values(body=body, count=1)
            conn.execute(
                counted.on_conflict_do_update(index_elements=["body"], set_={"count": job_sends_table.c.count + 1})
            )

    def sent_count(self, body: str) -> int:
        """How many jobs with this body were ever sent, on any queue (embedded only: for tests and diagnosing)."""
        return sent_count(self._engine, body)

    def _receive_once(self, visibility_timeout: float) -> Job | None:
        table = jobs_table
        now = self._clock()
        receipt = uuid.uuid4().hex
        mine = table.c.queue == self.name
        with self._engine.begin() as conn:
            # Jobs received too often go to the dead-letter state instead of being delivered again.
            conn.execute(
                update(table)
                .where(mine, table.c.dead == 0, table.c.visible_at <= now, table.c.receive_count >= self._max_receives)
                .values(dead=1)
            )
            next_id = (
                select(table.c.id)
                .where(mine, table.c.dead == 0, table.c.visible_at <= now)
                .order_by(table.c.visible_at, table.c.id)
                .limit(1)
                .scalar_subquery()
            )
            changed = conn.execute(
                update(table)
                .where(table.c.id == next_id)
                .values(
                    receipt=receipt,
                    visible_at=now + visibility_timeout,
                    receive_count=table.c.receive_count + 1,
                )
            ).rowcount
            if not changed:
                return None
            row = conn.execute(select(table.c.body, table.c.receive_count).where(table.c.receipt == receipt)).one()
        return Job(body=str(row[0]), receipt=receipt, receive_count=int(row[1]))

    def receive(self, visibility_timeout: float, wait: float) -> Job | None:
        """The next visible job, waiting up to `wait` seconds for one (a long poll, as SQS's).

        While nothing is there, the wait does not repeat the receive's queries every poll interval (an idle farm's
        workers spent about 1% of a core doing that): it sleeps until another connection commits to the database
        (a send, an expired lease given back) or the next delayed or leased job of this queue comes due, checking
        for a commit with one `PRAGMA data_version` per poll interval.
        """
        deadline = self._clock() + wait
        with self._commits() as committed:  # the baseline is taken before the first look: no send is missed
            while True:
                job = self._receive_once(visibility_timeout)
                if job is not None or self._clock() >= deadline:
                    return job
                due = min(deadline, self._next_visible())
                while (left := due - self._clock()) > 0:
                    time.sleep(min(self._poll_interval, left))
                    if committed():
                        break

    @contextlib.contextmanager
    def _commits(self) -> Iterator[Callable[[], bool]]:
        """A check of whether another connection committed to the database since the last check (or since entry).

        A database that is not a file (tests' in-memory engines) has no other connections to watch: every check
        answers yes, which is the plain poll it always was.
        """
        path = self._engine.url.database
        if not path or path == ":memory:" or path.startswith("file:"):
            yield lambda: True
            return
        with contextlib.closing(sqlite3.connect(path, timeout=30)) as watch:
            seen = [watch.execute("PRAGMA data_version").fetchone()[0]]

            def committed() -> bool:
                version = watch.execute("PRAGMA data_version").fetchone()[0]
                changed = version != seen[0]
                seen[0] = version
                return bool(changed)

            yield committed

    def _next_visible(self) -> float:
        """When this queue's next hidden job (delayed, or leased) becomes visible; infinity when it has none."""
        table = jobs_table
        with self._engine.connect() as conn:
            found = conn.execute(
                select(func.min(table.c.visible_at)).where(table.c.queue == self.name, table.c.dead == 0)
            ).scalar_one()
        return math.inf if found is None else float(found)

    def extend(self, job: Job, visibility_timeout: float) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                update(jobs_table)
                .where(jobs_table.c.receipt == job.receipt)
                .values(visible_at=self._clock() + visibility_timeout)
            )

    def ack(self, job: Job) -> None:
        with self._engine.begin() as conn:
            conn.execute(jobs_table.delete().where(jobs_table.c.receipt == job.receipt))

    def retry_later(self, job: Job, delay: float) -> None:
        self.extend(job, delay)

    def depth(self) -> int:
        with self._engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).where(jobs_table.c.dead == 0, jobs_table.c.queue == self.name)
                ).scalar_one()
            )

    def dead_letter_count(self) -> int:
        with self._engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).where(jobs_table.c.dead == 1, jobs_table.c.queue == self.name)
                ).scalar_one()
            )

    def receive_dead_letter(self, visibility_timeout: float) -> Job | None:
        """A dead job (the `dead` flag), leased to this reader by a fresh receipt as a live one is."""
        table = jobs_table
        now = self._clock()
        receipt = uuid.uuid4().hex
        with self._engine.begin() as conn:
            next_id = (
                select(table.c.id)
                .where(table.c.queue == self.name, table.c.dead == 1, table.c.visible_at <= now)
                .order_by(table.c.visible_at, table.c.id)
                .limit(1)
                .scalar_subquery()
            )
            changed = conn.execute(
                update(table)
                .where(table.c.id == next_id)
                .values(receipt=receipt, visible_at=now + visibility_timeout, receive_count=table.c.receive_count + 1)
            ).rowcount
            if not changed:
                return None
            row = conn.execute(select(table.c.body, table.c.receive_count).where(table.c.receipt == receipt)).one()
        return Job(body=str(row[0]), receipt=receipt, receive_count=int(row[1]))

    def delete_dead_letter(self, job: Job) -> None:
        with self._engine.begin() as conn:
            conn.execute(jobs_table.delete().where(jobs_table.c.receipt == job.receipt, jobs_table.c.dead == 1))


def sent_count(engine: Engine, body: str) -> int:
    """How many jobs with this body (a build key) were ever sent: "N requests, one job" is checked with it."""
    with engine.connect() as conn:
        found = conn.execute(select(job_sends_table.c.count).where(job_sends_table.c.body == body)).scalar()
    return int(found or 0)


class SqliteQueueRouter:
    """One SqliteJobQueue per build platform, all in the farm database's jobs table (a `queue` column).

    `platforms` are the ones this farm builds for (the embedded farm: its own); a job for any other platform can
    still be sent, and waits until a worker of that platform asks for it.
    """

    def __init__(
        self,
        engine: Engine,
        platforms: Sequence[str],
        *,
        max_receives: int = 5,
        clock: Callable[[], float] = time.time,
        poll_interval: float = 0.2,
    ) -> None:
        self._engine = engine
        self._platforms = list(dict.fromkeys(platforms))
        self._options: dict[str, Any] = {"max_receives": max_receives, "clock": clock, "poll_interval": poll_interval}
        self._queues: dict[str, SqliteJobQueue] = {}

    def for_platform(self, platform: str) -> SqliteJobQueue:
        queue = self._queues.get(platform)
        if queue is None:
            queue = self._queues[platform] = SqliteJobQueue(self._engine, queue=platform, **self._options)
        return queue

    def platforms(self) -> list[str]:
        return sorted(self._platforms)

    def sent_count(self, body: str) -> int:
        return sent_count(self._engine, body)


class DirectoryBlobStore:
    """Blobs as files; a blob is written under a temporary name first so that a reader never sees half of one.

    Content blobs (artifacts, logs) are named by their sha256 and linked into place only if absent, so once a
    name exists its bytes never change: the API serves them as immutable, and a stale worker's late upload at
    most adds an unreferenced file.
    """

    def __init__(self, root: Path, *, url_base: str = f"{API_PREFIX}/blobs") -> None:
        self._root = root
        self._url_base = url_base.rstrip("/")
        root.mkdir(parents=True, exist_ok=True)
        self._resolved_root = root.resolve()

    def _path(self, name: str) -> Path:
        if not valid_blob_name(name):
            raise ValueError(f"invalid blob name {name[:100]!r}")
        path = (self._root / name).resolve()
        if self._resolved_root not in path.parents:
            raise ValueError(f"blob name {name[:100]!r} escapes the store")
        return path

    def _temporary(self, target: Path) -> Path:
        target.parent.mkdir(parents=True, exist_ok=True)
        return target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")

    def put_content(self, kind: BlobKind, path: Path) -> str:
        # Copy and hash in one pass, so the name is the digest of the bytes stored, even if `path` changes meanwhile.
        staging = self._root / ".incoming"
        staging.mkdir(exist_ok=True)
        temporary = staging / f"{uuid.uuid4().hex}.tmp"
        digest = hashlib.sha256()
        try:
            with path.open("rb") as source, temporary.open("wb") as out:
                while chunk := source.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            name = content_blob_name(kind, digest.hexdigest())
            target = self._path(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                os.link(temporary, target)  # never replaces: a name that exists keeps its bytes
        finally:
            temporary.unlink(missing_ok=True)
        return name

    def put_named(self, name: str, data: bytes) -> None:
        if is_content_blob(name) or name.startswith(("artifacts/", "logs/")):
            raise ValueError(f"{name!r} is a content blob's place: store artifacts and logs with put_content")
        target = self._path(name)
        temporary = self._temporary(target)
        try:
            temporary.write_bytes(data)
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)

    def get_bytes(self, name: str) -> bytes | None:
        path = self._path(name)
        return path.read_bytes() if path.is_file() else None

    def download_to(self, name: str, path: Path) -> bool:
        source = self._path(name)
        if not source.is_file():
            return False
        with source.open("rb") as reader, path.open("wb") as out:
            while chunk := reader.read(1 << 20):
                out.write(chunk)
        return True

    def exists(self, name: str) -> bool:
        return self._path(name).is_file()

    def url_for(self, name: str) -> str:
        if not valid_blob_name(name):
            raise ValueError(f"invalid blob name {name[:100]!r}")
        return f"{self._url_base}/{name}"

    def url_lifetime(self) -> float | None:
        return None  # an API path: valid as long as the blob is there

    def path_of(self, name: str) -> Path | None:
        """The file of a stored blob, for the embedded API's blob route; None for a name that is invalid or absent."""
        try:
            path = self._path(name)
        except ValueError:
            return None
        return path if path.is_file() else None


class JsonLinesNotifier:
    """Appends one JSON line per finished build: the embedded stand-in for an SNS topic."""

    def __init__(self, path: Path) -> None:
        self._path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def build_finished(self, record: BuildRecord) -> None:
        event_line = json.dumps(
            {"key": record.key, "name": record.name, "version": record.version, "status": record.status.value}
        )
        with self._path.open("a", encoding="utf-8") as handle:
            handle.write(event_line + "\n")


class NoInstanceProtection:
    """A machine no autoscaling takes away (the embedded farm, a worker outside an Auto Scaling group)."""

    def protect(self, on: bool) -> None:
        return None
