#!/usr/bin/env python3
"""The embedded app's own time per cache-hit resolve, in one process, without sockets or a load generator.

    PYTHONPATH=<a pkgc tree> python bench/resolve_in_process.py FARM_HOME [PACKAGE]

`bench_farm_aws.py` runs it under each tree it compares (this commit and the baseline commit), on the farm home
each built its package in: the app (`create_app` over the embedded farm's service, as the supervisor makes it) is
called as ASGI with `POST /v1/resolve` 2,000 times in a row, five times; it prints the best and the median
microseconds per request as one JSON line. This is the figure least disturbed by other work on the machine, and
uses only what both trees have (`pkgc.farm.embedded.build_service`, `pkgc.farm.api.create_app`).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from pkgc.farm.api import create_app
from pkgc.farm.embedded import build_service
from pkgc.farm.paths import FarmPaths

CALLS = 2000
ROUNDS = 5


async def measure(home: Path, package: str) -> dict[str, float]:
    app = create_app(build_service(FarmPaths(home)), loopback_only=True)
    body = json.dumps({"packages": [{"name": package}]}).encode()
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/resolve",
        "raw_path": b"/v1/resolve",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }
    status: list[int] = []

    async def receive() -> MutableMapping[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    for _ in range(20):  # the first resolve plans and reads the store; the rest are cache hits
        await app(scope, receive, send)
    if set(status) != {200}:
        raise SystemExit(f"resolve answered {sorted(set(status))}")
    rounds = []
    for _ in range(ROUNDS):
        began = time.perf_counter()
        for _ in range(CALLS):
            await app(scope, receive, send)
        rounds.append((time.perf_counter() - began) / CALLS * 1e6)
    if set(status) != {200}:
        raise SystemExit(f"resolve answered {sorted(set(status))}")
    return {"best_us": min(rounds), "median_us": statistics.median(rounds)}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(measure(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "hello"))))
