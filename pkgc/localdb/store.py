"""The installed-packages database of one prefix, kept inside it at `.pkgc/installed.sqlite`.

Keeping the database in the prefix makes each prefix self-describing: two prefixes never share state, and moving
or deleting a prefix takes its records with it.

SQLAlchemy owns the schema (schema.py) and every write. The read paths that short commands take (list, files,
owner, verify) use the standard library's sqlite3 over the same tables, so that `pkgc list` does not pay for
importing SQLAlchemy; SQLite's WAL mode lets them read while a writer commits.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy import Engine

STATE_DIR = ".pkgc"


@dataclass(frozen=True)
class InstalledFile:
    path: str
    type: str
    sha256: str = ""
    size: int = 0
    mode: int = 0
    target: str = ""


@dataclass(frozen=True)
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
        self._engine_cache: Engine | None = None

    @property
    def _engine(self) -> Engine:
        if self._engine_cache is None:
            from pkgc.localdb.schema import metadata
            from pkgc.sqlite import open_sqlite

            self._engine_cache = open_sqlite(self._path, metadata)
        return self._engine_cache

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
        for start in range(0, len(paths), 500):
            chunk = paths[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._read(f"SELECT path, package FROM files WHERE type != 'dir' AND path IN ({marks})", *chunk)
            found.update({str(r["path"]): str(r["package"]) for r in rows})
        return found

    @staticmethod
    def _insert(conn: Any, package: InstalledPackage, files: list[InstalledFile]) -> None:
        from sqlalchemy import insert

        from pkgc.localdb.schema import files_table, packages_table

        conn.execute(
            insert(packages_table).values(
                name=package.name,
                version=package.version,
                key=package.key,
                options=json.dumps(package.options, sort_keys=True),
                requested=int(package.requested),
                dependencies=json.dumps(package.dependencies),
                installed_at=package.installed_at or time.time(),
            )
        )
        rows = [
            {
                "path": f.path,
                "package": package.name,
                "type": f.type,
                "sha256": f.sha256,
                "size": f.size,
                "mode": f.mode,
                "target": f.target,
            }
            for f in files
            if f.type != "dir"
        ]
        if rows:
            conn.execute(insert(files_table), rows)

    def commit_transaction(
        self,
        txid: str,
        operation: str,
        remove: list[str],
        add: list[tuple[InstalledPackage, list[InstalledFile]]],
    ) -> None:
        """Swap package records and log the change in one SQLite transaction: the commit point of a pkgc command."""
        from sqlalchemy import delete, insert, select

        from pkgc.localdb.schema import files_table, history_table, packages_table

        with self._engine.begin() as conn:
            touched = sorted({*remove, *(package.name for package, _ in add)})
            before_rows = conn.execute(select(packages_table).where(packages_table.c.name.in_(touched))).all()
            before = [_package(row._mapping).as_json() for row in before_rows]
            conn.execute(delete(files_table).where(files_table.c.package.in_(touched)))
            conn.execute(delete(packages_table).where(packages_table.c.name.in_(touched)))
            for package, files in add:
                self._insert(conn, package, files)
            conn.execute(
                insert(history_table).values(
                    txid=txid,
                    operation=operation,
                    finished_at=time.time(),
                    before=json.dumps(before),
                    after=json.dumps([package.as_json() for package, _ in add]),
                )
            )

    def mark_requested(self, names: list[str]) -> None:
        """Record that the user asked for these installed packages by name (apt's "set to manually installed").

        A package that came in as a dependency is removed by `autoremove` once nothing needs it; one the user asked
        for is not. No file changes, so no transaction and no history row; the caller holds the prefix lock.
        """
        from sqlalchemy import update

        from pkgc.localdb.schema import packages_table

        if not names:
            return
        with self._engine.begin() as conn:
            conn.execute(update(packages_table).where(packages_table.c.name.in_(names)).values(requested=1))

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
