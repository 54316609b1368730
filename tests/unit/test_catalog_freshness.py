"""When search, info and outdated sync the catalog copy themselves, and when they answer from it offline."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pkgc.client.catalog import sync_if_stale, update_catalog
from pkgc.core.errors import FarmUnavailable
from pkgc.core.protocol import CatalogResponse, PackageSummary
from pkgc.localdb.catalog import CatalogCache


@dataclass
class Farm:
    """Answers like /v1/catalog (304 as None for the current ETag); `down` as a farm that cannot be reached."""

    etag: str = '"v1"'
    down: bool = False
    asked_with: list[str | None] = field(default_factory=list)

    def catalog(self, etag: str | None) -> tuple[CatalogResponse | None, str | None]:
        if self.down:
            raise FarmUnavailable("cannot reach the farm at http://127.0.0.1:9: connection refused")
        self.asked_with.append(etag)
        if etag == self.etag:
            return None, etag
        return CatalogResponse(packages=[PackageSummary(name="zlib", summary="compression", latest="1.3")]), self.etag


def test_a_young_copy_is_not_asked_for_an_old_one_is_with_its_etag(tmp_path: Path) -> None:
    cache, farm = CatalogCache(tmp_path / "catalog.sqlite"), Farm()
    assert not sync_if_stale(lambda: farm, cache, "embedded", max_age=60, now=1000.0).offline
    assert farm.asked_with == [None], "a missing copy is fetched whole"
    synced = cache.synced_at("embedded")
    assert synced is not None
    sync_if_stale(lambda: farm, cache, "embedded", max_age=60, now=synced + 59)
    assert farm.asked_with == [None]
    sync_if_stale(lambda: farm, cache, "embedded", max_age=60, now=synced + 61)
    assert farm.asked_with == [None, '"v1"']
    refreshed = cache.synced_at("embedded")
    assert refreshed is not None and refreshed >= synced, "a 304 refreshes the time"
    sync_if_stale(lambda: farm, cache, "embedded", max_age=0, now=refreshed)
    assert len(farm.asked_with) == 3, "max age 0: every command asks"
    sync_if_stale(lambda: farm, cache, "http://other-farm", max_age=3600)
    assert farm.asked_with[-1] is None, "another farm's copy is not current, whatever its age"


def test_offline_with_a_copy_warns_and_without_one_fails(tmp_path: Path) -> None:
    cache = CatalogCache(tmp_path / "catalog.sqlite")
    with pytest.raises(FarmUnavailable, match="no local catalog yet, and cannot reach the farm"):
        sync_if_stale(lambda: Farm(down=True), cache, "embedded", max_age=60)
    assert not cache.exists(), "a failed first sync leaves no empty copy behind"
    update_catalog(Farm(), cache, "embedded")
    freshness = sync_if_stale(lambda: Farm(down=True), cache, "embedded", max_age=0)
    assert freshness.offline and freshness.warning is not None
    assert "may be stale" in freshness.warning and "\n" not in freshness.warning
