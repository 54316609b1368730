"""Build a seeded random sample of generated (Debian catalog) recipes through an embedded farm and smoke-test them.

    python tools/sample_generated.py --seed 7 --count 50
    python tools/sample_generated.py --seed 7 --count 5 --sources Sources   # a Sources index instead of apt's
    python tools/sample_generated.py --seed 7 --count 50 --available-only   # only what the mirror serves

It loads the Debian catalog into a farm home of its own (through apt, like `pkgc farm catalog update`, unless
--sources names an index), starts that farm, installs each sampled package into a prefix of its own and runs a
generic smoke test: an executable in bin/, sbin/ or games/ that runs with --version or --help (exits 0 or 64,
EX_USAGE, or prints a usage or version text or getopt's "invalid option" with status 1 or 2), or a library in lib/
that a test program links against and runs with. It prints the seed, how many built, how many passed the smoke test, how many
had their build system detected, and the failures grouped by reason. The sample is drawn from every source package
without a curated recipe, so it shows what `pkgc install` of an arbitrary Debian package does today. Runs niced.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

from pkgc.core.buildspec import BuildSpec, PackageRequest, plan_builds
from pkgc.core.errors import PkgcError
from pkgc.farm.bootstrap import FarmConfig, farm_service
from pkgc.farm.debian_catalog import DebianCatalog, index_path, load_index_text, update_index
from pkgc.recipes import recipe_files
from worker.fetch import SourceFetcher

_REASONS = [
    (r"no URL or mirror produced source", "source tarball unavailable"),
    (r"no build system detected", "no build system detected"),
    (r"no supported build system: the tree is an? (\S+(?: \S+)?) ", "foreign ecosystem"),
    (r"dependency cycle", "dependency cycle among generated recipes"),
    (r"command \./configure exited|command meson setup|command cmake -S", "configure step failed"),
    (r"command autoreconf", "autoreconf failed"),
    (r"command patch exited", "a Debian patch did not apply"),
    (r"command make exited|command cmake --build|command meson compile|command ninja", "compile failed"),
    (r"command make install|cmake --install|meson install", "install step failed"),
    (r"took longer|timed out", "build timed out"),
    (r"installed nothing", "installed nothing into its prefix"),
    (r"looks for libraries in", "RUNPATH outside its prefix"),
    (r"which is neither in the artifact", "needs a library outside its dependencies and the base list"),
    (r"outside its prefix", "installed outside its prefix"),
    (r"is a symlink to .* outside the package's prefix", "a symlink out of its prefix"),
    (r"no recipe can be generated", "no recipe can be generated"),
    (r"dependency \S+ failed to build", "a dependency failed"),
]


@dataclass
class Outcome:
    name: str
    built: bool
    detected: str  # the build system the worker detected, "" if the build never got that far
    smoke: str  # "" when the smoke test passed, else why not
    reason: str  # why the build failed ("" when it built)


def classify(name: str, error: str) -> str:
    other = re.search(r"build of ([a-z0-9][a-z0-9.+_-]*)@", error)
    if other and other.group(1) != name:
        inner = classify(other.group(1), error[other.end() :])
        return "a dependency failed" if inner.startswith("a dependency failed") else f"a dependency failed ({inner})"
    for pattern, reason in _REASONS:
        found = re.search(pattern, error)
        if found:
            return f"{reason}: {found.group(1)}" if found.groups() else reason
    return " ".join(error.split())[:80] or "unknown"


_USAGE_WORDS = re.compile(r"usage|version|(invalid|illegal|unrecognized|unknown) option")


def smoke_test(prefix: Path, name: str) -> str:
    """ "" if an executable runs with --version or --help, or a library links into a program; else why not."""
    env = {
        "PATH": f"{prefix}/bin:{prefix}/sbin:/usr/bin:/bin",
        "LD_LIBRARY_PATH": f"{prefix}/lib",
        "HOME": str(prefix),
        "LANG": "C",
    }
    programs = sorted(  # games/: where Debian-minded Makefiles put games (xchain)
        p for d in ("bin", "sbin", "games") for p in (prefix / d).glob("*") if p.is_file() and os.access(p, os.X_OK)
    )
    for program in programs[:5]:
        for flag in ("--version", "--help"):
            try:
                ran = subprocess.run(
                    [str(program), flag], capture_output=True, timeout=10, env=env, stdin=subprocess.DEVNULL
                )
            except (subprocess.TimeoutExpired, OSError):
                continue
            said = (ran.stdout + ran.stderr).decode(errors="replace").lower()
            # It runs: exit 0, or EX_USAGE (64, BSD-style tools' answer to an unknown option), or a usage-error
            # status (1, 2) with a usage or version text or getopt's own complaint about the option (a program
            # without --help ran its argument parser); a crash (signal) or a loader error (127) is not running.
            if ran.returncode in (0, 64) or (ran.returncode in (1, 2) and _USAGE_WORDS.search(said)):
                return ""
    libraries = sorted((prefix / "lib").glob("lib*.so")) + sorted((prefix / "lib").glob("lib*.a"))
    for library in libraries[:3]:
        stem = library.name[3:].split(".so")[0].removesuffix(".a")
        with tempfile.TemporaryDirectory() as work:
            source = Path(work) / "t.c"
            source.write_text("int main(void) { return 0; }\n")
            binary = Path(work) / "t"
            argv = ["gcc", str(source), "-o", str(binary), f"-L{prefix}/lib", "-Wl,--no-as-needed", f"-l{stem}",
                    f"-Wl,-rpath,{prefix}/lib"]  # fmt: skip
            linked = subprocess.run(argv, capture_output=True, timeout=60)
            if linked.returncode == 0 and subprocess.run([str(binary)], timeout=10).returncode == 0:
                return ""
    if programs:
        return "no executable exits 0 with --version or --help"
    if libraries:
        return "no library links into a test program"
    return "installed no executable and no library"


def unavailable_sources(specs: list[BuildSpec], fetcher: SourceFetcher, client: httpx.Client) -> list[str]:
    """The file names of the plan's sources and patch series that no mirror serves (HEAD), [] when all are there.

    Some archive mirrors and caching proxies serve only part of the pool; a package whose tarball is not there
    cannot be built from this machine, which says nothing about its recipe."""
    missing = []
    for spec in specs:
        for item in (spec.source, spec.source.series):
            if item is None:
                continue
            urls = [c for url in (*item.urls, *item.mirrors) for c in fetcher.candidates(url)]
            found = False
            for url in urls:
                try:
                    found = client.head(url).status_code == 200
                except httpx.HTTPError:
                    found = False
                if found:
                    break
            if not found:
                missing.append(urls[0].rsplit("/", 1)[-1] if urls else f"{spec.name} (no URL)")
    return missing


def native(catalog: DebianCatalog, name: str) -> bool:
    """Whether the package's Build-Depends name nothing of an ecosystem the platform lacks (a quick filter)."""
    dropped = catalog.dropped(name)
    return dropped is not None and not any("(not on the platform)" in note for note in dropped)


def detected_system(log: str) -> str:
    match = re.search(r"^pkgc: build system (\w+)", log, re.M)
    return match.group(1) if match else ""


def run_one(name: str, root: Path, env: dict[str, str], timeout: float) -> Outcome:
    prefix = root / "prefixes" / name
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pkgc", "install", name, "--wait", "--prefix", str(prefix), "--json"],
            env=env, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return Outcome(name, False, "", "", "build timed out (this script's limit)")
    farm_url = json.loads((Path(env["PKGC_FARM_HOME"]) / "state.json").read_text())["url"]
    log = ""
    with httpx.Client(base_url=farm_url, timeout=30, trust_env=False) as api:
        builds = api.get(f"/v1/packages/{name}/builds")
        if builds.status_code == 200:
            for build in builds.json().get("builds", [])[:1]:
                answer = api.get(f"/v1/builds/{build['key']}/log")
                log = answer.text if answer.status_code == 200 else ""
    if result.returncode != 0:
        error = next((line for line in result.stderr.splitlines() if line.startswith("error:")), result.stderr[-300:])
        return Outcome(name, False, detected_system(log), "", classify(name, error))
    return Outcome(name, True, detected_system(log), smoke_test(prefix, name), "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=None, help="default: a random seed (printed)")
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--sources", type=Path, default=None, help="a decompressed Sources index (default: via apt)")
    parser.add_argument("--root", type=Path, default=None, help="working directory (default: a temporary one)")
    parser.add_argument("--workers", type=int, default=1, help="the farm's workers (and installs at once)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per package")
    parser.add_argument(
        "--native-only",
        action="store_true",
        help="draw only packages whose Build-Depends name no language ecosystem the platform lacks (perl, python, "
        "java, haskell, go, rust, ... modules)",
    )
    parser.add_argument(
        "--max-closure",
        type=int,
        default=30,
        help="pass over (and count) a package whose plan needs more builds than this (its dependencies included): "
        "the sample is of packages this machine can build in reasonable time",
    )
    parser.add_argument(
        "--available-only",
        action="store_true",
        help="draw only packages whose sources (and their dependencies' sources) a mirror in apt's configuration "
        "serves (checked with HEAD; a partial mirror lacks many pool files)",
    )
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1_000_000)
    os.nice(10)  # a shared machine: the farm and its builds inherit this
    root = args.root or Path(tempfile.mkdtemp(prefix="pkgc-sample-"))
    home = root / "farm"
    if args.sources is not None:
        stored, _ = load_index_text(home, args.sources.read_text(encoding="utf-8", errors="replace"))
    else:
        stored, _ = update_index(home)
    curated = {path.stem for path in recipe_files()}
    names = sorted(name for name, *_ in DebianCatalog(index_path(home)).packages() if name not in curated)
    catalog = DebianCatalog(index_path(home))
    order = random.Random(seed).sample(names, len(names))
    kind = ("native (no foreign ecosystem) " if args.native_only else "") + (
        "available (sources on the mirror) " if args.available_only else ""
    )
    print(f"seed {seed}: drawing {args.count} {kind}of {len(names)} generated recipes ({stored} in the catalog)")
    env = {
        **os.environ,
        "HOME": str(root / "home"),
        "XDG_CONFIG_HOME": str(root / "config"),
        "XDG_DATA_HOME": str(root / "data"),
        "XDG_CACHE_HOME": str(root / "cache"),
        "PKGC_FARM_HOME": str(home),
        "PKGC_DEBIAN_CATALOG_AUTOLOAD": "0",  # this script loads the catalog it samples itself
        "NO_COLOR": "1",
    }
    (root / "home").mkdir(parents=True, exist_ok=True)
    started = subprocess.run(
        [sys.executable, "-m", "pkgc", "farm", "up", "--workers", str(args.workers)], env=env, capture_output=True
    )
    if started.returncode != 0:
        print(f"the farm did not start: {started.stderr.decode(errors='replace')[-500:]}", file=sys.stderr)
        return 1
    outcomes: list[Outcome] = []
    try:
        service = farm_service(FarmConfig.local(home))
        chosen: list[str] = []
        passed_over = Counter[str]()
        fetcher = SourceFetcher(root / "head-check")
        with httpx.Client(timeout=httpx.Timeout(30.0, connect=10.0), follow_redirects=True) as head_client:
            for name in order:
                if len(chosen) + len(outcomes) >= args.count:
                    break
                if args.native_only and not native(catalog, name):
                    continue
                try:
                    specs = plan_builds([PackageRequest(name)], service.recipe, service.platform)[0]
                except PkgcError as exc:
                    reason = classify(name, str(exc))
                    if args.available_only and reason == "no recipe can be generated":
                        passed_over["no usable tarball in the index"] += 1
                        continue
                    outcomes.append(Outcome(name, False, "", "", reason))
                    print(f"  {name}: not planned: {outcomes[-1].reason}", flush=True)
                    continue
                if len(specs) > args.max_closure:
                    passed_over[f"its plan has more than {args.max_closure} builds"] += 1
                    print(f"  ({name}: passed over, its plan has {len(specs)} builds)", flush=True)
                    continue
                if args.available_only:
                    missing = unavailable_sources(specs, fetcher, head_client)
                    if missing:
                        passed_over["a source not on the mirror"] += 1
                        print(f"  ({name}: passed over, the mirror lacks {missing[0]})", flush=True)
                        continue
                chosen.append(name)
        if passed_over:
            print(f"passed over: {', '.join(f'{v} ({k})' for k, v in passed_over.items())}", flush=True)
        with ThreadPoolExecutor(max_workers=max(1, args.workers)) as pool:
            for outcome in pool.map(lambda name: run_one(name, root, env, args.timeout), chosen):
                outcomes.append(outcome)
                state = "built" if outcome.built else f"failed: {outcome.reason}"
                smoke = "" if not outcome.built else (" smoke ok" if not outcome.smoke else f" smoke: {outcome.smoke}")
                print(f"  {outcome.name}: {state}{smoke} [{outcome.detected or 'not detected'}]", flush=True)
    finally:
        subprocess.run([sys.executable, "-m", "pkgc", "farm", "stop"], env=env, capture_output=True, timeout=120)
    built = [o for o in outcomes if o.built]
    passed = [o for o in built if not o.smoke]
    detected = [o for o in outcomes if o.detected]
    print(f"seed {seed}: {len(outcomes)} sampled, {len(built)} built, {len(passed)} passed the smoke test")
    print(
        f"build system detected for {len(detected)}; of those {sum(1 for o in detected if o.built and not o.smoke)} "
        f"built and passed ({', '.join(f'{k} {v}' for k, v in Counter(o.detected for o in detected).most_common())})"
    )
    reasons = Counter(o.reason for o in outcomes if not o.built) + Counter(
        f"smoke: {o.smoke}" for o in built if o.smoke
    )
    for reason, count in reasons.most_common():
        print(f"  {count:3d}  {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
