"""Embedded adapters: SQLite through SQLAlchemy for catalog, builds and queue, a directory for blobs.

Several processes (the API and the workers) share one SQLite file, so the database runs in WAL mode with a busy
timeout, and every state change is a single conditional UPDATE or INSERT: the same shape as a DynamoDB
conditional write, and atomic in SQLite without holding a transaction open across calls.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Engine,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from pkgc.core.errors import FarmUnavailable
from pkgc.core.protocol import BuildStatus
from pkgc.farm.ports import BuildRecord, Job, Lease
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

# The catalog snapshot (the encoded list of every package) in one row, id 1: written when recipes are published, read
# by search and /v1/catalog instead of a scan of the catalog.
catalog_snapshot_table = Table(
    "catalog_snapshot",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("data", LargeBinary, nullable=False),
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
    with engine.begin() as conn:  # forward-only migration for databases made before the column existed
        columns = {row[1] for row in conn.exec_driver_sql("PRAGMA table_info(builds)")}
        if "last_line" not in columns:
            conn.exec_driver_sql("ALTER TABLE builds ADD COLUMN last_line TEXT NOT NULL DEFAULT ''")
    return engine


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
            conn.execute(insert(catalog_snapshot_table).prefix_with("OR REPLACE").values(id=1, data=bytes(data)))

    def read_snapshot(self) -> bytes | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(catalog_snapshot_table.c.data).where(catalog_snapshot_table.c.id == 1)).first()
        return None if row is None else bytes(row[0])


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
    """At-least-once delivery with visibility timeouts, as SQS does; too many receives move a job aside."""

    def __init__(
        self, engine: Engine, *, max_receives: int = 5, clock: Any = time.time, poll_interval: float = 0.2
    ) -> None:
        self._engine = engine
        self._max_receives = max_receives
        self._clock = clock
        self._poll_interval = poll_interval

    def send(self, body: str, delay: float = 0.0) -> None:
        with self._engine.begin() as conn:
            conn.execute(insert(jobs_table).values(body=body, visible_at=self._clock() + delay, receive_count=0))
            counted = sqlite_insert(job_sends_table).values(body=body, count=1)
            conn.execute(
                counted.on_conflict_do_update(index_elements=["body"], set_={"count": job_sends_table.c.count + 1})
            )

    def sent_count(self, body: str) -> int:
        """How many jobs with this body were ever sent (embedded only: for the tests and for diagnosing)."""
        with self._engine.connect() as conn:
            found = conn.execute(select(job_sends_table.c.count).where(job_sends_table.c.body == body)).scalar()
        return int(found or 0)

    def _receive_once(self, visibility_timeout: float) -> Job | None:
        table = jobs_table
        now = self._clock()
        receipt = uuid.uuid4().hex
        with self._engine.begin() as conn:
            # Jobs received too often go to the dead-letter state instead of being delivered again.
            conn.execute(
                update(table)
                .where(table.c.dead == 0, table.c.visible_at <= now, table.c.receive_count >= self._max_receives)
                .values(dead=1)
            )
            next_id = (
                select(table.c.id)
                .where(table.c.dead == 0, table.c.visible_at <= now)
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
        deadline = self._clock() + wait
        while True:
            job = self._receive_once(visibility_timeout)
            if job is not None or self._clock() >= deadline:
                return job
            time.sleep(self._poll_interval)

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
            return int(conn.execute(select(func.count()).where(jobs_table.c.dead == 0)).scalar_one())

    def dead_letter_count(self) -> int:
        with self._engine.connect() as conn:
            return int(conn.execute(select(func.count()).where(jobs_table.c.dead == 1)).scalar_one())


class DirectoryBlobStore:
    """Blobs as files; writes go to a temporary name first so a reader never sees half a blob."""

    def __init__(self, root: Path) -> None:
        self._root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, name: str) -> Path:
        path = (self._root / name).resolve()
        if self._root.resolve() not in path.parents:
            raise ValueError(f"blob name {name!r} escapes the store")
        return path

    def _atomic_write(self, name: str, fill: Any) -> None:
        target = self._path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        try:
            fill(temporary)
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)

    def put_file(self, name: str, path: Path) -> None:
        self._atomic_write(name, lambda tmp: shutil.copyfile(path, tmp))

    def put_bytes(self, name: str, data: bytes) -> None:
        self._atomic_write(name, lambda tmp: tmp.write_bytes(data))

    def get_bytes(self, name: str) -> bytes | None:
        path = self._path(name)
        return path.read_bytes() if path.is_file() else None

    def download_to(self, name: str, path: Path) -> bool:
        source = self._path(name)
        if not source.is_file():
            return False
        shutil.copyfile(source, path)
        return True

    def local_path(self, name: str) -> Path | None:
        path = self._path(name)
        return path if path.is_file() else None

    def public_url(self, name: str) -> str | None:
        return None


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
