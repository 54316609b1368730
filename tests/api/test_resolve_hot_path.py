"""The resolve hot path: cache hits are answered from memory, and never from a stale plan or a build not yet ready.

These run the real SQLite adapters; a counting wrapper around the build store shows which resolves touched it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pkgc.core.protocol import BuildStatus, PackageRequestModel, ResolveRequest
from pkgc.farm.api import create_app
from pkgc.farm.embedded import build_service, publish_recipes
from pkgc.farm.paths import FarmPaths
from pkgc.farm.ports import BuildStore
from pkgc.farm.service import FarmService
from pkgc.recipes import recipe_files


class CountingBuildStore:
    """Delegates to the real store and counts the calls, to see which resolves reached the store."""

    def __init__(self, inner: BuildStore) -> None:
        self.inner = inner
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if not callable(attribute):
            return attribute

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return attribute(*args, **kwargs)

        return counted


@pytest.fixture
def service(tmp_path: Path) -> FarmService:
    service = build_service(FarmPaths(tmp_path))
    publish_recipes(service)
    service.builds = CountingBuildStore(service.builds)  # type: ignore[assignment]
    return service


def request(name: str = "pigz", **options: str) -> ResolveRequest:
    return ResolveRequest(packages=[PackageRequestModel(name=name, options=dict(options))])


def make_ready(service: FarmService, key: str) -> None:
    """What a worker does: take the lease and finish the build as ready."""
    lease = service.builds.acquire_lease(key, "test-worker", now=1.0, ttl=60.0)
    assert lease is not None
    assert service.builds.finish(
        lease, 2.0, status=BuildStatus.READY, artifact="artifacts/x", sha256="0" * 64, size=1, log="logs/x"
    )


def store_calls(service: FarmService) -> int:
    return service.builds.calls  # type: ignore[attr-defined, no-any-return]


def test_ready_builds_are_answered_without_the_store(service: FarmService) -> None:
    first = service.resolve(request())
    assert service.resolve_from_memory(request()) is None, "queued builds are never answered from memory"
    for build in first.builds:
        make_ready(service, build.key)
    warm = service.resolve(request())  # learns that they are ready
    assert {b.status for b in warm.builds} == {BuildStatus.READY}
    before = store_calls(service)
    again = service.resolve(request())
    from_memory = service.resolve_from_memory(request())
    assert store_calls(service) == before, "a cache-hit resolve must not reach the build store"
    assert again == warm and from_memory == warm


def test_a_build_in_progress_is_read_from_the_store_every_time(service: FarmService) -> None:
    service.resolve(request())
    before = store_calls(service)
    service.resolve(request())
    assert store_calls(service) > before, "the status of a build in progress comes from the store"


def test_a_changed_recipe_gives_a_new_plan(service: FarmService, tmp_path: Path) -> None:
    service.recipe_ttl = 0.0  # see every publication at once, as after the TTL
    old = service.resolve(request("hello"))
    text = next(p for p in recipe_files() if p.name == "hello.toml").read_text(encoding="utf-8")
    changed = text.replace('"--disable-dependency-tracking"]', '"--disable-dependency-tracking", "--disable-silent-rules"]')
    assert changed != text
    # Published by another process: a second service over the same database, as another Lambda container would be.
    other = build_service(FarmPaths(tmp_path))
    other.publish_recipe(changed, source="hello.toml")
    new = service.resolve(request("hello"))
    assert new.requested != old.requested, "a plan made from the old recipe must not be served"
    assert service.resolve_from_memory(request("hello")) is None


def test_other_options_are_another_plan(service: FarmService) -> None:
    plain = service.resolve(request("hello"))
    fast = service.resolve(request("hello", opt="O3"))
    assert plain.requested != fast.requested


def test_the_api_answers_cache_hits_like_the_service(service: FarmService) -> None:
    for build in service.resolve(request()).builds:
        make_ready(service, build.key)
    expected = service.resolve(request()).model_dump(mode="json")
    with TestClient(create_app(service)) as client:
        for _ in range(3):
            response = client.post("/v1/resolve", json={"packages": [{"name": "pigz"}]})
            assert response.status_code == 200
            assert response.json() == expected
