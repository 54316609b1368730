"""The Debian catalog's state (absent, loading, loaded, failed) as the farm reads it from its home, one update at a
time under the lock, the start rule (on, no index, none running), and the hints a search that found nothing gives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pkgc.client.catalog import debian_hint, no_match, sync_if_stale, update_catalog
from pkgc.core import wire
from pkgc.core.errors import ConflictError, NotFound, UsageError
from pkgc.core.protocol import CatalogResponse, DebianCatalogState
from pkgc.core.wire_schema import Invalid, decode
from pkgc.farm.catalog_autoload import (
    AUTOLOAD_ENV,
    SOURCES_FILE_ENV,
    autoload_enabled,
    catalog_state,
    failure_reason,
    record_update,
    sources_text,
    start_autoload,
    try_lock,
)
from pkgc.farm.debian_catalog import index_path, load_index_text
from pkgc.farm.debian_state import describe, lock_path, read_state, state_path, update_running
from pkgc.localdb.catalog import CatalogCache

FIXTURE = Path(__file__).parent.parent / "fixtures" / "debian" / "Sources"


def hold_lock_in_another_process(home: Path) -> subprocess.Popen[str]:
    """A process that holds the update lock until its stdin closes (flock is per open file, so another process
    shows what the farm sees while the background update runs)."""
    code = (
        "import fcntl, sys; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True);"
        " sys.stdin.read()"
    )
    lock_path(home).parent.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-c", code, str(lock_path(home))], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None and process.stdout.readline() == "held\n"
    return process


def release(process: subprocess.Popen[str]) -> None:
    assert process.stdin is not None
    process.stdin.close()
    process.wait(timeout=10)


def test_a_fresh_home_has_no_catalog(tmp_path: Path) -> None:
    assert catalog_state(tmp_path) == DebianCatalogState(state="absent")
    assert not (tmp_path / "debian").exists(), "asking writes nothing"


def test_loading_is_the_lock_being_held_and_a_killed_update_reads_as_failed(tmp_path: Path) -> None:
    holder = hold_lock_in_another_process(tmp_path)
    try:
        state_path(tmp_path).write_text(json.dumps({"state": "loading", "since": 1_700_000_000.5}))
        assert update_running(tmp_path)
        assert catalog_state(tmp_path) == DebianCatalogState(state="loading", since=1_700_000_000.5)
    finally:
        release(holder)  # the process is gone, its record still says "loading"
    assert not update_running(tmp_path)
    state = catalog_state(tmp_path)
    assert state.state == "failed" and state.error is not None and "stopped before it finished" in state.error


def test_an_index_is_loaded_with_its_package_count(tmp_path: Path) -> None:
    stored, _ = load_index_text(tmp_path, FIXTURE.read_text(encoding="utf-8"))
    state = catalog_state(tmp_path)
    assert state.state == "loaded" and state.packages == stored > 5
    assert state.since == pytest.approx(index_path(tmp_path).stat().st_mtime)


def test_record_update_records_loaded_then_failed_and_reraises(tmp_path: Path) -> None:
    seen: list[str] = []

    def load() -> tuple[int, int]:
        seen.append(catalog_state(tmp_path).state)  # inside: the lock is held
        return load_index_text(tmp_path, FIXTURE.read_text(encoding="utf-8"))

    result = record_update(tmp_path, load, after=lambda: seen.append(catalog_state(tmp_path).state))
    assert seen == ["loading", "loading"], "the snapshot is rewritten before anyone can see 'loaded'"
    assert json.loads(state_path(tmp_path).read_text())["packages"] == result[0]
    assert catalog_state(tmp_path).state == "loaded"
    assert not update_running(tmp_path), "the lock is released"

    other = tmp_path / "other"

    def fail() -> tuple[int, int]:
        raise UsageError("apt's configuration has no usable deb entry\nsecond \x1b[2J line")

    with pytest.raises(UsageError):
        record_update(other, fail)
    state = catalog_state(other)
    assert state.state == "failed" and state.since is not None
    assert state.error == "apt's configuration has no usable deb entry second \\x1b[2J line", "one inert line"


def test_only_one_update_at_a_time(tmp_path: Path) -> None:
    held = try_lock(tmp_path)
    assert held is not None
    try:
        with pytest.raises(ConflictError, match="being loaded already"):
            record_update(tmp_path, lambda: (0, 0))
        assert start_autoload(tmp_path, {}) is None, "the farm starts no second update"
    finally:
        held.close()


def test_the_start_rule(tmp_path: Path) -> None:
    assert autoload_enabled({}) and autoload_enabled({AUTOLOAD_ENV: "1"})
    assert not any(autoload_enabled({AUTOLOAD_ENV: value}) for value in ("0", "false", "No", " off "))
    assert start_autoload(tmp_path, {AUTOLOAD_ENV: "0"}) is None
    assert not (tmp_path / "debian").exists(), "turned off: nothing written"
    load_index_text(tmp_path, FIXTURE.read_text(encoding="utf-8"))
    assert start_autoload(tmp_path, {}) is None, "an index exists: nothing to load"


def test_the_background_update_loads_the_override_and_records_a_missing_file_as_failed(tmp_path: Path) -> None:
    env = {**os.environ, AUTOLOAD_ENV: "1", SOURCES_FILE_ENV: str(tmp_path / "absent" / "Sources")}  # PYTHONPATH
    said = start_autoload(tmp_path / "farm", env)
    assert said is not None and "update.log" in said
    deadline = time.monotonic() + 60
    while catalog_state(tmp_path / "farm").state == "loading":
        assert time.monotonic() < deadline, "the update did not end"
        time.sleep(0.05)
    state = catalog_state(tmp_path / "farm")
    assert state.state == "failed" and state.error is not None and "cannot read" in state.error
    log = (tmp_path / "farm" / "debian" / "update.log").read_text()
    assert "failed: " in log and "the next farm start tries again" in log

    env[SOURCES_FILE_ENV] = str(FIXTURE)  # the next start tries again
    assert start_autoload(tmp_path / "farm", env) is not None
    while catalog_state(tmp_path / "farm").state == "loading":
        assert time.monotonic() < deadline, "the update did not end"
        time.sleep(0.05)
    assert catalog_state(tmp_path / "farm").state == "loaded"


def test_sources_text_reads_the_override(tmp_path: Path) -> None:
    assert sources_text(tmp_path, {SOURCES_FILE_ENV: str(FIXTURE)}).startswith("Package:")
    with pytest.raises(UsageError, match="cannot read"):
        sources_text(tmp_path, {SOURCES_FILE_ENV: str(tmp_path / "nothing")})


def test_failure_reason_is_one_bounded_line() -> None:
    assert failure_reason(OSError("a\nb")) == "OSError: a b"
    assert len(failure_reason(RuntimeError("x" * 1000))) == 200


# -- the client's side --------------------------------------------------------------------------------------------


def test_hints_for_each_state() -> None:
    now = 1_700_000_100.0
    assert debian_hint(None) is None, "a farm without a Debian catalog: nothing to add"
    assert debian_hint({"state": "loaded", "packages": 34000, "since": now}) is None
    loading = debian_hint({"state": "loading", "since": now - 40}, now=now)
    assert loading == "the farm's Debian catalog is loading (started 40 s ago); try again in a minute"
    absent = debian_hint({"state": "absent"})
    assert absent is not None and "'pkgc farm catalog update' loads it" in absent
    failed = debian_hint({"state": "failed", "since": now, "error": "apt-get update failed: E: no network"})
    assert failed == (
        "loading the farm's Debian catalog failed: apt-get update failed: E: no network; "
        "'pkgc farm catalog update' tries again"
    )


class Farm:
    """/v1/catalog as the client's FarmClient returns it (wire models): a 304 for the current ETag; the document
    carries the Debian catalog's state."""

    def __init__(self, names: list[str], state: wire.DebianCatalogState | None, etag: str) -> None:
        self.names, self.state, self.etag, self.asked = names, state, etag, 0

    def catalog(self, etag: str | None) -> tuple[wire.CatalogResponse | None, str | None]:
        self.asked += 1
        if etag == self.etag:
            return None, etag
        packages = [wire.PackageSummary(name=n, summary="s", latest="1.0") for n in self.names]
        return wire.CatalogResponse(packages=packages, debian=self.state), self.etag


def test_the_copy_keeps_the_state_and_is_asked_again_while_loading_or_failed(tmp_path: Path) -> None:
    cache = CatalogCache(tmp_path / "catalog.sqlite")
    farm = Farm(["hello"], wire.DebianCatalogState(state="loading", since=1_700_000_000), '"a"')
    update_catalog(farm, cache, "embedded")
    assert cache.debian_state() == {"state": "loading", "since": 1_700_000_000}
    error = no_match("libtar", cache)
    assert isinstance(error, NotFound) and error.exit_code == 3
    assert str(error).startswith("no package matches 'libtar' (the farm's Debian catalog is loading")

    sync_if_stale(lambda: farm, cache, "embedded", max_age=3600)
    assert farm.asked == 2, "loading: a fresh copy is asked again (a 304 here)"
    farm.names, farm.state, farm.etag = ["hello", "libtar"], wire.DebianCatalogState(state="loaded", packages=1), '"b"'
    sync_if_stale(lambda: farm, cache, "embedded", max_age=3600)
    assert [e.name for e in cache.search("libtar")] == ["libtar"]
    assert cache.debian_state() == {"state": "loaded", "packages": 1}
    sync_if_stale(lambda: farm, cache, "embedded", max_age=3600)
    assert farm.asked == 3, "loaded: a fresh copy is not asked again"
    assert str(no_match("nothing", cache)) == "no package matches 'nothing'", "loaded: no hint"
    farm.state, farm.etag = wire.DebianCatalogState(state="failed", error="no network"), '"f"'
    update_catalog(farm, cache, "embedded")
    sync_if_stale(lambda: farm, cache, "embedded", max_age=3600)
    assert farm.asked == 5, "failed: asked again (a stopped farm's next start tries the load again)"

    farm.state, farm.etag = None, '"c"'  # a farm that reports no state: none is kept
    update_catalog(farm, cache, "embedded")
    assert cache.debian_state() is None


def test_an_unknown_package_while_loading_says_so() -> None:
    from pkgc.core.platform import Platform
    from pkgc.farm.adapters.memory import MemoryBlobStore, MemoryBuildStore, MemoryCatalogStore, MemoryQueueRouter
    from pkgc.farm.service import FarmService

    state = DebianCatalogState(state="loading", since=time.time() - 5)
    service = FarmService(
        catalog=MemoryCatalogStore(),
        builds=MemoryBuildStore(),
        queues=MemoryQueueRouter(),
        blobs=MemoryBlobStore(),
        platform=Platform.parse("linux-x86_64-glibc-2.36"),
        debian_state=lambda: state,
    )
    with pytest.raises(NotFound) as loading:
        service.recipe("libtar")
    assert str(loading.value).startswith("unknown package 'libtar' (the farm's Debian catalog is still loading")
    assert "try again in a minute" in str(loading.value)
    state = DebianCatalogState(state="loaded", packages=3, since=time.time())
    with pytest.raises(NotFound, match=r"^unknown package 'nosuch' \(try 'pkgc search'\)$"):
        service.recipe("nosuch")


@pytest.mark.parametrize(
    "document",
    [
        {"state": "busy"},
        {"state": "loaded", "packages": -1},
        {"state": "failed", "error": "a\x1b[2Jb"},
        {"state": "failed", "error": "x" * 201},
        {"state": "loading", "since": 1e300},
        {"state": "loading", "extra": 1},
    ],
)
def test_a_farms_state_is_validated(document: dict[str, object]) -> None:
    """By the farm's pydantic models and by the client's wire models alike."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        CatalogResponse.model_validate({"packages": [], "debian": document})
    with pytest.raises(Invalid):
        decode(wire.CatalogResponse, {"packages": [], "debian": document})


def test_farm_status_says_each_state_in_one_line(tmp_path: Path) -> None:
    assert describe(read_state(tmp_path)) == "Debian catalog: not loaded ('pkgc farm catalog update' loads it)"
    at = time.mktime((2026, 11, 29, 7, 40, 0, 0, 0, -1))
    failed = {"state": "failed", "since": at, "error": "apt-get update failed"}
    assert describe(failed) == (
        "Debian catalog: loading failed at 2026-11-29 07:40: apt-get update failed ('pkgc farm catalog update' tries "
        "again)"
    )
    assert describe({"state": "loading", "since": at}) == "Debian catalog: loading since 2026-11-29 07:40"
    stored, _ = load_index_text(tmp_path, FIXTURE.read_text(encoding="utf-8"))
    assert describe(read_state(tmp_path)).startswith(f"Debian catalog: {stored} source packages (loaded ")


def test_a_state_change_makes_the_farm_read_the_snapshot_again_at_once() -> None:
    """The update rewrites the snapshot, then its state turns "loaded": the next /v1/catalog must list the new
    packages, not serve the snapshot the farm read before (it rereads only every `recipe_ttl` otherwise)."""
    from pkgc.core.platform import Platform
    from pkgc.farm.adapters.memory import MemoryBlobStore, MemoryBuildStore, MemoryCatalogStore, MemoryQueueRouter
    from pkgc.farm.service import FarmService, encode_catalog

    catalog = MemoryCatalogStore()
    state = DebianCatalogState(state="loading", since=time.time())
    service = FarmService(
        catalog=catalog,
        builds=MemoryBuildStore(),
        queues=MemoryQueueRouter(),
        blobs=MemoryBlobStore(),
        platform=Platform.parse("linux-x86_64-glibc-2.36"),
        recipe_ttl=3600.0,
        debian_state=lambda: state,
    )
    service.write_catalog_snapshot()
    before, loading_etag = service.catalog_document(with_debian=True)
    assert CatalogResponse.model_validate_json(before).packages == []
    assert service.catalog_document(with_debian=True)[1] == loading_etag, "unchanged: the same ETag"
    # Another process (the update) rewrites the snapshot, then its state changes.
    catalog.write_snapshot(encode_catalog([], [("libtar", "Debian source package", "1.2.20", "")]))
    assert CatalogResponse.model_validate_json(service.catalog_document(with_debian=True)[0]).packages == [], "TTL"
    state = DebianCatalogState(state="loaded", packages=1, since=time.time())
    body, etag = service.catalog_document(with_debian=True)
    document = CatalogResponse.model_validate_json(body)
    assert [p.name for p in document.packages] == ["libtar"] and document.debian == state
    assert etag != loading_etag
    assert b"debian" not in service.catalog_document()[0], "not asked for (an older client): not sent"
