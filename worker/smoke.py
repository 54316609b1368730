"""Running a recipe's smoke tests against an installed prefix, as docs/recipes.md defines them.

Each test is an argument list (never a shell string) run with the prefix's `bin` first on PATH, its stdin fed, a
time limit, and pkg-config limited to the prefix and the prefixes of its runtime dependencies (PKG_CONFIG_LIBDIR
replaces pkg-config's default search path, so the host's `.pc` files cannot make a missing one look present). It must
exit with the test's status (0 unless it says) and its output (stdout and stderr) must contain its `expect`. A first word with a '/' is relative to the prefix.

Used by the test suite (tests/smoke.py) and by tools that build recipes and check them in a prefix.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pkgc.core.recipe import SmokeTest

DEFAULT_TIMEOUT = 60.0


class SmokeFailed(Exception):
    """A smoke test failed: the message names the command and says how (status, missing text, timeout)."""


@dataclass(frozen=True)
class SmokeResult:
    test: SmokeTest
    output: str


def smoke_environment(
    prefix: Path, base: Mapping[str, str], dependency_prefixes: Sequence[Path] = ()
) -> dict[str, str]:
    """The environment a smoke test runs in: `base`, the prefix's (and its dependencies') bin first on PATH, and
    pkg-config's whole search path limited to the prefix and its dependencies' prefixes."""
    prefixes = [prefix, *(p for p in dependency_prefixes if p != prefix)]
    env = dict(base)
    env["PATH"] = os.pathsep.join([*(f"{p}/bin" for p in prefixes), base.get("PATH", os.defpath)])
    pc = os.pathsep.join(f"{p}/{sub}" for p in prefixes for sub in ("lib/pkgconfig", "share/pkgconfig"))
    env["PKG_CONFIG_PATH"] = pc
    env["PKG_CONFIG_LIBDIR"] = pc
    env.pop("PKG_CONFIG_SYSROOT_DIR", None)
    return env


def command_line(test: SmokeTest, prefix: Path) -> list[str]:
    """The test's argument list, its first word made absolute in the prefix when it has a '/'."""
    argv = list(test.command)
    if "/" in argv[0]:
        argv[0] = str(prefix / argv[0].lstrip("/"))
    return argv


def run_smoke_test(
    test: SmokeTest,
    prefix: Path,
    base_env: Mapping[str, str],
    *,
    dependency_prefixes: Sequence[Path] = (),
    timeout: float = DEFAULT_TIMEOUT,
    cwd: Path | None = None,
) -> SmokeResult:
    """Run one test; raise SmokeFailed unless it exits with its status (0 unless it says) and its output contains
    `expect`."""
    env = smoke_environment(prefix, base_env, dependency_prefixes)
    env.update(dict(test.env))
    argv = command_line(test, prefix)
    shown = " ".join(test.command)[:200]
    try:
        result = subprocess.run(
            argv,
            env=env,
            input=test.stdin,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            cwd=cwd,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise SmokeFailed(f"smoke test '{shown}' did not finish within {timeout:g}s") from None
    except OSError as exc:
        raise SmokeFailed(f"smoke test '{shown}' could not start: {exc.strerror or exc}") from None
    output = result.stdout + result.stderr
    if result.returncode != test.status:
        wanted = "" if test.status == 0 else f" instead of {test.status}"
        raise SmokeFailed(f"smoke test '{shown}' exited with status {result.returncode}{wanted}: {output[-2000:]}")
    if test.expect not in output:
        raise SmokeFailed(f"smoke test '{shown}': {test.expect!r} not in its output {output[-2000:]!r}")
    return SmokeResult(test, output)


def run_smoke_tests(
    tests: Sequence[SmokeTest],
    prefix: Path,
    base_env: Mapping[str, str],
    *,
    dependency_prefixes: Sequence[Path] = (),
    timeout: float = DEFAULT_TIMEOUT,
    cwd: Path | None = None,
) -> list[SmokeResult]:
    """Run every test in order; the first failure raises SmokeFailed."""
    return [
        run_smoke_test(test, prefix, base_env, dependency_prefixes=dependency_prefixes, timeout=timeout, cwd=cwd)
        for test in tests
    ]
