#!/usr/bin/env python3
"""Benchmark the client's everyday commands against the tools people compare it with, measured in one run.

1. `pkgc --version` against `pip --version`                       target: pkgc at most half of pip's time
2. `pkgc list` with 200 installed packages against `pip list`      target: pkgc at most half of pip's time
3. `pkgc search TERM` over a 30,000-package catalog against `apt-cache search TERM` over Debian's lists
                                                                   target: pkgc faster than apt-cache

The 200 packages and the 30,000-entry catalog are made by this script (records written through pkgc's own stores,
summaries drawn from a fixed vocabulary); nothing touches the network. Medians of N runs, alternating order.

    python bench/bench_client.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import beside_python

from pkgc.localdb.catalog import CatalogCache, CatalogEntry
from pkgc.localdb.store import InstalledFile, InstalledPackage, InstalledStore

WORDS = [
    "compression",
    "library",
    "fast",
    "parser",
    "json",
    "xml",
    "http",
    "client",
    "server",
    "terminal",
    "editor",
    "graphics",
    "audio",
    "video",
    "image",
    "network",
    "crypto",
    "database",
    "sqlite",
    "python",
    "rust",
    "tool",
    "utility",
    "format",
    "archive",
    "tar",
    "gzip",
    "zlib",
    "font",
    "render",
    "shell",
    "system",
    "daemon",
    "monitor",
    "test",
    "framework",
    "build",
    "compiler",
    "debugger",
    "language",
    "runtime",
    "markdown",
    "text",
    "search",
]
TERM = "compression"


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.decode()[-500:]}")
    return elapsed


def compare(name: str, ours: list[str], theirs: list[str], env: dict[str, str], runs: int) -> tuple[float, float]:
    timed(ours, env), timed(theirs, env)  # warm the page cache for both
    mine: list[float] = []
    other: list[float] = []
    for index in range(runs):
        pair = [(mine, ours), (other, theirs)]
        for bucket, argv in pair if index % 2 == 0 else reversed(pair):
            bucket.append(timed(argv, env))
    return statistics.median(mine), statistics.median(other)


def make_prefix(prefix: Path, count: int) -> None:
    store = InstalledStore(prefix)
    rng = random.Random(1)
    add = []
    for index in range(count):
        name = f"pkg{index:03d}-{rng.choice(WORDS)}"
        files = [InstalledFile(f"share/{name}/file{n}", "file", "0" * 64, 100, 0o644) for n in range(10)]
        package = InstalledPackage(name, "1.0", f"{index:064x}", {"opt": "O2", "cpu": "x86-64"}, True, [], 0.0)
        add.append((package, files))
    store.commit_transaction("bench", "install", [], add)


def make_catalog(path: Path, count: int) -> None:
    rng = random.Random(2)
    entries = [
        CatalogEntry(f"{rng.choice(WORDS)}-{index}", " ".join(rng.choice(WORDS) for _ in range(8)), "1.0")
        for index in range(count)
    ]
    CatalogCache(path).replace(entries, "bench", "embedded")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    pkgc, pip = beside_python("pkgc"), beside_python("pip")
    apt_cache = shutil.which("apt-cache")
    if not (pkgc and pip and apt_cache):
        print("needs pkgc, pip and apt-cache on PATH", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="pkgc-bench-") as scratch:
        root = Path(scratch)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PKGC_")},
            "XDG_DATA_HOME": str(root / "data"),
            "XDG_CONFIG_HOME": str(root / "config"),
            "XDG_CACHE_HOME": str(root / "cache"),
            "NO_COLOR": "1",
        }
        prefix = root / "prefix"
        make_prefix(prefix, 200)
        make_catalog(root / "data" / "pkgc" / "catalog.sqlite", 30_000)
        apt_count = subprocess.run([apt_cache, "pkgnames"], capture_output=True, text=True, check=True).stdout.count(
            "\n"
        )
        rows = [
            (
                "pkgc --version vs pip --version",
                *compare("version", [pkgc, "--version"], [pip, "--version"], env, args.runs),
                0.5,
            ),
            (
                "pkgc list (200 installed) vs pip list",
                *compare("list", [pkgc, "list", "--prefix", str(prefix)], [pip, "list"], env, args.runs),
                0.5,
            ),
            (
                f"pkgc search {TERM} (30,000) vs apt-cache ({apt_count:,})",
                *compare(
                    "search", [pkgc, "search", TERM, "--limit", "100000"], [apt_cache, "search", TERM], env, args.runs
                ),
                1.0,
            ),
        ]
    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, load {load:.2f}, {args.runs} runs each")
    print(f"{'benchmark':<52} {'pkgc s':>8} {'other s':>8} {'ratio':>7} {'target':>7}")
    for name, mine, other, target in rows:
        ratio = mine / other
        verdict = "PASS" if ratio <= target else "MISS"
        print(f"{name:<52} {mine:>8.3f} {other:>8.3f} {ratio:>6.2f}x {target:>6.2f}x  {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
