"""The embedded API serves the blobs its blob store names (`url_for`): validated names only, immutable caching for
content-addressed blobs, nothing outside the blob directory; a ready build's URLs point there."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from pkgc.farm.api import create_app
from pkgc.farm.bootstrap import FarmConfig, blob_files, farm_service, open_ports


@pytest.fixture
def setup(tmp_path: Path) -> tuple[TestClient, object, Path]:
    config = FarmConfig.local(tmp_path / "farm")
    ports = open_ports(config)
    app = create_app(farm_service(config, ports=ports), blob_file=blob_files(ports.blobs))
    return TestClient(app), ports.blobs, tmp_path


def test_a_content_blob_is_served_as_immutable(setup: tuple[TestClient, object, Path]) -> None:
    client, blobs, tmp_path = setup
    source = tmp_path / "artifact"
    source.write_bytes(b"artifact bytes")
    name = blobs.put_content("artifacts", source)  # type: ignore[attr-defined]
    url = blobs.url_for(name)  # type: ignore[attr-defined]
    assert url == f"/v1/blobs/{name}"
    response = client.get(url)
    assert response.status_code == 200 and response.content == b"artifact bytes"
    assert "immutable" in response.headers["cache-control"]
    assert name.endswith(f"/{response.headers['x-checksum-sha256']}.tar.zst")
    partial = client.get(url, headers={"Range": "bytes=9-"})
    assert partial.status_code == 206 and partial.content == b"bytes", "downloads resume"
    blobs.put_named("catalog/snapshot.json", b"[]")  # type: ignore[attr-defined]
    named = client.get("/v1/blobs/catalog/snapshot.json")
    assert named.status_code == 200 and "immutable" not in named.headers["cache-control"]


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v1/blobs/artifacts/sha256/ab/" + "ab" * 32 + ".tar.zst", 404),
        ("/v1/blobs/..%2Ffarm.db", 422),
        ("/v1/blobs/.incoming/x.tmp", 422),
        ("/v1/blobs/logs/%2e%2e/%2e%2e/farm.db", 422),
        ("/v1/blobs/" + "a/" * 20 + "b", 422),
    ],
)
def test_bad_or_missing_blob_names_get_a_json_reason(
    setup: tuple[TestClient, object, Path], path: str, status: int
) -> None:
    client, _, tmp_path = setup
    (tmp_path / "farm" / "farm.db").touch()
    response = client.get(path)
    assert response.status_code == status, response.text
    assert response.json()["reason"]


def test_without_a_blob_directory_there_is_no_blob_route(tmp_path: Path) -> None:
    client = TestClient(create_app(farm_service(FarmConfig.local(tmp_path))))
    assert client.get("/v1/blobs/catalog/snapshot.json").status_code == 404
