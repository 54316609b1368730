"""The offline catalog: ETag-conditional updates that never mix two farms' catalogs, and ranked search."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pkgc.client.catalog import update_catalog
from pkgc.core.protocol import CatalogResponse, PackageSummary
from pkgc.localdb.catalog import CatalogCache, CatalogEntry


@dataclass
class FakeFarm:
    """Answers like the farm's /v1/catalog: 304 (None) when the client's ETag is current."""

    names: list[str]
    etag: str
    asked_with: list[str | None] = field(default_factory=list)

    def catalog(self, etag: str | None) -> tuple[CatalogResponse | None, str | None]:
        self.asked_with.append(etag)
        if etag == self.etag:
            return None, etag
        packages = [PackageSummary(name=n, summary=f"the {n} tool", latest="1.0") for n in self.names]
        return CatalogResponse(packages=packages), self.etag


def test_an_unchanged_catalog_is_not_downloaded_again(tmp_path: Path) -> None:
    cache = CatalogCache(tmp_path / "catalog.sqlite")
    farm = FakeFarm(["zlib", "zstd"], etag='"v1"')
    first = update_catalog(farm, cache, "http://farm-a")
    second = update_catalog(farm, cache, "http://farm-a")
    assert (first.changed, first.packages) == (True, 2)
    assert (second.changed, second.packages) == (False, 2)
    assert farm.asked_with == [None, '"v1"']


def test_another_farm_gets_no_etag_and_replaces_the_whole_catalog(tmp_path: Path) -> None:
    cache = CatalogCache(tmp_path / "catalog.sqlite")
    update_catalog(FakeFarm(["zlib", "zstd"], etag='"same"'), cache, "http://farm-a")
    other = FakeFarm(["hello"], etag='"same"')  # an equal ETag from another farm means nothing
    result = update_catalog(other, cache, "embedded")
    assert other.asked_with == [None]
    assert (result.changed, result.packages) == (True, 1)
    assert [e.name for e in cache.search("zlib")] == []
    assert [e.name for e in cache.search("hello")] == ["hello"]


def test_search_ranks_exact_name_then_prefix_then_summary(tmp_path: Path) -> None:
    cache = CatalogCache(tmp_path / "catalog.sqlite")
    update_catalog(FakeFarm(["zlibx", "zlib", "pigz"], etag='"v"'), cache, "embedded")
    cache_names = [e.name for e in cache.search("zlib")]
    assert cache_names == ["zlib", "zlibx"]


def test_search_ranks_exact_prefix_substring_then_summary_words(tmp_path: Path) -> None:
    """"cbor" finds libcbor (a substring of its name), after the names that start with it, before summary hits;
    name order within a tier."""
    cache = CatalogCache(tmp_path / "catalog.sqlite")
    entries = [
        CatalogEntry("libcbor-tools", "tools around the library", "1.0"),
        CatalogEntry("libcbor", "library for the CBOR format", "0.8.0"),
        CatalogEntry("cbor2", "a python codec", "5.0"),
        CatalogEntry("cbor", "the exact one", "1.0"),
        CatalogEntry("cborg-longer", "a prefix with a longer name", "1.0"),
        CatalogEntry("tinycbor", "a small one", "0.6"),
        CatalogEntry("jsonish", "converts between JSON and CBOR", "2.0"),
        CatalogEntry("zlib", "compression", "1.3"),
    ]
    cache.replace(entries, '"v"', "embedded")
    names = [e.name for e in cache.search("cbor")]
    assert names == ["cbor", "cbor2", "cborg-longer", "libcbor", "libcbor-tools", "tinycbor", "jsonish"]
    assert [e.name for e in cache.search("CBOR", limit=3)] == ["cbor", "cbor2", "cborg-longer"]
    assert [e.name for e in cache.search("xyz")] == []
    assert [e.name for e in cache.search("%")] == [], "LIKE's wildcards in the term are literal"


def test_search_stays_fast_on_a_debian_sized_catalog(tmp_path: Path) -> None:
    """34,000 entries: the substring tier scans every name; a query stays well under the 50 ms of a CLI's budget."""
    import time

    cache = CatalogCache(tmp_path / "catalog.sqlite")
    cache.replace(
        (CatalogEntry(f"pkg{i:05d}-{'lib' if i % 7 else 'tool'}", f"summary number {i}", "1.0") for i in range(34_000)),
        '"v"',
        "embedded",
    )
    cache.search("tool")  # warm the page cache
    started = time.perf_counter()
    found = cache.search("tool", limit=50)
    elapsed = time.perf_counter() - started
    assert len(found) == 50 and all(e.name.endswith("-tool") for e in found)
    assert elapsed < 0.05, f"search took {elapsed * 1000:.1f} ms"
