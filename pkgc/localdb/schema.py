"""The installed database's schema, owned by SQLAlchemy: every table, and every write (see store.py)."""

from __future__ import annotations

from sqlalchemy import Column, Float, ForeignKey, Integer, MetaData, String, Table, Text

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
