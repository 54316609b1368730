"""The farm database's checks on a real SQLite file: quick_check at start, a checkpoint at stop, and the client's
report of why a farm refused to start."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from pkgc.client.embedded import exited_at_start
from pkgc.core.protocol import BuildStatus
from pkgc.farm.adapters.local import (
    FarmDatabaseDamaged,
    SqliteBuildStore,
    check_farm_database,
    checkpoint_farm_database,
    open_farm_database,
)
from pkgc.farm.embedded import build_service, publish_recipes
from pkgc.farm.paths import FarmPaths
from pkgc.farm.ports import BuildRecord


def _filled(path: Path, count: int = 200) -> None:
    """A farm database with enough build records to span many pages, left with its writes in the WAL."""
    engine = open_farm_database(path)
    store = SqliteBuildStore(engine)
    for index in range(count):
        record = BuildRecord(
            key=f"{index:064x}", name="hello", version="2.10", options={"opt": "O2"}, spec={"x": "y" * 200}
        )
        store.create_if_absent(record)


def test_a_sound_database_and_a_missing_one_pass(tmp_path: Path) -> None:
    check_farm_database(tmp_path / "farm.db")
    _filled(tmp_path / "farm.db")
    check_farm_database(tmp_path / "farm.db")


@pytest.mark.parametrize("offset", [0, 4096], ids=["header", "pages"])
def test_a_damaged_database_is_refused_naming_the_file_and_the_way_out(tmp_path: Path, offset: int) -> None:
    database = tmp_path / "farm.db"
    _filled(database)
    checkpoint_farm_database(open_farm_database(database))
    size = database.stat().st_size
    with database.open("r+b") as handle:
        handle.seek(offset)
        handle.write(os.urandom(size - offset))
    with pytest.raises(FarmDatabaseDamaged) as raised:
        check_farm_database(database)
    message = str(raised.value)
    assert str(database) in message and "pkgc farm reset" in message and "\n" not in message


def test_a_checkpoint_leaves_everything_in_the_database_file(tmp_path: Path) -> None:
    database = tmp_path / "farm.db"
    _filled(database)
    wal = tmp_path / "farm.db-wal"
    assert wal.stat().st_size > 0
    checkpoint_farm_database(open_farm_database(database), "TRUNCATE")
    assert not wal.exists() or wal.stat().st_size == 0
    wal.unlink(missing_ok=True)
    (tmp_path / "farm.db-shm").unlink(missing_ok=True)
    store = SqliteBuildStore(open_farm_database(database))
    assert len(store.get_many([f"{i:064x}" for i in range(200)])) == 200


def test_adopt_ready_inserts_a_ready_build_once(tmp_path: Path) -> None:
    store = SqliteBuildStore(open_farm_database(tmp_path / "farm.db"))
    record = BuildRecord(
        key="a" * 64,
        name="hello",
        version="2.10",
        options={},
        spec={},
        status=BuildStatus.READY,
        artifact="artifacts/aa/" + "a" * 64 + ".tar.zst",
        sha256="b" * 64,
        size=10,
    )
    assert store.adopt_ready(record)
    assert not store.adopt_ready(record)
    stored = store.get("a" * 64)
    assert stored is not None and stored.status == BuildStatus.READY and stored.sha256 == "b" * 64
    with pytest.raises(ValueError):
        store.adopt_ready(BuildRecord(key="c" * 64, name="hello", version="2.10", options={}, spec={}))


def test_the_client_shows_the_reason_the_farm_left_for_this_launch_only(tmp_path: Path) -> None:
    paths = FarmPaths(tmp_path)
    stale = time.time() - 60
    paths.start_error.write_text(json.dumps({"time": stale, "error": "an old reason"}))
    error = exited_at_start(tmp_path, 3, launched=time.time())
    assert "status 3" in str(error) and "old reason" not in str(error) and "farm.log" in str(error)
    launched = time.time()
    paths.start_error.write_text(json.dumps({"time": time.time(), "error": "the farm database x is damaged\n(y)"}))
    error = exited_at_start(tmp_path, 4, launched=launched)
    assert str(error) == "the embedded farm cannot start: the farm database x is damaged (y)"
    paths.start_error.write_text("not json")
    assert "status 5" in str(exited_at_start(tmp_path, 5, launched=launched))


def test_publish_recipes_skips_a_bad_recipe_and_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    (recipes / "bad.toml").write_text('name = "bad"\n[[versions]]\n')
    (recipes / "binary.toml").write_bytes(b"\xff\xfe\x00")
    monkeypatch.setenv("PKGC_RECIPE_PATH", str(recipes))
    service = build_service(FarmPaths(tmp_path / "farm"))
    skipped = {Path(s.file).name: s.error for s in publish_recipes(service)}
    assert set(skipped) == {"bad.toml", "binary.toml"}
    assert "'version' must be a string" in skipped["bad.toml"]
    assert "UnicodeDecodeError" in skipped["binary.toml"]
    assert "hello" in [name for name, _, _ in service.catalog.list_packages()]
