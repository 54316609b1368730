"""Running a recipe's smoke command the way docs/recipes.md defines it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from pkgc.core.recipe import Recipe


def smoke_env(prefix: Path, base: dict[str, str]) -> dict[str, str]:
    env = dict(base)
    env["PATH"] = f"{prefix}/bin:{base.get('PATH', os.defpath)}"
    env["PKG_CONFIG_PATH"] = f"{prefix}/lib/pkgconfig:{prefix}/share/pkgconfig"
    return env


def run_smoke(recipe: Recipe, prefix: Path, base_env: dict[str, str]) -> str:
    """Run the smoke command; a first word with a '/' is relative to the prefix. Returns stdout and stderr."""
    assert recipe.smoke_command, f"{recipe.name} has no smoke command"
    argv = list(recipe.smoke_command)
    if "/" in argv[0]:
        argv[0] = str(prefix / argv[0])
    result = subprocess.run(argv, env=smoke_env(prefix, base_env), capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"smoke command of {recipe.name} failed: {output}"
    assert recipe.smoke_expect in output, f"{recipe.smoke_expect!r} not in {output!r}"
    return output
