"""Which build system an unpacked source tree uses, for recipes that say `[build] system = "auto"` (the recipes
generated from the Debian catalog).

The order is the one a packager would try: a shipped `configure` script is what upstream released and needs no
generated files; `configure.ac`/`configure.in` (or `autogen.sh`) without one is a git-style tree that needs
`autoreconf` first (the platform's "autotools" tool); then CMake, Meson, and a plain Makefile. Nothing found is a
build failure that says so, not a guess.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class NoBuildSystem(Exception):
    """The tree has none of the files a supported build system starts from."""


@dataclass(frozen=True)
class DetectedSystem:
    system: str  # one of the standard systems: autotools, cmake, meson, make
    bootstrap: tuple[tuple[str, ...], ...] = ()  # argument lists run before the system's configure step
    tools: tuple[str, ...] = ()  # platform tools the detected system needs beyond the recipe's
    reason: str = ""  # what was found, for the build log


AUTORECONF = ("autoreconf", "--force", "--install")


def detect_build_system(srcdir: Path) -> DetectedSystem:
    """The build system of the tree at `srcdir`; raises NoBuildSystem naming what was looked for."""

    def has(name: str) -> bool:
        return (srcdir / name).is_file() and not (srcdir / name).is_symlink()

    if has("configure"):
        return DetectedSystem("autotools", reason="found configure")
    for name in ("configure.ac", "configure.in"):
        if has(name):
            return DetectedSystem("autotools", (AUTORECONF,), ("autotools",), f"found {name} without configure")
    if has("CMakeLists.txt"):
        return DetectedSystem("cmake", tools=("cmake",), reason="found CMakeLists.txt")
    if has("meson.build"):
        return DetectedSystem("meson", tools=("meson",), reason="found meson.build")
    for name in ("GNUmakefile", "Makefile", "makefile"):
        if has(name):
            return DetectedSystem("make", reason=f"found {name}")
    raise NoBuildSystem(
        "no build system detected (looked for configure, configure.ac, CMakeLists.txt, meson.build, Makefile)"
    )
