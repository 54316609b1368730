"""A loopback HTTP proxy in front of a real farm that breaks artifact downloads on demand.

A real farm never drops a connection half-way through a download or stalls in the middle of one, so the tests put
this real HTTP server between the client and the farm. Every request is forwarded to the farm; an artifact
download (`GET /v1/blobs/artifacts/...`) is answered with the farm's status and headers, and then, depending on `mode`:

- "pass":  the whole body;
- "drop":  the first `cut` bytes, then the connection is closed (a network error in the middle);
- "stall": the first `cut` bytes, then nothing for `stall_seconds` (a timeout in the middle), then close;
- "corrupt": the whole body at its full length, with `flip` bytes in the middle inverted (bad bytes that arrive
  intact as far as HTTP can tell: only the client's sha256 check can catch them).
"""

from __future__ import annotations

import http.server
import threading
import time
from dataclasses import dataclass, field

import httpx

_HOP_BY_HOP = {"connection", "transfer-encoding", "keep-alive", "content-encoding", "server", "date"}


def corrupted(payload: bytes, flip: int) -> bytes:
    """The same number of bytes, `flip` of them in the middle inverted."""
    middle = len(payload) // 2
    start = max(0, middle - flip // 2)
    damaged = bytearray(payload)
    for index in range(start, min(len(damaged), start + flip)):
        damaged[index] ^= 0xFF
    return bytes(damaged)


@dataclass
class FaultProxy:
    upstream: str
    mode: str = "pass"
    cut: int = 0
    stall_seconds: float = 10.0
    flip: int = 16
    artifact_requests: list[str] = field(default_factory=list)  # the Range header of each download ("" for none)
    _server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FaultProxy:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                with httpx.Client(base_url=proxy.upstream, timeout=60, trust_env=False) as client:
                    answer = client.request(self.command, self.path, content=body, headers=headers)
                payload = answer.content
                is_artifact = self.command == "GET" and self.path.startswith(("/v1/artifacts/", "/v1/blobs/artifacts/"))
                if is_artifact:
                    proxy.artifact_requests.append(self.headers.get("Range", ""))
                self.send_response(answer.status_code)
                for key, value in answer.headers.items():
                    if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length":
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Connection", "close")
                self.end_headers()
                if not is_artifact or proxy.mode == "pass" or answer.status_code >= 400:
                    self.wfile.write(payload)
                    return
                if proxy.mode == "corrupt":
                    self.wfile.write(corrupted(payload, proxy.flip))
                    return
                self.wfile.write(payload[: proxy.cut])
                self.wfile.flush()
                if proxy.mode == "stall":
                    time.sleep(proxy.stall_seconds)
                self.close_connection = True

            do_GET = do_POST = do_HEAD = _forward

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
