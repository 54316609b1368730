#!/usr/bin/env python3
"""Benchmark the embedded farm's API under load: cache-hit resolves from 50 concurrent clients.

A real embedded farm (`pkgc farm up`, isolated HOME and PKGC_FARM_HOME in a temporary directory) builds hello once
from the prefetched source, so that every later resolve of hello is a cache hit; then `wrk` (Debian's package wrk,
a C load generator) drives the API on loopback:

1. baseline: `GET /v1/health` from 50 connections as fast as they go, the floor of the HTTP stack on this machine;
2. saturation: `POST /v1/resolve` of hello (and its dependency-free closure) from 50 connections as fast as they go;
3. paced: 50 connections, each sending its next resolve 90 ms after the previous answer (at most about 555
   requests/s offered), for the latency a client sees at the target rate.

Targets (issue 7, item 17): at least 500 resolves/s with 50 clients, and p99 under 50 ms. Both sides of the ratio are
measured in the same run. Beside each figure the script prints the CPU seconds the farm and the load generator
used: they share this machine's cores, so a busy load generator lowers the farm's figures.

    python bench/bench_farm_load.py              # 10 s per phase
    python bench/bench_farm_load.py --seconds 5
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from common import beside_python

from pkgc.worker.prefetch import seed_cache

TARGET_RPS = 500.0
TARGET_P99_MS = 50.0
CLIENTS = 50
PACE_MS = 90
INSTALL_TIMEOUT = 900


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Phase:
    name: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    farm_cpu: float
    wrk_cpu: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _latency_ms(text: str, percentile: str) -> float:
    match = re.search(rf"^\s*{percentile}%\s+([0-9.]+)(us|ms|s|m)\s*$", text, re.MULTILINE)
    if not match:
        raise RuntimeError(f"no {percentile}% latency in wrk's output:\n{text}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _process_cpu(pid: int) -> float:
    """User plus system CPU seconds of a process and its reaped children, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(value) for value in fields[11:15]) / ticks


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(name: str, url: str, script: Path | None, seconds: int, farm_pid: int) -> Phase:
    argv = ["wrk", "-t1", f"-c{CLIENTS}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    if script is not None:
        argv += ["-s", str(script)]
    farm_before, wrk_before = _process_cpu(farm_pid), _children_cpu()
    result = subprocess.run([*argv, url], capture_output=True, text=True, timeout=seconds + 60, check=True)
    farm_cpu, wrk_cpu = _process_cpu(farm_pid) - farm_before, _children_cpu() - wrk_before
    text = result.stdout
    done = re.search(r"(\d+) requests in ([0-9.]+)(ms|s|m)", text)
    if not done:
        raise RuntimeError(f"unexpected wrk output:\n{text}")
    elapsed = float(done.group(2)) * _UNITS[done.group(3)] / 1000.0
    errors = 0
    for pattern in (r"Non-2xx or 3xx responses: (\d+)", r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"):
        found = re.search(pattern, text)
        if found:
            errors += sum(int(group) for group in found.groups())
    return Phase(name, int(done.group(1)), elapsed, _latency_ms(text, "50"), _latency_ms(text, "99"), errors, farm_cpu, wrk_cpu)


def resolve_script(directory: Path, body: str, pace_ms: int | None) -> Path:
    """A wrk Lua script that POSTs the resolve body; with `pace_ms`, each connection waits that long between
    requests."""
    path = directory / (f"resolve-paced-{pace_ms}.lua" if pace_ms else "resolve.lua")
    lines = [
        'wrk.method = "POST"',
        f"wrk.body = {json.dumps(body)}",
        'wrk.headers["Content-Type"] = "application/json"',
    ]
    if pace_ms:
        lines.append(f"function delay() return {pace_ms} end")
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10, help="duration of each phase (default 10)")
    parser.add_argument("--package", default="hello", help="the package to build once and resolve (default hello)")
    parser.add_argument("--pkgc", default=beside_python("pkgc"), help="the pkgc command")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        log("wrk is not installed: apt-get install wrk")
        return 2
    if not args.pkgc:
        log("pkgc is not installed beside this Python nor on PATH")
        return 2
    root = Path(tempfile.mkdtemp(prefix="pkgc-bench-load-"))
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy") and not k.startswith("PKGC_")}
    env.update(
        HOME=str(root / "home"),
        XDG_DATA_HOME=str(root / "data"),
        XDG_CACHE_HOME=str(root / "cache"),
        XDG_CONFIG_HOME=str(root / "config"),
        PKGC_FARM_HOME=str(root / "farm"),
        PKGC_FETCH_LOOPBACK_ONLY="1",
        PKGC_DEBIAN_CATALOG_AUTOLOAD="0",  # no Debian catalog download: nothing leaves loopback
        NO_PROXY="127.0.0.1,localhost",
    )
    farm_home = root / "farm"
    try:
        seed_cache(farm_home / "sources", [args.package])
        log(f"building {args.package} once (farm start and a real compile)")
        started = time.monotonic()
        subprocess.run(
            [args.pkgc, "install", args.package, "--prefix", str(root / "prefix"), "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
            check=True,
        )
        log(f"built and installed in {time.monotonic() - started:.1f}s")
        state = json.loads((farm_home / "state.json").read_text())
        url, pid = str(state["url"]), int(state["pid"])
        body = json.dumps({"packages": [{"name": args.package}]})
        check = subprocess.run(
            ["curl", "-s", "-X", "POST", "-H", "Content-Type: application/json", "-d", body, f"{url}/v1/resolve"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        answer = json.loads(check.stdout)
        statuses = {b["name"]: b["status"] for b in answer["builds"]}
        if any(status != "ready" for status in statuses.values()):
            raise RuntimeError(f"the resolve is not a cache hit: {statuses}")
        phases = [
            run_wrk("health (baseline)", f"{url}/v1/health", None, args.seconds, pid),
            run_wrk("resolve, saturated", f"{url}/v1/resolve", resolve_script(root, body, None), args.seconds, pid),
            run_wrk(
                f"resolve, paced ({PACE_MS} ms)",
                f"{url}/v1/resolve",
                resolve_script(root, body, PACE_MS),
                args.seconds,
                pid,
            ),
        ]
    finally:
        subprocess.run([args.pkgc, "farm", "stop"], env=env, capture_output=True, timeout=60, check=False)
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)

    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; {CLIENTS} connections (wrk -t1)")
    print(f"{'phase':28} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'farm CPU s':>11} {'wrk CPU s':>10}")
    for phase in phases:
        print(
            f"{phase.name:28} {phase.rps:8.0f} {phase.p50_ms:8.1f} {phase.p99_ms:8.1f} {phase.errors:7d} "
            f"{phase.farm_cpu:11.2f} {phase.wrk_cpu:10.2f}"
        )
    health, saturated, paced = phases
    print(f"resolve/health throughput ratio: {saturated.rps / health.rps:.2f}x")
    rps_ok = saturated.rps >= TARGET_RPS
    p99_ok = paced.p99_ms < TARGET_P99_MS
    print(f"target >= {TARGET_RPS:.0f} resolves/s with {CLIENTS} clients: {saturated.rps:.0f} ({'pass' if rps_ok else 'MISS'})")
    print(
        f"target p99 < {TARGET_P99_MS:.0f} ms at {paced.rps:.0f} resolves/s from {CLIENTS} clients: "
        f"{paced.p99_ms:.1f} ms ({'pass' if p99_ok else 'MISS'})"
    )
    errors = sum(phase.errors for phase in phases)
    if errors:
        print(f"{errors} requests failed")
    return 0 if rps_ok and p99_ok and not errors else 1


if __name__ == "__main__":
    sys.exit(main())
