"""The installed-packages database of one prefix, kept inside it at `.pkgc/installed.sqlite`.

Keeping the database in the prefix makes each prefix self-describing: two prefixes never share state, and moving
or deleting a prefix takes its records with it.

SQLAlchemy owns the schema (schema.py): a new database gets the DDL it compiles from schema.py (SCHEMA_DDL, checked
by a test), and it migrates a database whose `PRAGMA user_version` is not SCHEMA_VERSION. Reads and writes use the standard library's sqlite3 over the same tables, so that
the commands users wait on (install, list, files, owner, verify) do not pay for importing SQLAlchemy (about a
quarter of a second); SQLite's WAL mode lets readers read while a writer commits.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pkgc.core.record import record

STATE_DIR = ".pkgc"
# The schema's version, kept in the database's `PRAGMA user_version`. SQLAlchemy (schema.py) creates and migrates
# the schema and sets it; every other access only reads it. Raise it with each change to schema.py, and teach
# `schema.create_or_migrate` the step from the version before.
SCHEMA_VERSION = 1
_CHUNK = 500  # host parameters per statement, well under SQLite's limit
# The same pragmas as `pkgc.sqlite.open_sqlite` sets on SQLAlchemy's connections.
# What SQLAlchemy's SQLite dialect compiles from schema.py's metadata (CreateTable and CreateIndex, in
# metadata.sorted_tables order; tests/unit/test_installed_store.py checks they are the same), so that the first install
# into a prefix creates its database without importing SQLAlchemy.
SCHEMA_DDL = (
    "CREATE TABLE history (\n\tid INTEGER NOT NULL, \n\ttxid VARCHAR NOT NULL, \n\toperation VARCHAR NOT NULL, "
    '\n\tfinished_at FLOAT NOT NULL, \n\t"before" TEXT NOT NULL, \n\t"after" TEXT NOT NULL, \n\tPRIMARY KEY (id), '
    "\n\tUNIQUE (txid)\n)",
    'CREATE TABLE packages (\n\tname VARCHAR NOT NULL, \n\tversion VARCHAR NOT NULL, \n\t"key" VARCHAR NOT NULL, '
    "\n\toptions TEXT NOT NULL, \n\trequested INTEGER NOT NULL, \n\tdependencies TEXT NOT NULL, "
    "\n\tinstalled_at FLOAT NOT NULL, \n\tPRIMARY KEY (name)\n)",
    "CREATE TABLE files (\n\tpath VARCHAR NOT NULL, \n\tpackage VARCHAR NOT NULL, \n\ttype VARCHAR NOT NULL, "
    "\n\tsha256 VARCHAR NOT NULL, \n\tsize INTEGER NOT NULL, \n\tmode INTEGER NOT NULL, \n\ttarget VARCHAR NOT NULL, "
    "\n\tPRIMARY KEY (path), \n\tFOREIGN KEY(package) REFERENCES packages (name) ON DELETE CASCADE\n)",
    "CREATE INDEX ix_files_package ON files (package)",
)
WRITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA busy_timeout=30000",
    "PRAGMA foreign_keys=ON",
)


@record
class InstalledFile:
    path: str
    type: str
    sha256: str = ""
    size: int = 0
    mode: int = 0
    target: str = ""


@record
class InstalledPackage:
    name: str
    version: str
    key: str
    options: dict[str, str]
    requested: bool
    dependencies: list[str]
    installed_at: float

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "key": self.key,
            "options": self.options,
            "requested": self.requested,
            "dependencies": self.dependencies,
            "installed_at": self.installed_at,
        }


def database_path(prefix: Path) -> Path:
    return prefix / STATE_DIR / "installed.sqlite"


class InstalledStore:
    def __init__(self, prefix: Path) -> None:
        self.prefix = prefix
        self._path = database_path(prefix)

    def _read(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        connection = sqlite3.connect(f"file:{self._path}?mode=ro", uri=True, timeout=30)
        try:
            connection.row_factory = sqlite3.Row
            return connection.execute(sql, args).fetchall()
        finally:
            connection.close()

    def exists(self) -> bool:
        return self._path.is_file()

    def packages(self) -> list[InstalledPackage]:
        if not self.exists():
            return []
        return [_package(row) for row in self._read("SELECT * FROM packages ORDER BY name")]

    def get(self, name: str) -> InstalledPackage | None:
        if not self.exists():
            return None
        rows = self._read("SELECT * FROM packages WHERE name = ?", name)
        return _package(rows[0]) if rows else None

    def files(self, name: str) -> list[InstalledFile]:
        if not self.exists():
            return []
        rows = self._read("SELECT * FROM files WHERE package = ? ORDER BY path", name)
        return [InstalledFile(r["path"], r["type"], r["sha256"], r["size"], r["mode"], r["target"]) for r in rows]

    def owners(self, paths: list[str]) -> dict[str, str]:
        """Which installed package owns each of `paths` (directories are shared and owned by none)."""
        if not self.exists() or not paths:
            return {}
        found: dict[str, str] = {}
        for start in range(0, len(paths), _CHUNK):
            chunk = paths[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._read(f"SELECT path, package FROM files WHERE type != 'dir' AND path IN ({marks})", *chunk)
            found.update({str(r["path"]): str(r["package"]) for r in rows})
        return found

    def _writer(self) -> sqlite3.Connection:
        """A connection for one write transaction, on a database whose schema is current.

        The standard library's sqlite3 does the writes, so that an install does not pay for importing SQLAlchemy.
        A new database gets SCHEMA_DDL (SQLAlchemy's own DDL for schema.py); one of another `PRAGMA user_version`
        goes to SQLAlchemy (schema.create_or_migrate). The pragmas are those of `pkgc.sqlite.open_sqlite`: WAL (readers never wait for a
        writer), NORMAL synchronous, a 30 s busy timeout, foreign keys on. Autocommit mode: each write method
        opens its transaction with `BEGIN IMMEDIATE` (the write lock at once, so two writers never deadlock on an
        upgrade from a read lock) and ends it with one COMMIT.
        """
        self._path.parent.mkdir(parents=True, exist_ok=True)
        connection = self._open_writer()
        try:
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version == SCHEMA_VERSION or (version == 0 and _create(connection)):
                return connection
        except BaseException:
            connection.close()
            raise
        connection.close()
        from pkgc.localdb.schema import create_or_migrate

        create_or_migrate(self._path)
        return self._open_writer()

    def _open_writer(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self._path, timeout=30, isolation_level=None)
        try:
            connection.row_factory = sqlite3.Row
            for pragma in WRITE_PRAGMAS:
                connection.execute(pragma)
        except BaseException:
            connection.close()
            raise
        return connection

    @contextlib.contextmanager
    def _write_transaction(self) -> Iterator[sqlite3.Connection]:
        """One SQLite transaction: committed when the block ends, rolled back when it raises."""
        connection = self._writer()
        try:
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
        finally:
            connection.close()

    @staticmethod
    def _insert(conn: sqlite3.Connection, package: InstalledPackage, files: list[InstalledFile]) -> None:
        conn.execute(
            'INSERT INTO packages (name, version, "key", options, requested, dependencies, installed_at)'
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                package.name,
                package.version,
                package.key,
                json.dumps(package.options, sort_keys=True),
                int(package.requested),
                json.dumps(package.dependencies),
                package.installed_at or time.time(),
            ),
        )
        rows = [(f.path, package.name, f.type, f.sha256, f.size, f.mode, f.target) for f in files if f.type != "dir"]
        if rows:
            conn.executemany(
                "INSERT INTO files (path, package, type, sha256, size, mode, target) VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def commit_transaction(
        self,
        txid: str,
        operation: str,
        remove: list[str],
        add: list[tuple[InstalledPackage, list[InstalledFile]]],
    ) -> None:
        """Swap package records and log the change in one SQLite transaction: the commit point of a pkgc command."""
        touched = sorted({*remove, *(package.name for package, _ in add)})
        with self._write_transaction() as conn:
            before: list[dict[str, Any]] = []
            for start in range(0, len(touched), _CHUNK):
                chunk = touched[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(f"SELECT * FROM packages WHERE name IN ({marks}) ORDER BY name", chunk)
                before.extend(_package(row).as_json() for row in rows)
                conn.execute(f"DELETE FROM files WHERE package IN ({marks})", chunk)
                conn.execute(f"DELETE FROM packages WHERE name IN ({marks})", chunk)
            for package, files in add:
                self._insert(conn, package, files)
            conn.execute(
                'INSERT INTO history (txid, operation, finished_at, "before", "after") VALUES (?, ?, ?, ?, ?)',
                (
                    txid,
                    operation,
                    time.time(),
                    json.dumps(before),
                    json.dumps([package.as_json() for package, _ in add]),
                ),
            )

    def mark_requested(self, names: list[str]) -> None:
        """Record that the user asked for these installed packages by name (apt's "set to manually installed").

        A package that came in as a dependency is removed by `autoremove` once nothing needs it; one the user asked
        for is not. No file changes, so no transaction and no history row; the caller holds the prefix lock.
        """
        if not names:
            return
        with self._write_transaction() as conn:
            for start in range(0, len(names), _CHUNK):
                chunk = names[start : start + _CHUNK]
                conn.execute(f"UPDATE packages SET requested = 1 WHERE name IN ({','.join('?' * len(chunk))})", chunk)

    def transaction_committed(self, txid: str) -> bool:
        if not self.exists():
            return False
        return bool(self._read("SELECT id FROM history WHERE txid = ?", txid))

    def history(self) -> list[dict[str, Any]]:
        if not self.exists():
            return []
        return [
            {
                "id": r["id"],
                "operation": r["operation"],
                "finished_at": r["finished_at"],
                "before": json.loads(r["before"]),
                "after": json.loads(r["after"]),
            }
            for r in self._read("SELECT * FROM history ORDER BY id")
        ]


def _package(m: Any) -> InstalledPackage:
    """From a sqlite3.Row or a SQLAlchemy row mapping."""
    return InstalledPackage(
        name=m["name"],
        version=m["version"],
        key=m["key"],
        options=json.loads(m["options"]),
        requested=bool(m["requested"]),
        dependencies=json.loads(m["dependencies"]),
        installed_at=m["installed_at"],
    )


def _create(connection: sqlite3.Connection) -> bool:
    """Create the schema in an empty database (SCHEMA_DDL and the version, one transaction); False if not empty.

    BEGIN IMMEDIATE first, so that of two processes creating the same database one creates and the other finds it.
    """
    connection.execute("BEGIN IMMEDIATE")
    try:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        empty = connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
        if empty:
            for statement in SCHEMA_DDL:
                connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {int(SCHEMA_VERSION)}")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")
    return bool(empty or version == SCHEMA_VERSION)
