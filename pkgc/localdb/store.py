"""The installed-packages database of one prefix, kept inside it at `.pkgc/installed.sqlite`.

Keeping the database in the prefix makes each prefix self-describing: two prefixes never share state, and moving
or deleting a prefix takes its records with it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Engine,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    insert,
    select,
)

from pkgc.sqlite import open_sqlite

metadata = MetaData()

packages_table = Table(
    "packages",
    metadata,
    Column("name", String, primary_key=True),
    Column("version", String, nullable=False),
    Column("key", String, nullable=False),
    Column("options", Text, nullable=False),
    Column("requested", Integer, nullable=False),
    Column("dependencies", Text, nullable=False),
    Column("installed_at", Float, nullable=False),
)

files_table = Table(
    "files",
    metadata,
    Column("path", String, primary_key=True),
    Column("package", String, ForeignKey("packages.name", ondelete="CASCADE"), nullable=False, index=True),
    Column("type", String, nullable=False),
    Column("sha256", String, nullable=False),
    Column("size", Integer, nullable=False),
    Column("mode", Integer, nullable=False),
    Column("target", String, nullable=False),
)

history_table = Table(
    "history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("txid", String, nullable=False, unique=True),
    Column("operation", String, nullable=False),
    Column("finished_at", Float, nullable=False),
    Column("before", Text, nullable=False),
    Column("after", Text, nullable=False),
)

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
            self._engine_cache = open_sqlite(self._path, metadata)
        return self._engine_cache

    def exists(self) -> bool:
        return self._path.is_file()

    def packages(self) -> list[InstalledPackage]:
        if not self.exists():
            return []
        with self._engine.connect() as conn:
            rows = conn.execute(select(packages_table).order_by(packages_table.c.name)).all()
        return [_package(row) for row in rows]

    def get(self, name: str) -> InstalledPackage | None:
        if not self.exists():
            return None
        with self._engine.connect() as conn:
            row = conn.execute(select(packages_table).where(packages_table.c.name == name)).first()
        return None if row is None else _package(row)

    def files(self, name: str) -> list[InstalledFile]:
        if not self.exists():
            return []
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(files_table).where(files_table.c.package == name).order_by(files_table.c.path)
            ).all()
        return [InstalledFile(r.path, r.type, r.sha256, r.size, r.mode, r.target) for r in rows]

    def owners(self, paths: list[str]) -> dict[str, str]:
        """Which installed package owns each of `paths` (directories are shared and owned by none)."""
        if not self.exists() or not paths:
            return {}
        found: dict[str, str] = {}
        with self._engine.connect() as conn:
            for start in range(0, len(paths), 500):
                chunk = paths[start : start + 500]
                rows = conn.execute(
                    select(files_table.c.path, files_table.c.package)
                    .where(files_table.c.path.in_(chunk))
                    .where(files_table.c.type != "dir")
                ).all()
                found.update({str(r[0]): str(r[1]) for r in rows})
        return found

    @staticmethod
    def _insert(conn: Any, package: InstalledPackage, files: list[InstalledFile]) -> None:
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
        with self._engine.begin() as conn:
            touched = sorted({*remove, *(package.name for package, _ in add)})
            before_rows = conn.execute(select(packages_table).where(packages_table.c.name.in_(touched))).all()
            before = [_package(row).as_json() for row in before_rows]
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

    def transaction_committed(self, txid: str) -> bool:
        if not self.exists():
            return False
        with self._engine.connect() as conn:
            return conn.execute(select(history_table.c.id).where(history_table.c.txid == txid)).first() is not None

    def history(self) -> list[dict[str, Any]]:
        if not self.exists():
            return []
        with self._engine.connect() as conn:
            rows = conn.execute(select(history_table).order_by(history_table.c.id)).all()
        return [
            {
                "id": r.id,
                "operation": r.operation,
                "finished_at": r.finished_at,
                "before": json.loads(r.before),
                "after": json.loads(r.after),
            }
            for r in rows
        ]


def _package(row: Any) -> InstalledPackage:
    m = row._mapping
    return InstalledPackage(
        name=m["name"],
        version=m["version"],
        key=m["key"],
        options=json.loads(m["options"]),
        requested=bool(m["requested"]),
        dependencies=json.loads(m["dependencies"]),
        installed_at=m["installed_at"],
    )
