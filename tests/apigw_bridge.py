"""A loopback stand-in for API Gateway (REST API, Lambda proxy integration) in front of `api_handler`.

Each HTTP request becomes an API Gateway v1 proxy event as the `{proxy+}` resource of infra/api.yaml delivers it
(path without the stage, single- and multi-value headers and query parameters, the body as text or base64), the
handler is called in this process (as Lambda calls it in a container) and its proxy response is written back.
Like API Gateway, it gives up on an invocation after 29 s with a 504; like Lambda, it refuses a response larger than
6 MB (API Gateway answers 502); like API Gateway, it turns a base64 response body back into bytes only when the
request's first Accept type matches the API's BinaryMediaTypes (read from infra/api.yaml), and otherwise passes the
base64 text on. Loopback only.

    python -m tests.apigw_bridge          # prints the URL (http://127.0.0.1:PORT/farm) on stdout, serves until killed

The Lambda's configuration comes from the environment, as in a deployment (PKGC_FARM_BACKEND=aws, PKGC_AWS_*).
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import fnmatch
import http.server
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

INTEGRATION_TIMEOUT = 29.0  # API Gateway's REST integration timeout
STAGE = "farm"
TEXT_TYPES = ("application/json", "text/", "application/x-www-form-urlencoded")
LAMBDA_RESPONSE_LIMIT = 6 * 1024 * 1024  # a synchronous invocation's response payload, in bytes


def binary_media_types(template: Path = Path(__file__).resolve().parents[1] / "infra" / "api.yaml") -> list[str]:
    """The REST API's BinaryMediaTypes as infra/api.yaml deploys them."""
    found = re.search(r"^\s*BinaryMediaTypes:\s*\[(.*)\]\s*$", template.read_text(), re.M)
    return [item.strip().strip("\"'") for item in found.group(1).split(",")] if found else []


def returns_binary(accept: str, types: list[str]) -> bool:
    """API Gateway's rule for a proxy response marked base64: binary when the request's first Accept type matches
    a binary media type (`*` wildcards allowed on either side)."""
    first = (accept.split(",")[0].split(";")[0].strip().lower()) or "*/*"
    return matches_binary(first, types)


def matches_binary(media_type: str, types: list[str]) -> bool:
    """Whether a media type is one of the API's binary types (a type there may have `*` wildcards: `*/*` is all)."""
    value = media_type.split(";")[0].strip().lower()
    return any(fnmatch.fnmatchcase(value, t.lower()) for t in types)


Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def rest_event(
    method: str, target: str, headers: dict[str, list[str]], body: bytes, binary_types: list[str] | None = None
) -> dict[str, Any]:
    """The API Gateway REST proxy event of one request (`target`: the path under the stage, with its query). With
    `binary_types` (the API's BinaryMediaTypes) a body is base64 exactly when its Content-Type is one of them, as
    API Gateway delivers it; without, when it is not text."""
    parts = urlsplit(target)
    path = parts.path or "/"
    query: dict[str, list[str]] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        query.setdefault(name, []).append(value)
    content_type = next(iter(headers.get("content-type", [])), "")
    if binary_types is not None:
        textual = not body or not matches_binary(content_type or "application/json", binary_types)
    else:
        textual = not body or content_type.startswith(TEXT_TYPES)
    return {
        "resource": "/{proxy+}" if path != "/" else "/",
        "path": path,
        "httpMethod": method,
        "headers": {name: values[-1] for name, values in headers.items()},
        "multiValueHeaders": headers,
        "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": {"proxy": path.lstrip("/")} if path != "/" else None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            "path": f"/{STAGE}{path}",
            "stage": STAGE,
            "requestId": str(uuid.uuid4()),
            "requestTimeEpoch": int(time.time() * 1000),
            "accountId": "123456789012",
            "apiId": "bridge",
            "protocol": "HTTP/1.1",
            "identity": {"sourceIp": "127.0.0.1", "userAgent": next(iter(headers.get("user-agent", [])), "")},
        },
        "body": (body.decode() if textual else base64.b64encode(body).decode()) if body else None,
        "isBase64Encoded": not textual,
    }


def invoke(handler: Handler, event: dict[str, Any]) -> dict[str, Any]:
    """Call the handler as the Lambda runtime does: on a thread with an event loop of its own (Mangum uses the
    current thread's loop), closed afterwards."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return handler(event, None)
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        asyncio.set_event_loop(None)
        loop.close()


class Bridge(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, handler: Handler, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _RequestHandler)
        self.handler = handler
        self.invocations = 0
        self.binary_types = binary_media_types()
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=64, thread_name_prefix="lambda")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{STAGE}"

    def start(self) -> Bridge:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def call(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """The proxy response, or None after the integration timeout (API Gateway answers 504 then)."""
        self.invocations += 1
        future = self._pool.submit(invoke, self.handler, event)
        try:
            return future.result(timeout=INTEGRATION_TIMEOUT)
        except concurrent.futures.TimeoutError:
            return None


class _RequestHandler(http.server.BaseHTTPRequestHandler):
    server: Bridge
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        prefix = f"/{STAGE}"
        if not (self.path == prefix or self.path.startswith(prefix + "/") or self.path.startswith(prefix + "?")):
            self._write(403, {"content-type": ["application/json"]}, b'{"message":"Forbidden"}')
            return
        headers: dict[str, list[str]] = {}
        for name, value in self.headers.items():
            headers.setdefault(name.lower(), []).append(value)
        target = self.path[len(prefix) :] or "/"
        response = self.server.call(rest_event(self.command, target, headers, body, self.server.binary_types))
        if response is None:
            self._write(504, {"content-type": ["application/json"]}, b'{"message": "Endpoint request timed out"}')
            return
        out: dict[str, list[str]] = {k.lower(): [v] for k, v in (response.get("headers") or {}).items()}
        for name, values in (response.get("multiValueHeaders") or {}).items():
            out[name.lower()] = list(values)
        if len(json.dumps(response).encode()) > LAMBDA_RESPONSE_LIMIT:
            self._write(502, {"content-type": ["application/json"]}, b'{"message": "Internal server error"}')
            return
        raw = response.get("body") or ""
        binary = response.get("isBase64Encoded") and returns_binary(self.headers.get("accept", ""), self.server.binary_types)
        data = base64.b64decode(raw) if binary else raw.encode()
        self._write(int(response["statusCode"]), out, data)

    def _write(self, status: int, headers: dict[str, list[str]], data: bytes) -> None:
        self.send_response(status)
        for name, values in headers.items():
            if name not in ("content-length", "connection", "transfer-encoding"):
                for value in values:
                    self.send_header(name, value)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle


def main() -> None:
    from pkgc.farm.aws_lambda import api_handler

    bridge = Bridge(api_handler)
    print(bridge.url, flush=True)
    bridge.serve_forever()  # until the test kills the process


if __name__ == "__main__":
    main()
