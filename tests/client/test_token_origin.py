"""The bearer token goes to the farm API's origin only: never to a CDN or a presigned storage URL that an answer
names. Two real loopback servers, one the API and one "the CDN", record the Authorization header they receive."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pkgc.client.farm_client import FarmClient, http_client

BODY = b"artifact bytes from somewhere"


class Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[tuple[str, str | None]]

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers.get("Authorization")))
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)


def _server() -> tuple[http.server.ThreadingHTTPServer, list[tuple[str, str | None]]]:
    seen: list[tuple[str, str | None]] = []
    handler = type("Handler", (Recorder,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen


@pytest.fixture
def servers() -> Iterator[tuple[str, list[tuple[str, str | None]], str, list[tuple[str, str | None]]]]:
    api, api_seen = _server()
    cdn, cdn_seen = _server()
    try:
        yield (
            f"http://127.0.0.1:{api.server_address[1]}/stage",
            api_seen,
            f"http://127.0.0.1:{cdn.server_address[1]}",
            cdn_seen,
        )
    finally:
        for server in (api, cdn):
            server.shutdown()
            server.server_close()


def test_the_token_reaches_the_api_only(
    servers: tuple[str, list[tuple[str, str | None]], str, list[tuple[str, str | None]]], tmp_path: Path
) -> None:
    api_url, api_seen, cdn_url, cdn_seen = servers
    farm = FarmClient(api_url, token="secret-token", client=http_client(tls=False))
    digest = hashlib.sha256(BODY).hexdigest()
    # A relative URL is the API's (resolved against the farm URL, its path kept); an absolute one is another party.
    farm.download("/v1/blobs/artifacts/x.tar.zst", tmp_path / "a", digest)
    farm.download(f"{cdn_url}/artifacts/x.tar.zst?X-Amz-Signature=abc", tmp_path / "b", digest)
    assert farm.build_log("k" * 64, f"{cdn_url}/logs/x.log") == BODY.decode()
    assert farm.build_log("k" * 64, "/v1/blobs/logs/x.log") == BODY.decode()
    farm.close()
    assert api_seen == [
        ("/stage/v1/blobs/artifacts/x.tar.zst", "Bearer secret-token"),
        ("/stage/v1/blobs/logs/x.log", "Bearer secret-token"),
    ]
    assert cdn_seen == [("/artifacts/x.tar.zst?X-Amz-Signature=abc", None), ("/logs/x.log", None)]


def test_another_port_on_the_same_host_is_another_origin(
    servers: tuple[str, list[tuple[str, str | None]], str, list[tuple[str, str | None]]], tmp_path: Path
) -> None:
    api_url, _, cdn_url, cdn_seen = servers
    farm = FarmClient(api_url, token="secret-token", client=http_client(tls=False))
    farm.download(f"{cdn_url}/x", tmp_path / "x", hashlib.sha256(BODY).hexdigest())
    farm.close()
    assert cdn_seen == [("/x", None)]
