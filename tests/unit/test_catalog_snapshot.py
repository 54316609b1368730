"""Search and the catalog document read the catalog snapshot written at publication, never a scan per request
(FarmService over the in-memory fakes, with a catalog store that counts its calls)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from pkgc.core.platform import Platform
from pkgc.core.recipe import parse_recipe
from pkgc.farm.adapters.memory import MemoryBlobStore, MemoryBuildStore, MemoryCatalogStore, MemoryQueueRouter
from pkgc.farm.service import FarmService
from pkgc.recipes import recipe_files


class CountingCatalog:
    """Delegates to the in-memory catalog and counts calls by method name."""

    def __init__(self, inner: MemoryCatalogStore) -> None:
        self.inner = inner
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            return attribute(*args, **kwargs)

        return counted


def farm(catalog: CountingCatalog, ttl: float = 2.0) -> FarmService:
    return FarmService(
        catalog=catalog,  # type: ignore[arg-type]
        builds=MemoryBuildStore(),
        queues=MemoryQueueRouter(),
        blobs=MemoryBlobStore(),
        platform=Platform.parse("linux-x86_64-glibc-2.36"),
        recipe_ttl=ttl,
    )


def recipes() -> list[tuple[str, str]]:
    return [(p.name, p.read_text(encoding="utf-8")) for p in recipe_files()]


def renamed(text: str, name: str, summary: str) -> str:
    """A recipe of another package: same build, new name and summary."""
    lines = text.splitlines()
    lines = [f'name = "{name}"' if line.startswith("name = ") else line for line in lines]
    lines = [f'summary = "{summary}"' if line.startswith("summary = ") else line for line in lines]
    return "\n".join(lines) + "\n"


@pytest.fixture
def catalog() -> CountingCatalog:
    return CountingCatalog(MemoryCatalogStore())


def test_a_batch_writes_the_snapshot_once(catalog: CountingCatalog) -> None:
    service = farm(catalog)
    assert service.publish_recipes(recipes()) == []
    assert catalog.calls == {"put_recipe": len(recipes()), "list_packages": 1, "write_snapshot": 1}
    snapshot = catalog.inner.read_snapshot()
    assert snapshot is not None
    names = [p["name"] for p in json.loads(snapshot)["packages"]]
    assert names == sorted(p.stem for p in recipe_files())


def test_a_bad_recipe_in_a_batch_is_returned_and_the_rest_published(catalog: CountingCatalog) -> None:
    service = farm(catalog)
    failed = service.publish_recipes([("bad.toml", "name = 1\n"), *recipes()])
    assert [source for source, _ in failed] == ["bad.toml"]
    assert catalog.calls["write_snapshot"] == 1
    assert [p.name for p in service.search("hello")] == ["hello"]


def test_searches_and_catalog_reads_never_scan_the_catalog(catalog: CountingCatalog) -> None:
    farm(catalog).publish_recipes(recipes())
    service = farm(catalog, ttl=0.0)  # another process (another Lambda container): it reads the stored snapshot
    catalog.calls.clear()
    for _ in range(50):
        assert [p.name for p in service.search("zlib")][:1] == ["zlib"]
        assert service.search("compress")  # summaries are searched too
        data, etag = service.catalog_document()
        assert json.loads(data)["packages"] and etag.startswith('"')
        assert len(service.catalog_snapshot()) == len(recipes())
    assert catalog.calls.get("list_packages", 0) == 0
    assert catalog.calls["read_snapshot"] == 200  # TTL 0: every read asks the store, a cheap get of one object


def test_the_snapshot_is_read_at_most_once_per_ttl(catalog: CountingCatalog) -> None:
    farm(catalog).publish_recipes(recipes())
    service = farm(catalog, ttl=3600.0)
    catalog.calls.clear()
    for _ in range(100):
        service.search("hello")
        service.catalog_document()
    assert catalog.calls == {"read_snapshot": 1}


def test_a_publication_elsewhere_is_visible_within_the_ttl(catalog: CountingCatalog) -> None:
    publisher = farm(catalog)
    publisher.publish_recipes(recipes())
    reader = farm(catalog, ttl=0.05)
    before, etag = reader.catalog_document()
    assert reader.search("brandnew") == []
    hello = dict(recipes())["hello.toml"]
    publisher.publish_recipe(renamed(hello, "brandnew", "a brand new package"), source="brandnew.toml")
    deadline = time.monotonic() + 5
    while not reader.search("brandnew") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [p.name for p in reader.search("brandnew")] == ["brandnew"]
    after, new_etag = reader.catalog_document()
    assert after != before and new_etag != etag, "the ETag derives from the snapshot's bytes"
    assert publisher.search("brandnew"), "the publisher sees its own publication at once"


def test_unchanged_bytes_keep_the_parsed_catalog(catalog: CountingCatalog) -> None:
    farm(catalog).publish_recipes(recipes())
    service = farm(catalog, ttl=0.0)
    first = service.catalog_snapshot()
    assert service.catalog_snapshot() is first, "the same bytes are not parsed again"


def test_a_store_without_a_snapshot_gets_one_written_once(catalog: CountingCatalog) -> None:
    for name, text in recipes():  # published by a farm from before snapshots: recipes, no snapshot
        catalog.inner.put_recipe(*_row(text, name))
    service = farm(catalog, ttl=0.0)
    catalog.calls.clear()
    for _ in range(10):
        assert [p.name for p in service.search("hello")] == ["hello"]
    assert catalog.calls.get("list_packages") == 1
    assert catalog.calls.get("write_snapshot") == 1


def _row(text: str, source: str) -> tuple[str, str, str, str]:
    recipe = parse_recipe(text, source=source)
    return recipe.name, text, recipe.summary, recipe.newest_version().version


def test_the_farms_search_ranks_like_the_clients(catalog: CountingCatalog) -> None:
    """Exact name, name prefix, name substring, then summary; name order within a tier."""
    service = farm(catalog)
    hello = next(text for source, text in recipes() if source == "hello.toml")
    service.publish_recipes(
        [
            ("a.toml", renamed(hello, "tinycbor", "tools")),
            ("b.toml", renamed(hello, "libcbor", "a library")),
            ("c.toml", renamed(hello, "cbor2", "a codec")),
            ("d.toml", renamed(hello, "cbor", "the exact one")),
            ("e.toml", renamed(hello, "jsonish", "JSON to CBOR")),
        ]
    )
    assert [p.name for p in service.search("CBOR")] == ["cbor", "cbor2", "libcbor", "tinycbor", "jsonish"]
