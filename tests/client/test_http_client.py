"""The client's HTTP client: a loopback farm is reached over plain http without any TLS context (OpenSSL's set-up
is about 2 ms of a 0.15 s install), through httpx's own request, error and response handling."""

from __future__ import annotations

import http.server
import socket
import ssl
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pkgc.client.farm_client import PlainHTTPTransport, http_client
from tests.loopback import serving


class Hello(http.server.BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        body = b'{"status": "ok"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server() -> Iterator[str]:
    with serving(Hello) as url:
        yield url


@pytest.fixture
def contexts_made(monkeypatch: pytest.MonkeyPatch) -> list[type]:
    """Every ssl.SSLContext made from here on (the class of each)."""
    made: list[type] = []
    original = ssl.SSLContext.__new__

    def counting(cls: type, *args: Any, **kwargs: Any) -> Any:
        made.append(cls)
        return original(cls, *args, **kwargs)  # type: ignore[call-arg]

    monkeypatch.setattr(ssl.SSLContext, "__new__", counting)
    return made


def test_a_loopback_farm_client_makes_no_tls_context_and_still_talks_http(
    server: str, contexts_made: list[type]
) -> None:
    client = http_client(tls=False)
    try:
        for host_url in (server, server.replace("127.0.0.1", "localhost")):
            response = client.get(f"{host_url}/v1/health")
            assert response.status_code == 200 and response.json() == {"status": "ok"}
    finally:
        client.close()
    assert contexts_made == []


def test_a_remote_farm_client_makes_one_verified_context_and_loopback_stays_plain(
    server: str, contexts_made: list[type]
) -> None:
    client = http_client(tls=True)
    try:
        assert client.get(f"{server}/v1/health").status_code == 200
    finally:
        client.close()
    assert len(contexts_made) == 1  # the certificate-checking one for https farms; none for the loopback mount


def test_the_installed_httpx_takes_the_plain_transport_and_its_errors_are_httpxs() -> None:
    """The fast path is the one tested above, and failures still arrive as httpx errors (which FarmClient maps)."""
    assert "_pool" in httpx.HTTPTransport.handle_request.__code__.co_names
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with httpx.Client(transport=PlainHTTPTransport()) as client, pytest.raises(httpx.ConnectError):
        client.get(f"http://127.0.0.1:{port}/")
