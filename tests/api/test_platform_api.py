"""The platform and the catalog snapshot through the real app (FastAPI over the embedded SQLite adapters): clients
stating different platforms get different builds, an unservable one a 422 naming the farm's platforms, and
/v1/catalog serves the stored snapshot with an ETag of its bytes."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pkgc.client.farm_client import FarmClient
from pkgc.core.buildspec import BuildSpec
from pkgc.core.errors import UsageError
from pkgc.core.platform import Platform, detect_cpu_levels, detect_platform
from pkgc.core.protocol import CatalogResponse, DebianCatalogState
from pkgc.core.wire import ClientPlatform, PackageRequestModel
from pkgc.core.wire_schema import encode
from pkgc.farm.api import create_app
from pkgc.farm.embedded import build_service, publish_recipes
from pkgc.farm.paths import FarmPaths
from pkgc.farm.service import FarmService

HERE = detect_platform()
# A second build platform of another architecture: what a farm with workers of two kinds builds for.
OTHER = Platform(HERE.os, "aarch64" if HERE.arch != "aarch64" else "x86_64", HERE.libc, HERE.libc_version)


class CountingCatalog:
    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.scans = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def list_packages(self) -> list[tuple[str, str, str]]:
        self.scans += 1
        return self.inner.list_packages()  # type: ignore[no-any-return]


@pytest.fixture
def service(tmp_path: Path) -> FarmService:
    service = build_service(FarmPaths(tmp_path))
    service.build_platforms = (OTHER,)
    publish_recipes(service)
    service.catalog = CountingCatalog(service.catalog)
    return service


@pytest.fixture
def http(service: FarmService) -> Iterator[TestClient]:
    with TestClient(create_app(service), raise_server_exceptions=False) as test_client:
        yield test_client


def client_platform(platform: Platform) -> ClientPlatform:
    levels = (
        detect_cpu_levels(platform.arch)
        if platform == HERE
        else ["armv8-a" if platform.arch == "aarch64" else "x86-64"]
    )
    return ClientPlatform(**platform.as_dict(), cpu_levels=list(levels))


def farm_client(http: TestClient, platform: Platform) -> FarmClient:
    return FarmClient(str(http.base_url), client=http, platform=client_platform(platform))


def test_two_clients_on_two_platforms_get_their_own_builds(service: FarmService, http: TestClient) -> None:
    package = [PackageRequestModel(name="pigz")]
    mine = farm_client(http, HERE).resolve(package)
    theirs = farm_client(http, OTHER).resolve(package)
    assert {b.key for b in mine.builds}.isdisjoint({b.key for b in theirs.builds})
    for answer, platform in ((mine, HERE), (theirs, OTHER)):
        for build in answer.builds:
            record = service.builds.get(build.key)
            assert record is not None
            assert BuildSpec.from_json(record.spec).platform == platform
    # An old client (no platform in its request) is served the default build platform: this machine's.
    legacy = http.post("/v1/resolve", json={"packages": [{"name": "pigz"}]})
    assert legacy.status_code == 200
    assert legacy.json()["requested"] == mine.requested


def test_an_unservable_platform_is_a_422_naming_the_build_platforms(http: TestClient, service: FarmService) -> None:
    stranger = Platform(HERE.os, HERE.arch, "musl" if HERE.libc != "musl" else "glibc", "1.2")
    body = {"packages": [{"name": "hello"}], "platform": encode(client_platform(stranger))}
    response = http.post("/v1/resolve", json=body)
    assert response.status_code == 422
    error = response.json()
    assert error["error"] == "unsupported_platform"
    assert str(HERE) in error["reason"] and str(OTHER) in error["reason"] and str(stranger) in error["reason"]
    with pytest.raises(UsageError, match="builds for"):
        farm_client(http, stranger).resolve([PackageRequestModel(name="hello")])
    assert service.builds.builds_of("hello") == []


@pytest.mark.parametrize(
    "platform",
    [
        {"os": "linux", "arch": "x86_64", "libc": "glibc", "libc_version": "2.36"},  # no cpu_levels
        {"os": "linux", "arch": "../x", "libc": "glibc", "libc_version": "2.36", "cpu_levels": ["x86-64"]},
        {"os": "linux", "arch": "x86_64", "libc": "glibc", "libc_version": "2.x", "cpu_levels": ["x86-64"]},
        "linux-x86_64-glibc-2.36",
    ],
)
def test_a_malformed_platform_is_a_422(http: TestClient, platform: object) -> None:
    response = http.post("/v1/resolve", json={"packages": [{"name": "hello"}], "platform": platform})
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"
    assert response.json()["reason"].startswith("platform")


def test_a_cpu_target_beyond_the_client_is_a_422(http: TestClient) -> None:
    if HERE.arch != "x86_64":
        pytest.skip("the farm's default platform is not x86_64 here")
    body = {
        "packages": [{"name": "hello", "options": {"cpu": "x86-64-v4"}}],
        "platform": {**HERE.as_dict(), "cpu_levels": ["x86-64"]},
    }
    response = http.post("/v1/resolve", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "unsupported_platform"
    assert "cpu=x86-64-v4" in response.json()["reason"]


def test_health_names_the_build_platforms(http: TestClient) -> None:
    health = http.get("/v1/health").json()
    assert health["platform"] == str(HERE)
    assert health["platforms"] == [str(HERE), str(OTHER)]


def test_details_show_the_cpu_targets_of_the_client_architecture(http: TestClient) -> None:
    details = farm_client(http, OTHER).details("hello")
    cpus = {o.name: o.values for o in details.global_options}["cpu"]
    assert cpus[0] == ("armv8-a" if OTHER.arch == "aarch64" else "x86-64")
    response = http.get("/v1/packages/hello", params={"platform": "bogus"})
    assert response.status_code == 422 and "invalid platform" in response.json()["reason"]


def test_the_catalog_is_the_stored_snapshot_with_an_etag_of_its_bytes(http: TestClient, service: FarmService) -> None:
    stored = service.catalog.read_snapshot()
    assert stored is not None
    first = http.get("/v1/catalog")  # not asked for the Debian catalog's state (an older client): the bytes as stored
    assert first.status_code == 200 and first.content == stored
    assert first.headers["ETag"] == '"' + hashlib.sha256(stored).hexdigest()[:32] + '"'
    again = http.get("/v1/catalog", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304
    for _ in range(20):
        assert http.get("/v1/packages", params={"q": "hello"}).json()["results"][0]["name"] == "hello"
    assert service.catalog.scans == 0, "no request scans the catalog"  # type: ignore[attr-defined]


def test_the_catalog_goes_gzipped_to_clients_that_accept_it(http: TestClient, service: FarmService) -> None:
    """The whole Debian catalog is over a Lambda's 6 MB response limit as JSON and under 1 MB gzipped."""
    stored = service.catalog.read_snapshot()
    assert stored is not None and len(stored) > 1024
    zipped = http.get("/v1/catalog", headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip" and zipped.content == stored  # httpx undid the gzip
    assert zipped.headers["vary"] == "Accept-Encoding"
    assert int(zipped.headers["content-length"]) < len(stored) / 2, "it is smaller on the wire"
    for refused in ("identity", "gzip;q=0", "br", "deflate, gzip;q=0"):
        plain = http.get("/v1/catalog", headers={"Accept-Encoding": refused})
        assert "content-encoding" not in plain.headers and plain.content == stored, refused
    assert zipped.headers["ETag"] == http.get("/v1/catalog", headers={"Accept-Encoding": "identity"}).headers["ETag"]
    client = farm_client(http, HERE)
    document, etag = client.catalog(None)
    assert document is not None and etag, "the client reads the gzipped answer"
    assert "hello" in [p.name for p in document.packages]


def test_the_embedded_catalog_carries_the_debian_catalogs_live_state(
    http: TestClient, service: FarmService, tmp_path: Path
) -> None:
    """The snapshot's bytes with the state spliced in; the ETag follows the state, so a client's copy does too."""
    stored = service.catalog.read_snapshot()
    assert stored is not None
    asked = {"debian": "1"}
    first = http.get("/v1/catalog", params=asked)
    assert first.status_code == 200
    assert first.content == stored[:-1] + b',"debian":{"state":"absent"}}'
    assert CatalogResponse.model_validate_json(first.content).debian == DebianCatalogState(state="absent")
    assert http.get("/v1/catalog", params=asked, headers={"If-None-Match": first.headers["ETag"]}).status_code == 304
    (tmp_path / "debian").mkdir()
    (tmp_path / "debian" / "update.json").write_text('{"state": "failed", "at": 1700000000, "error": "no network"}')
    changed = http.get("/v1/catalog", params=asked, headers={"If-None-Match": first.headers["ETag"]})
    assert changed.status_code == 200 and changed.headers["ETag"] != first.headers["ETag"]
    state = CatalogResponse.model_validate_json(changed.content).debian
    assert state == DebianCatalogState(state="failed", since=1700000000, error="no network")
