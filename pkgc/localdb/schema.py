"""The installed database's schema, owned by SQLAlchemy: every table, its creation and its migrations.

Only `create_or_migrate` imports this module at run time, when the database is missing or its `PRAGMA
user_version` is not `store.SCHEMA_VERSION`; reads and writes go through the standard library (store.py), so
that the commands users wait on do not import SQLAlchemy.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Column, Float, ForeignKey, Integer, MetaData, String, Table, Text, text

from pkgc.core.errors import PkgcError
from pkgc.localdb.store import SCHEMA_VERSION
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


def create_or_migrate(path: Path) -> None:
    """Bring the database at `path` to SCHEMA_VERSION: create it (or its missing tables), or migrate it.

    Version 0 is a database made before versions were recorded: its tables are those of version 1, so the
    migration only records the version. A database of a newer pkgc is refused, not changed.
    """
    engine = open_sqlite(path, metadata)  # creates what is missing; existing tables are kept as they are
    try:
        with engine.begin() as conn:
            version = int(conn.execute(text("PRAGMA user_version")).scalar_one())
            if version > SCHEMA_VERSION:
                raise PkgcError(
                    f"{path} was written by a newer pkgc (schema version {version}; this pkgc knows up to "
                    f"{SCHEMA_VERSION}): nothing was changed",
                    hint="upgrade pkgc",
                )
            if version < SCHEMA_VERSION:
                conn.execute(text(f"PRAGMA user_version = {int(SCHEMA_VERSION)}"))
    finally:
        engine.dispose()
