"""End-to-end: a representative subset of the curated recipes, built by the session farm from Debian's orig
tarballs, installed into two prefixes, and checked there by their own smoke tests.

The subset is small because builds are slow on CI's shared cores; tools/build_curated.py does the same for every
bundled recipe. Picked to cover what differs between recipes: explicit steps that build and install a shared
library by hand (bzip2), autotools with a declared platform tool and a calculation through stdin (bc), and CMake
with a pkg-config file (libuv).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from pkgc.core.recipe import load_recipe
from pkgc.core.relocation import PLACEHOLDER_BYTES
from pkgc.core.toolchain import load_toolchain
from pkgc.recipes import bundled_recipe_dir
from tests.conftest import FarmEnv
from tests.smoke import run_smoke

pytestmark = pytest.mark.e2e

SUBSET = ["bzip2", "bc", "libuv"]
_NEEDED = re.compile(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]")


def needed_outside(prefix: Path) -> list[str]:
    """NEEDED entries of the prefix's ELF files that are neither base libraries nor libraries in the prefix."""
    base = load_toolchain().base_sonames
    own = {path.name for path in (prefix / "lib").glob("*.so*")} if (prefix / "lib").is_dir() else set()
    found = []
    for path in prefix.rglob("*"):
        if path.is_symlink() or not path.is_file() or ".pkgc" in path.parts:
            continue
        with path.open("rb") as handle:
            if handle.read(4) != b"\x7fELF":
                continue
        dynamic = subprocess.run(["readelf", "-d", "--wide", str(path)], capture_output=True, text=True, check=True)
        found += [f"{path.name}: {name}" for name in _NEEDED.findall(dynamic.stdout) if name not in base | own]
    return found


@pytest.mark.parametrize("name", SUBSET)
def test_a_curated_recipe_builds_and_passes_its_smoke_test_in_two_prefixes(farm: FarmEnv, name: str) -> None:
    recipe = load_recipe(bundled_recipe_dir() / f"{name}.toml")
    for where in ("curated-a", "elsewhere/curated-b"):
        prefix = farm.root / where / name
        farm.pkgc("install", name, "--wait", "--prefix", str(prefix), check=True, timeout=900)
        run_smoke(recipe, prefix, farm.env)
        assert needed_outside(prefix) == [], f"{name} links libraries from the build machine"
        for path in prefix.rglob("*"):
            if path.is_file() and not path.is_symlink() and ".pkgc" not in path.parts:
                assert PLACEHOLDER_BYTES not in path.read_bytes(), path
