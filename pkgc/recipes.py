"""Where the farm finds recipes: directories named in PKGC_RECIPE_PATH, then the recipes shipped with pkgc."""

from __future__ import annotations

import os
from pathlib import Path


def bundled_recipe_dir() -> Path:
    installed = Path(__file__).parent / "_recipes"
    if installed.is_dir():
        return installed
    return Path(__file__).resolve().parent.parent / "recipes"


def recipe_dirs() -> list[Path]:
    extra = [Path(p) for p in os.environ.get("PKGC_RECIPE_PATH", "").split(os.pathsep) if p]
    return [*extra, bundled_recipe_dir()]


def recipe_files() -> list[Path]:
    """Every recipe file, the first directory winning when two define the same package."""
    found: dict[str, Path] = {}
    for directory in recipe_dirs():
        if directory.is_dir():
            for path in sorted(directory.glob("*.toml")):
                found.setdefault(path.stem, path)
    return [found[name] for name in sorted(found)]
