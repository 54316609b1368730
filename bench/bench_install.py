#!/usr/bin/env python3
"""Benchmark `pkgc install` against doing the same work by hand.

A) cache-hit install: the build already exists on the embedded farm, so pkgc resolves, downloads the artifact from
   the farm's loopback HTTP API, checks its sha256, unpacks, relocates and records it. Compared with
   `curl` + `sha256sum` + `mkdir` + `tar --zstd -x` of the very same artifact URL.
B) cold build: a fresh farm (fresh PKGC_FARM_HOME, source cache pre-seeded so nothing is fetched), started with
   `pkgc farm up` before the clock starts, builds hello from source; timed from the `pkgc install` command to its
   exit (resolve, queue, sandboxed build, pack, upload, wait, download, install). Farm start-up is printed apart.
   Compared with extracting the same source tarball and running configure, make -jN, make install by hand.

Everything runs under an isolated HOME / XDG_* / PKGC_FARM_HOME in a temporary directory. No traffic leaves
loopback: the farms run with PKGC_FETCH_LOOPBACK_ONLY=1, and the hello source comes from the directory that
`python -m pkgc.worker.prefetch` fills (bash .ci/run does), copied into the first farm's source cache.

    python bench/bench_install.py            # N=5 for A, N=3 for B
    python bench/bench_install.py --quick    # N=2 for A, N=1 for B
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from common import beside_python

from pkgc.worker.prefetch import seed_cache

TARGET_A = 1.5
TARGET_B = 1.15
INSTALL_TIMEOUT = 1800.0  # one cold build of hello takes well under a minute; this only bounds a hang
FARM_SETTLE_SECONDS = 3.0  # lets the fresh farm's workers finish importing before the timed install
STEP_TIMEOUT = 600.0


# -- helpers --------------------------------------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def run(
    argv: list[str],
    env: dict[str, str],
    *,
    timeout: float = STEP_TIMEOUT,
    cwd: Path | None = None,
    out: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run argv; output goes to `out` (a log file) or is captured; raise with the output's tail on failure."""
    if out is not None:
        with out.open("ab") as handle:
            result = subprocess.run(
                argv,
                env=env,
                cwd=cwd,
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=timeout,
                check=False,
            )
        completed = subprocess.CompletedProcess(argv, result.returncode, "", "")
        if result.returncode != 0:
            tail = "\n".join(out.read_text(errors="replace").splitlines()[-20:])
            raise RuntimeError(f"{' '.join(argv)} exited with {result.returncode}:\n{tail}")
        return completed
    result = subprocess.run(
        argv,
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def timed(argv: list[str], env: dict[str, str], **kwargs: Any) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    result = run(argv, env, **kwargs)
    return time.perf_counter() - started, result


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def fmt(values: list[float]) -> str:
    return " ".join(f"{v:.3f}" for v in values)


class Sandbox:
    """Isolated HOME and XDG directories; one environment per farm home."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.base: dict[str, str] = {
            k: v for k, v in os.environ.items() if k not in ("PKGC_FARM", "PKGC_PREFIX", "PKGC_FARM_HOME")
        }
        self.base["PKGC_DEBIAN_CATALOG_AUTOLOAD"] = "0"  # no Debian catalog download: nothing leaves loopback
        for name in ("home", "data", "cache", "config"):
            (root / name).mkdir(parents=True, exist_ok=True)
        self.base.update(
            HOME=str(root / "home"),
            XDG_DATA_HOME=str(root / "data"),
            XDG_CACHE_HOME=str(root / "cache"),
            XDG_CONFIG_HOME=str(root / "config"),
            PKGC_FETCH_LOOPBACK_ONLY="1",
            NO_PROXY="127.0.0.1,localhost",
            no_proxy="127.0.0.1,localhost",
        )

    def env(self, farm_home: Path) -> dict[str, str]:
        return {**self.base, "PKGC_FARM_HOME": str(farm_home)}

    @property
    def artifact_cache(self) -> Path:
        return self.root / "cache" / "pkgc" / "artifacts"

    def empty_artifact_cache(self) -> None:
        shutil.rmtree(self.artifact_cache, ignore_errors=True)


def farm_url(farm_home: Path) -> str:
    return str(json.loads((farm_home / "state.json").read_text())["url"])


def stop_farm(pkgc: str, env: dict[str, str], farm_home: Path) -> None:
    if not (farm_home / "state.json").exists():
        return
    try:
        subprocess.run([pkgc, "farm", "stop"], env=env, capture_output=True, timeout=60, check=False)
    except subprocess.TimeoutExpired:
        log(f"`pkgc farm stop` timed out for {farm_home}")


def in_process_seconds(stdout: str) -> float | None:
    """The use case's own duration, from the last line `prefix: ... (1.2s)` of `pkgc install`."""
    match = re.search(r"\(([0-9.]+)s\)\s*$", stdout.strip())
    return float(match.group(1)) if match else None


# -- benchmark A: cache-hit install ---------------------------------------------------------------------------------


def bench_cache_hit(
    pkgc: str, box: Sandbox, farm_home: Path, reps: int, info: dict[str, Any]
) -> tuple[list[float], list[float]]:
    env = box.env(farm_home)
    work = box.root / "a"
    work.mkdir()

    seed_cache(farm_home / "sources", ["hello"])  # the benchmark fetches nothing: the source was prefetched
    log("A: warm-up install (starts the farm, compiles hello from the seeded source)")
    seconds, result = timed(
        [pkgc, "install", "hello", "--prefix", str(work / "warm"), "--json"], env, timeout=INSTALL_TIMEOUT
    )
    warm = json.loads(result.stdout)
    info["warmup"] = seconds
    warm_key = warm["packages"][0]["key"]
    log(f"A: warm-up took {seconds:.1f}s, build key {warm_key[:12]}")

    base = farm_url(farm_home)
    response = httpx.post(f"{base}/v1/resolve", json={"packages": [{"name": "hello"}]}, timeout=30, trust_env=False)
    response.raise_for_status()
    resolved = response.json()
    key = resolved["requested"][0]
    build = next(b for b in resolved["builds"] if b["key"] == key)
    if key != warm_key or build["status"] != "ready":
        raise RuntimeError(f"resolve gave {key[:12]} ({build['status']}), pkgc installed {warm_key[:12]}")
    url = build["url"] if build["url"].startswith("http") else base + build["url"]
    sha256 = build["sha256"]
    info["artifact_url"], info["artifact_size"] = url, build["size"]
    log(f"A: artifact {url} ({build['size']} bytes)")

    pkgc_times: list[float] = []
    manual_times: list[float] = []
    inner: list[float] = []

    def one_pkgc(index: int) -> None:
        box.empty_artifact_cache()  # so the download really happens
        prefix = work / f"p{index}"
        seconds, result = timed([pkgc, "install", "hello", "--prefix", str(prefix)], env)
        if not (prefix / "bin" / "hello").is_file():
            raise RuntimeError(f"pkgc install left no bin/hello in {prefix}")
        if index == 0:
            hello = run([str(prefix / "bin" / "hello")], env).stdout.strip()
            if hello != "Hello, world!":
                raise RuntimeError(f"installed hello printed {hello!r}")
        pkgc_times.append(seconds)
        inside = in_process_seconds(result.stdout)
        if inside is not None:
            inner.append(inside)

    def one_manual(index: int) -> None:
        archive = work / f"m{index}.tar.zst"
        prefix = work / f"m{index}"
        started = time.perf_counter()
        run(["curl", "-s", "-o", str(archive), url], env)
        digest = run(["sha256sum", str(archive)], env).stdout.split()[0]
        run(["mkdir", str(prefix)], env)
        run(["tar", "--zstd", "-xf", str(archive), "-C", str(prefix)], env)
        seconds = time.perf_counter() - started
        if digest != sha256:
            raise RuntimeError(f"manual download has sha256 {digest}, expected {sha256}")
        manual_times.append(seconds)

    for index in range(reps):
        order = (one_pkgc, one_manual) if index % 2 == 0 else (one_manual, one_pkgc)
        for step in order:
            step(index)
        log(f"A: rep {index + 1}/{reps}: pkgc {pkgc_times[-1]:.3f}s, manual {manual_times[-1]:.3f}s")

    # The floor every pkgc command pays: interpreter start-up and CLI imports (no farm involved).
    floor = [timed([pkgc, "--version"], env)[0] for _ in range(reps)]
    info["a_version_floor"] = median(floor)
    interpreter = [timed([sys.executable, "-c", "pass"], env)[0] for _ in range(reps)]
    info["a_python_floor"] = median(interpreter)
    info["a_in_process"] = median(inner) if inner else None
    info["a_samples"] = (pkgc_times, manual_times)
    return pkgc_times, manual_times


# -- benchmark B: cold farm build -----------------------------------------------------------------------------------


def farm_build_window(farm_home: Path, key: str) -> tuple[float, float] | None:
    """created_at (resolve) and updated_at (finish) of the build, from the farm's SQLite database."""
    try:
        with sqlite3.connect(f"file:{farm_home / 'farm.db'}?mode=ro", uri=True, timeout=10) as conn:
            row = conn.execute("select created_at, updated_at, status from builds where key = ?", (key,)).fetchone()
    except sqlite3.Error as exc:
        log(f"B: cannot read {farm_home}/farm.db: {exc}")
        return None
    if row is None or row[2] != "ready":
        return None
    return float(row[0]), float(row[1])


def bench_cold_build(
    pkgc: str,
    box: Sandbox,
    seed_sources: Path,
    source_archive: Path,
    reps: int,
    info: dict[str, Any],
    farms: list[Path],
) -> tuple[list[float], list[float]]:
    work = box.root / "b"
    work.mkdir()
    jobs = os.cpu_count() or 1
    pkgc_times: list[float] = []
    manual_times: list[float] = []
    # per run: total, build created (resolve), farm queue+build+pack, finish to exit
    phases: list[tuple[float, float, float, float]] = []
    farm_startups: list[float] = []

    def one_pkgc(index: int) -> None:
        farm_home = work / f"farm{index}"
        farms.append(farm_home)
        farm_home.mkdir()
        shutil.copytree(seed_sources, farm_home / "sources")  # the farm fetches nothing
        env = box.env(farm_home)
        box.empty_artifact_cache()  # a reproducible build may match an artifact downloaded earlier
        prefix = work / f"p{index}"
        # A cold *build*, on a farm that is running (as it is after the first command of the day): start the farm
        # first, give its workers time to import, and time the install alone. Farm start-up is reported apart.
        startup, _ = timed([pkgc, "farm", "up"], env, timeout=INSTALL_TIMEOUT)
        farm_startups.append(startup)
        time.sleep(FARM_SETTLE_SECONDS)
        wall_start = time.time()
        try:
            seconds, completed = timed(
                [pkgc, "install", "hello", "--prefix", str(prefix), "--json"], env, timeout=INSTALL_TIMEOUT
            )
            wall_end = time.time()
            result = json.loads(completed.stdout)
        finally:
            stop_farm(pkgc, env, farm_home)
        if not (prefix / "bin" / "hello").is_file():
            raise RuntimeError(f"pkgc install left no bin/hello in {prefix}")
        pkgc_times.append(seconds)
        window = farm_build_window(farm_home, result["packages"][0]["key"])
        if window is not None:
            created, finished = window
            phases.append((seconds, created - wall_start, finished - created, wall_end - finished))

    def one_manual(index: int) -> None:
        tree = work / f"m{index}"
        prefix = work / f"m{index}-prefix"
        tree.mkdir()
        build_log = work / f"m{index}.log"
        env = {**box.base, "CFLAGS": "-O2 -march=x86-64"}
        started = time.perf_counter()
        run(["tar", "-xzf", str(source_archive), "-C", str(tree), "--strip-components=1"], env)
        run(
            ["./configure", f"--prefix={prefix}", "--disable-dependency-tracking"],
            env,
            cwd=tree,
            out=build_log,
        )
        run(["make", f"-j{jobs}"], env, cwd=tree, out=build_log)
        run(["make", "install"], env, cwd=tree, out=build_log)
        manual_times.append(time.perf_counter() - started)
        if not (prefix / "bin" / "hello").is_file():
            raise RuntimeError(f"manual build left no bin/hello in {prefix}")

    for index in range(reps):
        order = (one_pkgc, one_manual) if index % 2 == 0 else (one_manual, one_pkgc)
        for step in order:
            step(index)
        log(f"B: rep {index + 1}/{reps}: pkgc {pkgc_times[-1]:.2f}s, manual {manual_times[-1]:.2f}s")

    info["b_phases"] = phases
    info["b_farm_startups"] = farm_startups
    info["b_samples"] = (pkgc_times, manual_times)
    return pkgc_times, manual_times


# -- main -----------------------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="N=2 for A, N=1 for B")
    parser.add_argument("--reps-a", type=int, default=None, help="repetitions of A (default 5, quick 2)")
    parser.add_argument("--reps-b", type=int, default=None, help="repetitions of B (default 3, quick 1)")
    parser.add_argument(
        "--pkgc",
        default=beside_python("pkgc"),
        help="the pkgc command (default: the one beside this Python, else on PATH)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory for inspection")
    args = parser.parse_args()
    reps_a = max(1, min(100, args.reps_a or (2 if args.quick else 5)))
    reps_b = max(1, min(20, args.reps_b or (1 if args.quick else 3)))
    if not args.pkgc:
        print("error: pkgc is not on PATH (or pass --pkgc)", file=sys.stderr)
        return 2
    for tool in ("curl", "sha256sum", "tar", "make", "gcc"):
        if not shutil.which(tool):
            print(f"error: {tool} is needed by the manual side of the benchmark", file=sys.stderr)
            return 2

    ncpu = os.cpu_count() or 1
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else ncpu
    print(
        f"machine: nproc={ncpu} (affinity {affinity}), python {platform.python_version()}, "
        f"{platform.machine()}, bwrap={'yes' if shutil.which('bwrap') else 'no'}, pkgc={args.pkgc}"
    )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    print(f"farm: default worker count (one per core = {ncpu}); each worker builds with make -j{ncpu}")
    if load > 0.5:
        print(f"warning: 1-minute load average is {load:.2f} before the run; other work will disturb the figures")
    print(f"reps: A={reps_a}, B={reps_b}")
    sys.stdout.flush()

    root = Path(tempfile.mkdtemp(prefix="pkgc-bench-"))
    box = Sandbox(root)
    farm_a = root / "farm-a"
    farms: list[Path] = [farm_a]
    info: dict[str, Any] = {}
    try:
        a_pkgc, a_manual = bench_cache_hit(args.pkgc, box, farm_a, reps_a, info)
        stop_farm(args.pkgc, box.env(farm_a), farm_a)  # an idle farm polls its queue; keep it out of B
        sources = farm_a / "sources"
        archives = [p for p in sources.iterdir() if p.is_file() and not p.name.startswith(".")]
        if len(archives) != 1:
            raise RuntimeError(f"expected one cached source in {sources}, found {len(archives)}")
        b_pkgc, b_manual = bench_cold_build(args.pkgc, box, sources, archives[0], reps_b, info, farms)
    finally:
        for home in farms:
            stop_farm(args.pkgc, box.env(home), home)
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)

    rows = [
        (f"A cache-hit install of hello (N={reps_a})", median(a_pkgc), median(a_manual), TARGET_A),
        (f"B cold build of hello (N={reps_b})", median(b_pkgc), median(b_manual), TARGET_B),
    ]
    print()
    print(f"{'benchmark':<38} {'pkgc s':>8} {'manual s':>9} {'ratio':>7} {'target':>7}  result")
    for name, p, m, target in rows:
        ratio = p / m
        print(f"{name:<38} {p:>8.3f} {m:>9.3f} {ratio:>6.2f}x {target:>6.2f}x  {'PASS' if ratio <= target else 'MISS'}")
    print()
    print(f"A samples pkgc:   {fmt(a_pkgc)}")
    print(f"A samples manual: {fmt(a_manual)}")
    print(f"A artifact: {info['artifact_size']} bytes; warm-up install (farm start + compile): {info['warmup']:.1f}s")
    print(
        f"A floors (medians): `python -c pass` {info['a_python_floor']:.3f}s, "
        f"`pkgc --version` (start-up + CLI import) {info['a_version_floor']:.3f}s"
    )
    if info.get("a_in_process") is not None:
        print(f"A time inside the install use case (pkgc's own figure, 0.1s resolution): {info['a_in_process']:.1f}s")
    print(f"B samples pkgc:   {fmt(b_pkgc)}")
    print(f"B samples manual: {fmt(b_manual)}")
    if info.get("b_phases"):
        print("B pkgc runs, seconds after the command started:")
        for total, created, build, tail in info["b_phases"]:
            print(
                f"  build created {created:5.2f}, "
                f"farm queue+build+pack {build:6.2f}, finish to exit (wait, download, install) {tail:4.2f}, "
                f"total {total:6.2f}"
            )
    else:
        print("B farm build time: not available (could not read the build record)")
    if info.get("b_farm_startups"):
        print(f"B `pkgc farm up` on a fresh farm home (not in the B figure): {fmt(info['b_farm_startups'])}")
    if hasattr(os, "getloadavg"):
        print(f"load average (1 min) at start {load:.2f}, at end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
