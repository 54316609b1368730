#!/usr/bin/env python3
"""Benchmark the client's everyday commands against the tools people compare it with, measured in one run.

1. `pkgc install hello --prefix <fresh>`, a cache hit on a warm embedded farm (the client's artifact cache emptied
   before each run, so the artifact is downloaded), against `pip install --no-deps --no-index --target <fresh>` of a
   small wheel this script builds                                   target: pkgc at most 0.35x pip's time
2. `pkgc list` with 200 installed packages, `pkgc info hello` (asks the warm farm), `pkgc farm status` and
   `pkgc search compression` over a 30,000-package catalog, each against `pip list`
                                                                   target: pkgc at most 0.5x pip's time
3. `pkgc --version` against `pip --version`                       target: pkgc at most 0.5x pip's time
4. `pkgc search TERM` over the 30,000-package catalog against `apt-cache search TERM` over Debian's lists
                                                                   target: pkgc faster than apt-cache

The 200 packages and the 30,000-entry catalog are made by this script (records written through pkgc's own stores,
summaries drawn from a fixed vocabulary); the wheel is written by this script too (a generated module and data
files, about 130 KB). Nothing leaves loopback: the farm compiles hello from the prefetched source (`python -m
pkgc.worker.prefetch` fills ~/.cache/pkgc/test-sources, or $PKGC_TEST_SOURCES) with PKGC_FETCH_LOOPBACK_ONLY=1,
under an isolated HOME, XDG_* and PKGC_FARM_HOME, and is stopped at the end. pkgc's modules are byte-compiled
first (as an installed package's are), since PYTHONDONTWRITEBYTECODE would otherwise make every run compile them.
Medians of N runs, alternating order.

    python bench/bench_client.py [--runs N]
"""

from __future__ import annotations

import argparse
import base64
import compileall
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

from common import beside_python

import pkgc
from pkgc.localdb.catalog import CatalogCache, CatalogEntry
from pkgc.localdb.store import InstalledFile, InstalledPackage, InstalledStore
from pkgc.worker.prefetch import seed_cache

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

# The floor of any client built on the libraries the brief names: a fresh interpreter that imports typer and httpx
# (with httpcore, which every request loads) the way pkgc's CLI does (trio and httpx's own CLI kept out). The client
# validates farm answers without pydantic (pkgc/core/wire.py), so pydantic is not part of it. No pkgc code and no
# work: whatever pkgc does comes on top of this.
LIBRARY_FLOOR = """
import sys
sys.modules.setdefault("trio", None)
sys.modules.setdefault("httpx._main", None)
import typer, httpx, httpcore
"""


def timed(argv: list[str], env: dict[str, str], ok: tuple[int, ...] = (0,)) -> float:
    started = time.perf_counter()
    result = subprocess.run(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, check=False
    )
    elapsed = time.perf_counter() - started
    if result.returncode not in ok:
        raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.decode()[-500:]}")
    return elapsed


Side = tuple[Callable[[int], list[str]], Callable[[int], None]]  # the command of run i, and what to do before it


def compare(ours: Side, theirs: Side, env: dict[str, str], runs: int) -> tuple[list[float], list[float]]:
    """Run both sides `runs` times, alternating which goes first; the preparation of a run is not timed."""
    for argv, prepare in (ours, theirs):  # warm the page cache for both
        prepare(-1)
        timed(argv(-1), env)
    mine: list[float] = []
    other: list[float] = []
    for index in range(runs):
        pair = [(mine, ours), (other, theirs)]
        for bucket, (argv, prepare) in pair if index % 2 == 0 else reversed(pair):
            prepare(index)
            bucket.append(timed(argv(index), env))
    return mine, other


def same(argv: list[str]) -> Side:
    return (lambda _index: argv), (lambda _index: None)


def make_wheel(directory: Path) -> Path:
    """A small pure-Python wheel (PEP 427), written directly: a module and 40 data files, about 130 KB."""
    rng = random.Random(3)
    name, version = "pkgcbenchwheel", "1.0"
    files: dict[str, bytes] = {f"{name}/__init__.py": b'def hello() -> str:\n    return "hello"\n'}
    for index in range(40):
        files[f"{name}/data{index:02d}.txt"] = base64.b64encode(rng.randbytes(2400)) + b"\n"
    info = f"{name}-{version}.dist-info"
    files[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    files[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: bench_client\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    records = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        records.append(f"{path},sha256={digest},{len(data)}")
    files[f"{info}/RECORD"] = ("\n".join([*records, f"{info}/RECORD,,"]) + "\n").encode()
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return wheel


def start_warm_farm(pkgc_cmd: str, env: dict[str, str], farm_home: Path, root: Path) -> str:
    """Start the embedded farm and compile hello once (the source seeded from the prefetched copy); its build key."""
    seed_cache(farm_home / "sources", ["hello"])
    result = subprocess.run(
        [pkgc_cmd, "install", "hello", "--prefix", str(root / "warm"), "--json"],
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=1800,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"warm-up install failed: {result.stderr[-800:]}")
    return str(json.loads(result.stdout)["packages"][0]["key"])


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


Row = tuple[str, list[float], list[float], float]


def print_rows(rows: list[Row]) -> None:
    for name, mine, other, target in rows:
        ratio = statistics.median(mine) / statistics.median(other)
        verdict = "PASS" if ratio <= target else "MISS"
        print(
            f"{name:<58} {statistics.median(mine):>8.3f} {statistics.median(other):>8.3f} {ratio:>6.2f}x "
            f"{target:>6.2f}x  {verdict}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    runs = max(1, min(100, args.runs))
    pkgc_cmd, pip = beside_python("pkgc"), beside_python("pip")
    apt_cache = shutil.which("apt-cache")
    if not (pkgc_cmd and pip and apt_cache):
        print("needs pkgc, pip and apt-cache on PATH", file=sys.stderr)
        return 2
    compileall.compile_dir(Path(pkgc.__file__).parent, quiet=1)  # as an installed package is
    load_before = os.getloadavg()[0]
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="pkgc-bench-") as scratch:
        root = Path(scratch)
        for name in ("home", "data", "cache", "config"):
            (root / name).mkdir()
        farm_home = root / "farm"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PKGC_")},
            "HOME": str(root / "home"),
            "XDG_DATA_HOME": str(root / "data"),
            "XDG_CONFIG_HOME": str(root / "config"),
            "XDG_CACHE_HOME": str(root / "cache"),
            "PKGC_FARM_HOME": str(farm_home),
            "PKGC_FETCH_LOOPBACK_ONLY": "1",
            "PKGC_DEBIAN_CATALOG_AUTOLOAD": "0",  # no Debian catalog download: nothing leaves loopback
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "NO_COLOR": "1",
        }
        prefix = root / "prefix"
        make_prefix(prefix, 200)
        make_catalog(root / "data" / "pkgc" / "catalog.sqlite", 30_000)
        wheel = make_wheel(root)
        apt_count = subprocess.run([apt_cache, "pkgnames"], capture_output=True, text=True, check=True).stdout.count(
            "\n"
        )
        try:
            started = time.perf_counter()
            start_warm_farm(pkgc_cmd, env, farm_home, root)
            warmup = time.perf_counter() - started
            # The compile left tens of MB of dirty pages (its build tree). pkgc's install fsyncs its journal and its
            # database (pip fsyncs nothing), and on ext4 an fsync waits for the journal to take everything dirty
            # before it: the first installs measured the compile's writeback (0.23 s instead of 0.16 s). Write it
            # out first, untimed.
            os.sync()
            artifacts = root / "cache" / "pkgc" / "artifacts"

            # Each run starts with nothing dirty in the page cache (os.sync, untimed): pkgc fsyncs its journal and
            # its database, pip fsyncs nothing, and an fsync waits for the filesystem journal to take whatever is
            # dirty before it, so pkgc's runs otherwise paid for writing out the previous pip run's files.
            def fresh_prefix(index: int) -> None:
                shutil.rmtree(artifacts, ignore_errors=True)  # so the download really happens
                shutil.rmtree(root / f"p{index}", ignore_errors=True)
                os.sync()

            def fresh_target(index: int) -> None:
                shutil.rmtree(root / f"t{index}", ignore_errors=True)
                os.sync()

            install: Side = (lambda i: [pkgc_cmd, "install", "hello", "--prefix", str(root / f"p{i}")], fresh_prefix)
            pip_install: Side = (
                lambda i: [
                    pip,
                    "install",
                    "-q",
                    "--disable-pip-version-check",
                    "--no-deps",
                    "--no-index",
                    "--target",
                    str(root / f"t{i}"),
                    str(wheel),
                ],
                fresh_target,
            )
            pip_list = same([pip, "list", "--disable-pip-version-check"])  # no network check, ever
            rows.append(
                (
                    f"install hello (cache hit) vs pip install {wheel.stat().st_size // 1024} KB wheel",
                    *compare(install, pip_install, env, runs),
                    0.35,
                )
            )
            for label, argv in (
                ("list (200 installed) vs pip list", ["list", "--prefix", str(prefix)]),
                ("info hello (warm farm) vs pip list", ["info", "hello"]),
                ("farm status vs pip list", ["farm", "status"]),
                ("search compression (30,000) vs pip list", ["search", "compression", "--limit", "100000"]),
            ):
                rows.append((label, *compare(same([pkgc_cmd, *argv]), pip_list, env, runs), 0.5))
            rows.append(
                (
                    "--version vs pip --version",
                    *compare(same([pkgc_cmd, "--version"]), same([pip, "--version"]), env, runs),
                    0.5,
                )
            )
            rows.append(
                (
                    f"search {TERM} (30,000) vs apt-cache ({apt_count:,})",
                    *compare(
                        same([pkgc_cmd, "search", TERM, "--limit", "100000"]),
                        same([apt_cache, "search", TERM]),
                        env,
                        runs,
                    ),
                    1.0,
                )
            )
            floor = [timed([sys.executable, "-c", "pass"], env) for _ in range(runs)]
            # The libraries' floor, alternating with the two baselines as the rows above do.
            library_floor = same([sys.executable, "-c", LIBRARY_FLOOR])
            floors = [
                ("install", *compare(library_floor, pip_install, env, runs)),
                ("info", *compare(library_floor, pip_list, env, runs)),
            ]
        finally:
            subprocess.run([pkgc_cmd, "farm", "stop"], env=env, capture_output=True, timeout=120, check=False)
    print(
        f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, load {load_before:.2f} before and "
        f"{os.getloadavg()[0]:.2f} after, {runs} runs each; farm warm-up (start + compile hello) {warmup:.1f}s; "
        f"`python -c pass` {statistics.median(floor):.3f}s"
    )
    print(f"{'pkgc ...':<58} {'pkgc s':>8} {'other s':>8} {'ratio':>7} {'target':>7}")
    print_rows(rows)
    # Where the libraries' floor is above a row's target, no client that imports them can meet that target,
    # whatever it does after its imports.
    print("floor: python + typer, httpx and httpcore, no pkgc code, alternating with pip:")
    for (kind, library, baseline), (_name, mine, _other, target) in zip(floors, (rows[0], rows[2]), strict=True):
        ratio = statistics.median(library) / statistics.median(baseline)
        print(
            f"  floor {statistics.median(library):.3f}s vs {'pip install' if kind == 'install' else 'pip list'} "
            f"{statistics.median(baseline):.3f}s = {ratio:.2f}x (the {kind} target is {target:.2f}x); "
            f"pkgc {kind} is {statistics.median(mine) - statistics.median(library):.3f}s above the floor"
        )
    print("samples (pkgc | other):")
    for name, mine, other, _target in rows:
        print(f"  {name[:40]:<40} {' '.join(f'{t:.3f}' for t in mine)} | {' '.join(f'{t:.3f}' for t in other)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
