"""Build the bundled (curated) recipes through a private embedded farm and check each in two prefixes.

For every recipe named on the command line (default: every bundled recipe) this tool
  1. installs the package with pkgc into prefix A (the farm compiles it and its dependencies),
  2. installs it again into prefix B (the same artifacts, relocated elsewhere),
  3. runs the recipe's smoke tests in both prefixes,
  4. checks every ELF file in both prefixes with readelf: each NEEDED library must be a base library of the
     build platform (pkgc/core/toolchains/*.toml) or a library inside the prefix (the package's own or a
     dependency's); anything else was picked up from the build machine and would be missing on a client,
and prints one line per package and the totals. The figures answer issue 9's "the curated recipes build and pass
their smoke tests in two prefixes"; CI builds a representative subset in the e2e tests instead.

The farm gets a home of its own (a temporary directory unless --home is given) and is stopped at the end. Sources
come from the prefetched test-source cache when it has them (`python -m pkgc.worker.prefetch`) and otherwise
through the worker's normal fetcher (the recipe's URLs, then mirror://debian/ through apt's configuration): this is
a tool, not a test. Builds run at lowered CPU priority (--nice). Every wait is bounded (--timeout per package).

    python tools/build_curated.py                  # every bundled recipe
    python tools/build_curated.py bc tmux --keep   # two of them, keeping the farm home and prefixes
    PKGC_RECIPE_PATH=/some/dir python tools/build_curated.py less   # recipes there win over bundled ones
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout: this tree's pkgc

from pkgc.core.errors import PkgcError
from pkgc.core.recipe import Recipe, SmokeTest, load_recipe
from pkgc.core.toolchain import load_toolchain
from pkgc.recipes import bundled_recipe_dir, recipe_files
from pkgc.worker.prefetch import default_dir
from pkgc.worker.smoke import SmokeFailed, run_smoke_tests

SMOKE_TIMEOUT = 60.0  # seconds per smoke command
ELF_MAGIC = b"\x7fELF"
# Variables of the caller's shell that must not reach the farm or the smoke commands: they would point pkgc at
# the user's own farm, configuration or installed packages, or change the output a smoke test expects.
_DROPPED_PREFIXES = ("PKGC_", "XDG_", "LC_", "LANG", "PKG_CONFIG")
_KEPT_PKGC = ("PKGC_RECIPE_PATH", "PKGC_DEBIAN_MIRROR", "PKGC_TEST_SOURCES")


@dataclass
class Outcome:
    """What happened to one package; `failure` is the one-line reason, empty when everything passed."""

    name: str
    built: bool = False
    build_seconds: float = 0.0
    smoke: dict[str, bool] = field(default_factory=dict)  # prefix label -> passed
    failure: str = ""

    @property
    def passed(self) -> bool:
        return self.built and len(self.smoke) == 2 and all(self.smoke.values()) and not self.failure


def base_environment(root: Path) -> dict[str, str]:
    """A user of its own under `root` (HOME, XDG directories, farm home), no colour, loopback without proxies."""
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(_DROPPED_PREFIXES) or key in _KEPT_PKGC
    }
    (root / "home").mkdir(parents=True, exist_ok=True)
    env.update(
        HOME=str(root / "home"),
        XDG_CONFIG_HOME=str(root / "config"),
        XDG_DATA_HOME=str(root / "data"),
        XDG_CACHE_HOME=str(root / "cache"),
        PKGC_FARM_HOME=str(root / "farm"),
        PKGC_DEBIAN_CATALOG_AUTOLOAD="0",  # its private farm builds the curated recipes only
        NO_COLOR="1",
        NO_PROXY="127.0.0.1,localhost,::1",
        no_proxy="127.0.0.1,localhost,::1",
        LC_ALL="C",
    )
    # Subprocesses import this tree's pkgc, whatever the interpreter's site-packages point at.
    checkout = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [checkout, os.environ.get("PYTHONPATH", "")]))
    return env


def recipes_by_name() -> dict[str, Recipe]:
    """Every recipe the farm will know (PKGC_RECIPE_PATH first, then the bundled ones), by name."""
    return {path.stem: load_recipe(path) for path in recipe_files()}


def closure(names: Sequence[str], known: dict[str, Recipe]) -> list[str]:
    """`names` and everything they depend on, dependencies first, each once."""
    order: list[str] = []

    def visit(name: str, depth: int) -> None:
        if name in order or depth > 50 or name not in known:
            return
        for dependency in known[name].dependencies:
            visit(dependency, depth + 1)
        order.append(name)

    for name in names:
        visit(name, 0)
    return order


def seed_sources(cache: Path, names: Sequence[str], known: dict[str, Recipe]) -> int:
    """Copy the prefetched sources of `names` (and their dependencies) into the farm's source cache; the rest the
    workers fetch themselves. Returns how many were copied."""
    prefetched = default_dir()
    cache.mkdir(parents=True, exist_ok=True)
    copied = 0
    for name in closure(names, known):
        for version in known[name].versions:
            source = prefetched / version.sha256
            if source.is_file() and not (cache / version.sha256).exists():
                shutil.copyfile(source, cache / version.sha256)
                copied += 1
    return copied


def pkgc(env: dict[str, str], *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [sys.executable, "-m", "pkgc", *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(args, 124, "", f"timed out after {timeout:.0f} s")


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def smoke_tests(recipe: Recipe) -> tuple[SmokeTest, ...]:
    """The recipe's smoke tests: every one when the recipe format lists several, else the [smoke] command."""
    if recipe.smoke_tests:
        return recipe.smoke_tests
    if recipe.smoke_command:
        return (SmokeTest(recipe.smoke_command, recipe.smoke_expect),)
    return ()


def run_smoke(recipe: Recipe, prefix: Path, base: dict[str, str]) -> str:
    """Run every smoke test of `recipe` in `prefix` with the worker's runner (pkg-config limited to the prefix,
    which holds the dependencies too); "" when all pass, else the reason of the first failure."""
    tests = smoke_tests(recipe)
    if not tests:
        return "the recipe has no smoke test"
    env = {key: value for key, value in base.items() if not key.startswith("PKGC_")}
    try:
        run_smoke_tests(tests, prefix, env, timeout=SMOKE_TIMEOUT, cwd=Path(tempfile.gettempdir()))
    except SmokeFailed as exc:
        return " ".join(str(exc).split())[:240]
    return ""


def elf_files(prefix: Path) -> list[Path]:
    found = []
    for path in sorted(prefix.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        try:
            with path.open("rb") as handle:
                if handle.read(4) == ELF_MAGIC:
                    found.append(path)
        except OSError:
            continue
    return found


_NEEDED = re.compile(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]")


def foreign_libraries(prefix: Path, base_sonames: frozenset[str]) -> list[str]:
    """`file: library` for every NEEDED library that is neither a base library nor a file in the prefix."""
    lib = prefix / "lib"
    own = {entry.name for entry in lib.rglob("*.so*")} if lib.is_dir() else set()
    problems = []
    for path in elf_files(prefix):
        result = subprocess.run(
            ["readelf", "-d", "--wide", str(path)], capture_output=True, text=True, timeout=60, check=False
        )
        for needed in _NEEDED.findall(result.stdout):
            if needed not in base_sonames and needed not in own:
                problems.append(f"{path.relative_to(prefix)}: {needed}")
    return problems


def check_package(name: str, known: dict[str, Recipe], env: dict[str, str], work: Path, timeout: float) -> Outcome:
    outcome = Outcome(name)
    recipe = known[name]
    base_sonames = load_toolchain().base_sonames
    prefixes = {"A": work / f"{name}-prefix-a", "B": work / "elsewhere" / f"{name}-prefix-b"}
    for label, prefix in prefixes.items():
        shutil.rmtree(prefix, ignore_errors=True)  # a fresh prefix: an earlier run may have left another build
        started = time.monotonic()
        result = pkgc(env, "install", "--wait", "--prefix", str(prefix), name, timeout=timeout)
        if label == "A":
            outcome.build_seconds = time.monotonic() - started
        if result.returncode != 0:
            outcome.failure = f"install into prefix {label}: {last_line(result.stderr or result.stdout)[:200]}"
            return outcome
        outcome.built = True
        problem = run_smoke(recipe, prefix, env)
        outcome.smoke[label] = not problem
        if problem and not outcome.failure:
            outcome.failure = f"prefix {label}: {problem}"
        foreign = foreign_libraries(prefix, base_sonames)
        if foreign and not outcome.failure:
            outcome.failure = (
                f"prefix {label}: needs libraries outside the platform and its dependencies: " + ", ".join(foreign[:4])
            )
    return outcome


def report(outcome: Outcome) -> str:
    smoke = " ".join(f"{label}:{'ok' if ok else 'FAIL'}" for label, ok in outcome.smoke.items()) or "-"
    status = "PASS" if outcome.passed else "FAIL"
    built = f"built {outcome.build_seconds:6.0f}s" if outcome.built else "not built   "
    line = f"{status}  {outcome.name:<14} {built}  smoke {smoke}"
    return line + (f"  -- {outcome.failure}" if outcome.failure else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("packages", nargs="*", help="recipes to build (default: every bundled recipe)")
    parser.add_argument("--home", type=Path, help="work directory (farm home, prefixes); default: a temporary one")
    parser.add_argument("--keep", action="store_true", help="keep the work directory afterwards")
    parser.add_argument("--workers", type=int, default=1, help="farm worker processes (default 1)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per package install (default 3600)")
    parser.add_argument("--nice", type=int, default=10, help="CPU niceness of the farm and builds (default 10)")
    args = parser.parse_args(argv)

    try:
        known = recipes_by_name()
    except PkgcError as exc:
        print(f"build_curated: {exc}", file=sys.stderr)
        return 2
    bundled = sorted(path.stem for path in bundled_recipe_dir().glob("*.toml"))
    names = list(dict.fromkeys(args.packages)) or bundled
    unknown = [name for name in names if name not in known]
    if unknown:
        print(f"build_curated: unknown recipe {unknown[0]!r} (known: {', '.join(sorted(known))})", file=sys.stderr)
        return 2
    if shutil.which("readelf") is None:
        print("build_curated: readelf (binutils) is needed to check the artifacts' libraries", file=sys.stderr)
        return 2
    if args.nice > 0:
        os.nice(args.nice)  # inherited by the farm, its workers and every build

    work = (args.home or Path(tempfile.mkdtemp(prefix="pkgc-curated-"))).absolute()
    work.mkdir(parents=True, exist_ok=True)
    env = base_environment(work)
    copied = seed_sources(work / "farm" / "sources", names, known)
    print(f"work directory {work}; {copied} prefetched sources seeded; {len(names)} packages", flush=True)
    started = pkgc(env, "farm", "up", "--workers", str(max(1, args.workers)), timeout=120)
    if started.returncode != 0:
        print(f"build_curated: the farm did not start: {last_line(started.stderr)}", file=sys.stderr)
        return 1
    outcomes: list[Outcome] = []
    begun = time.monotonic()
    try:
        for name in names:
            outcome = check_package(name, known, env, work / "prefixes", args.timeout)
            outcomes.append(outcome)
            print(report(outcome), flush=True)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    finally:
        pkgc(env, "farm", "stop", timeout=120)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    built = sum(outcome.built for outcome in outcomes)
    passed = sum(outcome.passed for outcome in outcomes)
    failed = [outcome for outcome in outcomes if not outcome.passed]
    minutes = (time.monotonic() - begun) / 60
    print(
        f"\n{len(outcomes)} packages in {minutes:.1f} min: {built} built, {passed} passed their smoke tests in both "
        f"prefixes with no foreign library, {len(failed)} failed"
    )
    for outcome in failed:
        print(f"  {outcome.name}: {outcome.failure or 'smoke test failed'}")
    return 0 if not failed and len(outcomes) == len(names) else 1


if __name__ == "__main__":
    sys.exit(main())
