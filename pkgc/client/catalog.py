"""`update`, `search`, `info` and `outdated`: the catalog, synced from the farm and read offline.

`search`, `info` and `outdated` sync the copy themselves when it is missing, from another farm, or older than
`catalog_max_age` (one conditional request with the stored ETag; a 304 only refreshes the time), so a newcomer's
`pkgc search` right after an install just works. When the farm cannot be reached they answer from the last copy with
a warning that it may be stale; with no copy at all that is an error.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pkgc.core.errors import FarmUnavailable, NotFound, UsageError
from pkgc.core.names import validate_name
from pkgc.core.versions import Version
from pkgc.localdb.catalog import CatalogCache, CatalogEntry


@dataclass(frozen=True)
class UpdateResult:
    changed: bool
    packages: int


def update_catalog(farm: Any, cache: CatalogCache, source: str) -> UpdateResult:
    """Download the catalog only if it changed since the last update (ETag) from the same farm (`source`).

    After the user points pkgc at another farm, the cached catalog is that of the old one: fetch the new one whole.
    A 304 confirms the copy, so its time is refreshed (it counts as synced for `catalog_max_age`).
    """
    document, etag = farm.catalog(cache.etag(source))
    if document is None:
        cache.touch(source)
        return UpdateResult(False, cache.count())
    entries = [CatalogEntry(p.name, p.summary, p.latest) for p in document.packages]
    from pkgc.core.wire_schema import encode  # here: a search from a fresh copy needs none of the wire

    debian = None
    if document.debian is not None:  # the fields it sent (None: not sent)
        debian = {field: value for field, value in encode(document.debian).items() if value is not None}
    return UpdateResult(True, cache.replace(entries, etag, source, debian))


@dataclass(frozen=True)
class Freshness:
    """Whether the copy was confirmed current; `warning` (one line) when the farm could not be reached."""

    offline: bool = False
    warning: str | None = None


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{int(seconds)} s"
    if seconds < 2 * 3600:
        return f"{int(seconds // 60)} min"
    if seconds < 2 * 86400:
        return f"{int(seconds // 3600)} h"
    return f"{int(seconds // 86400)} days"


def stale_warning(cache: CatalogCache, now: float | None = None) -> str:
    synced = cache.last_synced()
    when = "at an unknown time" if synced is None else f"{_age(max(0.0, (now or time.time()) - synced))} ago"
    return f"the farm cannot be reached; the catalog may be stale (last synced {when}; 'pkgc update' refreshes it)"


def sync_if_stale(
    farm: Callable[[], Any], cache: CatalogCache, source: str, max_age: float, now: float | None = None
) -> Freshness:
    """Sync the copy when it is missing, from another farm than `source`, or older than `max_age` seconds.

    `farm` makes the farm client only when a sync is due: a search on a fresh copy imports no HTTP library.
    """
    current = time.time() if now is None else now
    synced = cache.synced_at(source)
    if synced is not None and 0 <= current - synced < max_age and not _debian_unsettled(cache):
        return Freshness()
    try:
        update_catalog(farm(), cache, source)
    except FarmUnavailable as exc:
        if not cache.has_copy():
            raise FarmUnavailable(f"no local catalog yet, and {exc.message}", hint=exc.hint) from None
        return Freshness(offline=True, warning=stale_warning(cache, current))
    return Freshness()


def _debian_unsettled(cache: CatalogCache) -> bool:
    """While the farm's Debian catalog loads, or after its load failed, the copy is asked again every time (one
    conditional request): the newcomer told "try again in a minute" must find the packages then, not after
    `catalog_max_age`; and after a failure, asking starts a stopped farm, whose start tries the load again."""
    state = cache.debian_state()
    return state is not None and state.get("state") in ("loading", "failed")


def debian_hint(state: Mapping[str, Any] | None, now: float | None = None) -> str | None:
    """What to tell a user whose search found nothing, from the farm's Debian catalog state: wait for it to load,
    or how to load it. None when it is loaded or the farm keeps no Debian catalog (nothing more to find there)."""
    if state is None:
        return None
    kind = state.get("state")
    since = state.get("since")
    if kind == "loading":
        ago = ""
        if isinstance(since, int | float):
            ago = f" (started {_age(max(0.0, (time.time() if now is None else now) - since))} ago)"
        return f"the farm's Debian catalog is loading{ago}; try again in a minute"
    if kind == "absent":
        return "the farm's Debian catalog is not loaded; 'pkgc farm catalog update' loads it"
    if kind == "failed":
        error = str(state.get("error") or "no reason recorded")
        return f"loading the farm's Debian catalog failed: {error}; 'pkgc farm catalog update' tries again"
    return None


def no_match(term: str, cache: CatalogCache) -> NotFound:
    """The one-line answer of a search that found nothing (exit 3, as `pkgc info` of an unknown package)."""
    return NotFound(f"no package matches '{term.strip()}'", hint=debian_hint(cache.debian_state()))


def check_term(term: str) -> None:
    if not term.strip():
        raise UsageError("give a search term")


def search_catalog(cache: CatalogCache, term: str, limit: int) -> list[CatalogEntry]:
    check_term(term)
    if not cache.exists():
        raise NotFound("no local catalog yet", hint="run 'pkgc update' first")
    return cache.search(term, limit)


def package_info(farm: Any, store: Any, name: str) -> dict[str, Any]:
    """Versions, options and their defaults, dependencies, the farm's builds, and what is installed here."""
    from pkgc.core.wire_schema import encode

    validate_name(name)
    details = farm.details(name)
    builds = farm.builds_of(name)
    installed = store.get(name)
    return {
        **encode(details),
        "builds": [
            {"version": b.version, "status": b.status.value, "options": b.options, "key": b.key} for b in builds
        ],
        "installed": installed.as_json() if installed else None,
    }


@dataclass(frozen=True)
class PackageInfo:
    """The farm's details, or (`offline`) what the catalog copy knows: name, summary, latest version."""

    details: dict[str, Any]
    offline: bool = False
    warning: str | None = None


def describe_package(
    farm: Callable[[], Any], cache: CatalogCache, store: Any, name: str, *, source: str, max_age: float
) -> PackageInfo:
    """`pkgc info`: ask the farm; when it cannot be reached, answer from the catalog copy with a warning."""
    validate_name(name)
    freshness = sync_if_stale(farm, cache, source, max_age)
    if not freshness.offline:
        try:
            return PackageInfo(package_info(farm(), store, name))
        except FarmUnavailable:
            if not cache.has_copy():
                raise
            freshness = Freshness(offline=True, warning=stale_warning(cache))
    entry = cache.get(name)
    if entry is None:
        raise NotFound(f"{name} is not in the local catalog", hint="the farm cannot be reached to ask it")
    installed = store.get(name)
    details = {
        "name": entry.name,
        "summary": entry.summary,
        "latest": entry.latest,
        "installed": installed.as_json() if installed else None,
        "offline": True,
    }
    return PackageInfo(details, offline=True, warning=freshness.warning)


@dataclass(frozen=True)
class OutdatedPackage:
    name: str
    installed: str
    newest: str
    pinned: str | None


@dataclass(frozen=True)
class OutdatedResult:
    packages: list[OutdatedPackage]
    warning: str | None = None


def find_outdated(
    farm: Callable[[], Any], cache: CatalogCache, store: Any, pins: Mapping[str, str], *, source: str, max_age: float
) -> OutdatedResult:
    """Installed packages whose newest version in the (synced) catalog is newer; nothing installed asks no farm."""
    installed = store.packages()
    if not installed:
        return OutdatedResult([])
    freshness = sync_if_stale(farm, cache, source, max_age)
    latest = cache.latest_versions()
    found = [
        OutdatedPackage(p.name, p.version, latest[p.name], pins.get(p.name))
        for p in installed
        if p.name in latest and Version(latest[p.name]) > Version(p.version)
    ]
    return OutdatedResult(found, freshness.warning)
