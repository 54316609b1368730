"""DNS rebinding: the embedded farm answers only requests that name a loopback host.

A web page can make a browser send requests to 127.0.0.1 under its own host name once its DNS answer changes to
loopback; the Host header then names the attacker's domain. The embedded farm refuses those (403 with the API's
JSON error body) and answers 127.0.0.1, localhost and [::1] with any port. The test runs the real app under a real
uvicorn on loopback and talks to it with httpx.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pkgc.farm.api import create_app
from pkgc.farm.embedded import build_service
from pkgc.farm.paths import FarmPaths
from tests.conftest import serve_asgi


@pytest.fixture
def embedded_url(tmp_path: Path) -> Iterator[str]:
    """The app as the embedded farm composes it: loopback hosts only."""
    yield from serve_asgi(create_app(build_service(FarmPaths(tmp_path)), loopback_only=True))


@pytest.fixture
def default_url(tmp_path: Path) -> Iterator[str]:
    """The app as other deployments compose it (behind a load balancer with its own host name)."""
    yield from serve_asgi(create_app(build_service(FarmPaths(tmp_path))))


FOREIGN_HOSTS = [
    "evil.example",
    "evil.example:8080",
    "localhost.evil.example",
    "127.0.0.1.nip.io",
    "localhost:80@evil.example",
    "[::1].evil.example",
    "localhost:http",
    "",
]

LOOPBACK_HOSTS = [
    "127.0.0.1",
    "127.0.0.1:{port}",
    "localhost",
    "localhost:{port}",
    "LocalHost:1",
    "[::1]",
    "[::1]:{port}",
]


@pytest.mark.parametrize("host", FOREIGN_HOSTS)
def test_a_foreign_host_header_is_refused_with_a_json_reason(embedded_url: str, host: str) -> None:
    with httpx.Client(base_url=embedded_url, timeout=10) as http:
        for method, path in [("GET", "/v1/health"), ("GET", "/v1/catalog"), ("POST", "/v1/resolve")]:
            response = http.request(method, path, headers={"Host": host}, json={"packages": [{"name": "hello"}]})
            assert response.status_code == 403, (host, path, response.text)
            body = response.json()
            assert body["error"] == "forbidden_host"
            assert "loopback" in body["reason"]


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
def test_loopback_host_names_with_any_port_are_served(embedded_url: str, host: str) -> None:
    port = embedded_url.rsplit(":", 1)[1]
    with httpx.Client(base_url=embedded_url, timeout=10) as http:
        response = http.get("/v1/health", headers={"Host": host.format(port=port)})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ok"


def test_other_deployments_do_not_check_the_host(default_url: str) -> None:
    with httpx.Client(base_url=default_url, timeout=10) as http:
        response = http.get("/v1/health", headers={"Host": "farm.example"})
    assert response.status_code == 200, response.text
