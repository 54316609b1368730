"""`update`, `search` and `info`: the catalog, synced from the farm and searched offline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pkgc.core.errors import NotFound, UsageError
from pkgc.core.names import validate_name
from pkgc.localdb.catalog import CatalogCache, CatalogEntry


@dataclass(frozen=True)
class UpdateResult:
    changed: bool
    packages: int


def update_catalog(farm: Any, cache: CatalogCache, source: str) -> UpdateResult:
    """Download the catalog only if it changed since the last update (ETag) from the same farm (`source`).

    After the user points pkgc at another farm, the cached catalog is that of the old one: fetch the new one whole.
    """
    document, etag = farm.catalog(cache.etag(source))
    if document is None:
        return UpdateResult(False, cache.count())
    entries = [CatalogEntry(p.name, p.summary, p.latest) for p in document.packages]
    return UpdateResult(True, cache.replace(entries, etag, source))


def search_catalog(cache: CatalogCache, term: str, limit: int) -> list[CatalogEntry]:
    if not term.strip():
        raise UsageError("give a search term")
    if not cache.exists():
        raise NotFound("no local catalog yet", hint="run 'pkgc update' first")
    return cache.search(term, limit)


def package_info(farm: Any, store: Any, name: str) -> dict[str, Any]:
    """Versions, options and their defaults, dependencies, the farm's builds, and what is installed here."""
    validate_name(name)
    details = farm.details(name)
    builds = farm.builds_of(name)
    installed = store.get(name)
    return {
        **details.model_dump(mode="json"),
        "builds": [
            {"version": b.version, "status": b.status.value, "options": b.options, "key": b.key} for b in builds
        ],
        "installed": installed.as_json() if installed else None,
    }
