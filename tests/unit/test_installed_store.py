"""The installed database: written with the standard library, created and migrated by SQLAlchemy (schema.py).

`PRAGMA user_version` tells a current database (no SQLAlchemy needed) from a missing or older one; a database made
before versions were recorded keeps its records and is migrated by recording the version.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pkgc.core.errors import PkgcError
from pkgc.localdb.store import (
    SCHEMA_DDL,
    SCHEMA_VERSION,
    InstalledFile,
    InstalledPackage,
    InstalledStore,
    database_path,
)


def _package(name: str, requested: bool = True) -> tuple[InstalledPackage, list[InstalledFile]]:
    package = InstalledPackage(name, "1.0", "a" * 64, {"opt": "O2"}, requested, ["zlib"], 0.0)
    files = [
        InstalledFile(f"share/{name}", "dir"),
        InstalledFile(f"share/{name}/README", "file", "b" * 64, 12, 0o644),
        InstalledFile(f"share/{name}/link", "symlink", target="README"),
    ]
    return package, files


def _pragma(path: Path, name: str) -> object:
    connection = sqlite3.connect(path)
    try:
        return connection.execute(f"PRAGMA {name}").fetchone()[0]
    finally:
        connection.close()


def test_the_first_write_creates_a_versioned_wal_database_and_records_everything(tmp_path: Path) -> None:
    store = InstalledStore(tmp_path)
    store.commit_transaction("tx1", "install", [], [_package("hello")])
    path = database_path(tmp_path)
    assert _pragma(path, "user_version") == SCHEMA_VERSION
    assert _pragma(path, "journal_mode") == "wal"
    [hello] = store.packages()
    assert (hello.name, hello.options, hello.requested, hello.dependencies) == ("hello", {"opt": "O2"}, True, ["zlib"])
    assert hello.installed_at > 0
    # directories are shared, so not recorded; symlinks keep their target
    assert [(f.path, f.type, f.target) for f in store.files("hello")] == [
        ("share/hello/README", "file", ""),
        ("share/hello/link", "symlink", "README"),
    ]
    assert store.transaction_committed("tx1")
    [entry] = store.history()
    assert (entry["operation"], entry["before"], [p["name"] for p in entry["after"]]) == ("install", [], ["hello"])


def test_a_replacement_logs_the_records_it_replaced_and_drops_the_old_files(tmp_path: Path) -> None:
    store = InstalledStore(tmp_path)
    store.commit_transaction("tx1", "install", [], [_package("hello", requested=False), _package("zlib")])
    newer, _ = _package("hello")
    store.commit_transaction("tx2", "upgrade", ["zlib"], [(newer, [InstalledFile("bin/hello", "file", "c" * 64)])])
    assert [p.name for p in store.packages()] == ["hello"]
    assert [f.path for f in store.files("hello")] == ["bin/hello"]
    assert store.files("zlib") == []
    last = store.history()[-1]
    assert [(p["name"], p["requested"]) for p in last["before"]] == [("hello", False), ("zlib", True)]
    store.mark_requested(["hello"])
    assert store.get("hello") is not None and store.get("hello").requested  # type: ignore[union-attr]


def test_a_failed_commit_changes_nothing(tmp_path: Path) -> None:
    store = InstalledStore(tmp_path)
    store.commit_transaction("tx1", "install", [], [_package("hello")])
    clash, _ = _package("other")
    with pytest.raises(sqlite3.IntegrityError):
        # the same path twice: the files table refuses the second one after hello's records were deleted
        store.commit_transaction(
            "tx2",
            "install",
            ["hello"],
            [(clash, [InstalledFile("bin/x", "file", "d" * 64), InstalledFile("bin/x", "file", "d" * 64)])],
        )
    assert [p.name for p in store.packages()] == ["hello"]
    assert len(store.files("hello")) == 2
    assert not store.transaction_committed("tx2")


def _legacy_database(prefix: Path) -> Path:
    """A database as pkgc made it before the schema version was recorded: SQLAlchemy's tables, user_version 0."""
    from pkgc.localdb.schema import metadata
    from pkgc.sqlite import open_sqlite

    path = database_path(prefix)
    engine = open_sqlite(path, metadata)
    engine.dispose()
    connection = sqlite3.connect(path)
    with connection:
        connection.execute(
            "INSERT INTO packages VALUES ('zlib', '1.3', ?, '{}', 1, '[]', 1.0)",
            ("e" * 64,),
        )
        connection.execute("INSERT INTO files VALUES ('lib/libz.so', 'zlib', 'file', ?, 1, 420, '')", ("f" * 64,))
    connection.close()
    return path


def test_a_database_without_a_version_keeps_its_records_and_is_migrated_by_the_next_write(tmp_path: Path) -> None:
    path = _legacy_database(tmp_path)
    assert _pragma(path, "user_version") == 0
    store = InstalledStore(tmp_path)
    assert [p.name for p in store.packages()] == ["zlib"]  # reading needs no migration
    store.commit_transaction("tx1", "install", [], [_package("hello")])
    assert _pragma(path, "user_version") == SCHEMA_VERSION
    assert [p.name for p in store.packages()] == ["hello", "zlib"]
    assert [f.path for f in store.files("zlib")] == ["lib/libz.so"]


def test_a_database_of_a_newer_pkgc_is_refused_and_left_alone(tmp_path: Path) -> None:
    store = InstalledStore(tmp_path)
    store.commit_transaction("tx1", "install", [], [_package("hello")])
    path = database_path(tmp_path)
    connection = sqlite3.connect(path)
    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    connection.close()
    with pytest.raises(PkgcError, match="newer pkgc"):
        store.commit_transaction("tx2", "remove", ["hello"], [])
    assert [p.name for p in store.packages()] == ["hello"]
    assert _pragma(path, "user_version") == SCHEMA_VERSION + 1


def test_the_stored_ddl_is_what_sqlalchemy_compiles_from_the_schema() -> None:
    """SQLAlchemy stays the owner of the schema: the DDL kept in store.py is its own, compiled for SQLite."""
    from sqlalchemy.dialects import sqlite
    from sqlalchemy.schema import CreateIndex, CreateTable

    from pkgc.localdb.schema import metadata

    dialect = sqlite.dialect()  # type: ignore[no-untyped-call]
    compiled: list[str] = []
    for table in metadata.sorted_tables:
        compiled.append(str(CreateTable(table).compile(dialect=dialect)).strip())
        compiled.extend(str(CreateIndex(i).compile(dialect=dialect)) for i in sorted(table.indexes, key=str))
    assert list(SCHEMA_DDL) == compiled


def _schema(path: Path) -> list[tuple[str, str]]:
    connection = sqlite3.connect(path)
    try:
        return connection.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall()
    finally:
        connection.close()


def test_a_database_created_without_sqlalchemy_is_the_one_sqlalchemy_creates(tmp_path: Path) -> None:
    from pkgc.localdb.schema import create_or_migrate

    InstalledStore(tmp_path / "a").commit_transaction("tx1", "install", [], [_package("hello")])
    create_or_migrate(database_path(tmp_path / "b"))
    assert _schema(database_path(tmp_path / "a")) == _schema(database_path(tmp_path / "b"))
    assert _pragma(database_path(tmp_path / "b"), "user_version") == SCHEMA_VERSION


def _write_in_a_fresh_interpreter(prefix: Path) -> list[str]:
    """Commit a transaction and mark a package requested; the sqlalchemy modules the process imported."""
    script = textwrap.dedent(
        f"""
        import os, sys
        from pathlib import Path
        from pkgc.localdb.store import InstalledFile, InstalledPackage, InstalledStore
        store = InstalledStore(Path({str(prefix)!r}))
        package = InstalledPackage("hello", "1.0", "a" * 64, {{}}, True, [], 0.0)
        store.commit_transaction(f"tx{{os.getpid()}}", "install", [], [(package, [InstalledFile("bin/hello", "file", "b" * 64)])])
        store.mark_requested(["hello"])
        print(" ".join(sorted(name for name in sys.modules if name.split(".")[0] == "sqlalchemy")[:3]))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return result.stdout.split()


def test_creating_or_writing_to_a_current_database_does_not_import_sqlalchemy(tmp_path: Path) -> None:
    assert _write_in_a_fresh_interpreter(tmp_path / "new") == []  # the first install into a prefix
    InstalledStore(tmp_path / "old").commit_transaction("tx1", "install", [], [_package("zlib")])
    assert _write_in_a_fresh_interpreter(tmp_path / "old") == []
    assert [p.name for p in InstalledStore(tmp_path / "old").packages()] == ["hello", "zlib"]


def test_migrating_a_database_without_a_version_uses_sqlalchemy(tmp_path: Path) -> None:
    _legacy_database(tmp_path)
    assert _write_in_a_fresh_interpreter(tmp_path) != []
    assert _pragma(database_path(tmp_path), "user_version") == SCHEMA_VERSION
    assert _write_in_a_fresh_interpreter(tmp_path) == []  # migrated once
