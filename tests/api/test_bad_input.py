"""Bad input to the farm API: always a 4xx with a JSON reason, never a 500, and nothing stored."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from pkgc.farm.adapters.local import builds_table, jobs_table
from pkgc.farm.api import MAX_BODY_BYTES, create_app
from pkgc.farm.embedded import build_service, publish_recipes
from pkgc.farm.paths import FarmPaths
from pkgc.farm.service import FarmService


@pytest.fixture
def service(tmp_path: Path) -> FarmService:
    service = build_service(FarmPaths(tmp_path))
    publish_recipes(service)
    return service


@pytest.fixture
def client(service: FarmService) -> Iterator[TestClient]:
    with TestClient(create_app(service), raise_server_exceptions=False) as test_client:
        yield test_client


def stored_rows(service: FarmService) -> tuple[int, int]:
    engine = service.builds._engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        builds = conn.execute(select(func.count()).select_from(builds_table)).scalar_one()
        jobs = conn.execute(select(func.count()).select_from(jobs_table)).scalar_one()
    return builds, jobs


def resolve_body(name: str = "hello", **fields: object) -> dict[str, object]:
    return {"packages": [{"name": name, **fields}]}


BAD_RESOLVES = [
    pytest.param(resolve_body("nosuchpackage"), 404, "unknown package", id="unknown-package"),
    pytest.param(resolve_body(version="9.99"), 404, "no version 9.99", id="unknown-version"),
    pytest.param(resolve_body(options={"frobnicate": "yes"}), 422, "unknown option 'frobnicate'", id="unknown-option"),
    pytest.param(resolve_body(options={"opt": "O9"}), 422, "allowed: O0, O1, O2, O3, Os", id="bad-value"),
    pytest.param(resolve_body(options={"cpu": "native"}), 422, "cpu", id="bad-cpu"),
    pytest.param(resolve_body(options={"opt": "-fplugin=/tmp/evil.so"}), 422, "opt", id="flag-injection"),
    pytest.param(resolve_body("../etc/passwd"), 422, "invalid package name", id="dotdot-name"),
    pytest.param(resolve_body("a/b"), 422, "invalid package name", id="slash-name"),
    pytest.param(resolve_body("Hello"), 422, "lower-case", id="upper-case-name"),
    pytest.param(resolve_body(version="../2.10"), 422, "invalid version", id="bad-version"),
    pytest.param({"packages": []}, 422, "packages", id="empty-list"),
    pytest.param({"packages": [{"name": "hello", "colour": "red"}]}, 422, "colour", id="extra-field"),
    pytest.param({"pkgs": []}, 422, "packages", id="missing-field"),
    pytest.param({"packages": [{"name": "x" * 200}]}, 422, "name", id="long-name"),
]


@pytest.mark.parametrize(("body", "status", "reason"), BAD_RESOLVES)
def test_bad_resolve_is_a_4xx_with_a_reason_and_stores_nothing(
    client: TestClient, service: FarmService, body: dict[str, object], status: int, reason: str
) -> None:
    response = client.post("/v1/resolve", json=body)
    assert response.status_code == status, response.text
    payload = response.json()
    assert set(payload) == {"error", "reason"}
    assert reason in payload["reason"]
    assert stored_rows(service) == (0, 0)


def test_malformed_json_is_422(client: TestClient, service: FarmService) -> None:
    response = client.post("/v1/resolve", content=b'{"packages": [', headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"
    assert stored_rows(service) == (0, 0)


def test_oversized_body_is_413_before_parsing(client: TestClient, service: FarmService) -> None:
    body = b'{"packages": [{"name": "hello"}], "pad": "' + b"x" * MAX_BODY_BYTES + b'"}'
    response = client.post("/v1/resolve", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert "bytes" in response.json()["reason"]
    assert stored_rows(service) == (0, 0)


def test_oversized_chunked_body_without_length_is_413(client: TestClient, service: FarmService) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"packages": [{"name": "hello"}], "pad": "'
        for _ in range(MAX_BODY_BYTES // 4096 + 2):
            yield b"x" * 4096
        yield b'"}'

    response = client.post("/v1/resolve", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert stored_rows(service) == (0, 0)


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v1/packages/nosuch", 404),
        ("/v1/packages/..%2F..%2Fetc", 404),
        ("/v1/packages/UPPER", 422),
        ("/v1/builds/not-a-key", 422),
        ("/v1/builds/" + "a" * 64, 404),
        ("/v1/builds/" + "a" * 64 + "/log", 404),
        ("/v1/artifacts/" + "a" * 64 + ".tar.zst", 404),
        ("/v1/artifacts/..%2Ffarm.db", 404),
        ("/v1/nothing-here", 404),
    ],
)
def test_bad_paths_are_4xx_json(client: TestClient, path: str, status: int) -> None:
    response = client.get(path)
    assert response.status_code == status, response.text
    assert "reason" in response.json()


def test_wait_validates_its_keys(client: TestClient, service: FarmService) -> None:
    assert client.post("/v1/wait", json={"keys": ["zz"]}).status_code == 422
    assert client.post("/v1/wait", json={"keys": ["a" * 64] * 101}).status_code == 422
    assert client.post("/v1/wait", json={"keys": ["a" * 64], "timeout": 999}).status_code == 422
    assert client.post("/v1/wait", json={"keys": ["a" * 64], "timeout": 0}).status_code == 404
    assert stored_rows(service) == (0, 0)


def test_good_resolve_creates_one_build_per_key_and_one_job(client: TestClient, service: FarmService) -> None:
    first = client.post("/v1/resolve", json=resolve_body("pigz"))
    again = client.post("/v1/resolve", json=resolve_body("pigz"))
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    names = [b["name"] for b in first.json()["builds"]]
    assert names == ["zlib", "pigz"], "dependencies come first"
    # One job, for zlib: pigz waits for it as a waiter (its job is sent when zlib finishes), not in the queue.
    assert stored_rows(service) == (2, 1)
    zlib, pigz = (b["key"] for b in first.json()["builds"])
    stored = service.builds.get(zlib)
    assert stored is not None and stored.waiters == (pigz,)


def test_search_and_details(client: TestClient) -> None:
    results = client.get("/v1/packages", params={"q": "z"}).json()["results"]
    assert results[0]["name"] == "zlib" or results[0]["name"].startswith("z")
    exact = client.get("/v1/packages", params={"q": "hello"}).json()["results"]
    assert exact[0]["name"] == "hello"
    details = client.get("/v1/packages/hello").json()
    assert details["versions"] == ["2.10"]
    assert [v["name"] for v in details["variants"]] == ["nls"]
    assert {o["name"] for o in details["global_options"]} == {"opt", "cpu", "debug", "lto"}
