"""Which build system an unpacked source tree uses, for recipes that say `[build] system = "auto"` (the recipes
generated from the Debian catalog).

The order is the one a packager would try: a shipped `configure` script is what upstream released and needs no
generated files; `configure.ac`/`configure.in` (or `autogen.sh`) without one is a git-style tree that needs
`autoreconf` first (the platform's "autotools" tool); then CMake, Meson, and a plain Makefile, unless the tree
is a package of a language ecosystem the platform has no tooling for (Go, Rust, OCaml, Haskell, Perl, Python, ...),
whose Makefile only wraps that tooling. Nothing found is a build failure that says so, not a guess.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path


class NoBuildSystem(Exception):
    """The tree has none of the files a supported build system starts from."""


# Trees of a language ecosystem whose compiler or package tooling the build platform does not have: a top-level
# Makefile there is a wrapper around that tooling (`go build`, `dune`, `cargo`), so the build says which ecosystem
# it is instead of failing inside make. (marker files, then glob patterns) -> the ecosystem's name.
FOREIGN_ECOSYSTEMS: tuple[tuple[tuple[str, ...], tuple[str, ...], str], ...] = (
    (("go.mod",), (), "a Go module (go.mod)"),
    (("Cargo.toml",), (), "a Rust crate (Cargo.toml)"),
    (("dune-project",), ("*.opam",), "an OCaml project (dune-project or *.opam)"),
    (("Setup.hs", "Setup.lhs", "stack.yaml"), ("*.cabal",), "a Haskell package (*.cabal)"),
    (("Makefile.PL", "Build.PL"), (), "a Perl module (Makefile.PL or Build.PL)"),
    (("setup.py", "pyproject.toml"), (), "a Python project (setup.py or pyproject.toml)"),
    (("package.json",), (), "a Node.js package (package.json)"),
    (("pom.xml", "build.gradle", "build.xml"), (), "a Java project (pom.xml, build.gradle or build.xml)"),
    (("DESCRIPTION",), (), "an R package (DESCRIPTION)"),
    ((), ("*.gemspec",), "a Ruby gem (*.gemspec)"),
)


def foreign_ecosystem(srcdir: Path) -> str | None:
    """What foreign ecosystem the tree belongs to (see FOREIGN_ECOSYSTEMS), or None."""
    for names, patterns, label in FOREIGN_ECOSYSTEMS:
        if any((srcdir / name).is_file() for name in names):
            if label.startswith("an R package") and not (srcdir / "NAMESPACE").is_file():
                continue  # DESCRIPTION alone is a common documentation file
            return label
        if any(any(srcdir.glob(pattern)) for pattern in patterns):
            return label
    return None


@dataclass(frozen=True)
class DetectedSystem:
    system: str  # one of the standard systems: autotools, cmake, meson, make
    bootstrap: tuple[tuple[str, ...], ...] = ()  # argument lists run before the system's configure step
    tools: tuple[str, ...] = ()  # platform tools the detected system needs beyond the recipe's
    reason: str = ""  # what was found, for the build log
    subdir: str = ""  # where in the tree the build system is ("" = the top; see `detect_in_tree`)


AUTORECONF = ("autoreconf", "--force", "--install")


_SOURCE_DIRECTORY = re.compile(r"(?:--sourcedirectory|--sourcedir)[= ]([A-Za-z0-9._/-]+)|\s-D\s*([A-Za-z0-9._/-]+)")


def debian_source_directory(series_dir: Path) -> str | None:
    """The subdirectory debian/rules builds in (`dh $@ --sourcedirectory=src`), if it names a safe relative one."""
    rules = series_dir / "debian" / "rules"
    if not rules.is_file() or rules.is_symlink():
        return None
    for line in rules.read_text(encoding="utf-8", errors="replace").splitlines():
        if not re.match(r"^\s*(dh|dh_auto_\w+)\s", line):
            continue
        found = _SOURCE_DIRECTORY.search(line)
        if found:
            value = (found.group(1) or found.group(2)).strip("/")
            parts = value.split("/")
            if value and ".." not in parts and "." not in parts and "$" not in value:
                return value
    return None


_AUTOTOOLS_INPUTS = ("configure.ac", "configure.in", "aclocal.m4", "acinclude.m4")


def autotools_input_newer_than_configure(srcdir: Path) -> str | None:
    """An autoconf or automake input newer than the shipped `configure` (a Debian patch changed it), or None.

    make would then regenerate configure, aclocal.m4 or Makefile.in with the exact automake version that made the
    tarball (sharutils: aclocal-1.14), which the platform does not have, and fail; Debian regenerates them with
    dh_autoreconf, and so does the farm: `autoreconf` first, with the platform's own autotools.
    """
    built = (srcdir / "configure").stat().st_mtime
    candidates = [srcdir / name for name in _AUTOTOOLS_INPUTS]
    candidates += sorted((srcdir / "m4").glob("*.m4")) if (srcdir / "m4").is_dir() else []
    candidates += sorted(srcdir.glob("Makefile.am")) + sorted(srcdir.glob("*/Makefile.am"))
    for path in candidates:
        if path.is_file() and not path.is_symlink() and path.stat().st_mtime > built:
            return str(path.relative_to(srcdir))
    return None


_AM_API_VERSION = re.compile(r"^am__api_version='([0-9]+\.[0-9]+)'", re.M)


def missing_automake(srcdir: Path, system_root: Path) -> str | None:
    """The automake version (`1.14`) that made the shipped configure, when the build's system lacks its aclocal;
    None when configure was not made with automake or that version is there (make then regenerates by itself)."""
    try:
        text = (srcdir / "configure").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    match = _AM_API_VERSION.search(text)
    if match is None or (system_root / "usr" / "bin" / f"aclocal-{match.group(1)}").exists():
        return None
    return match.group(1)


def after_patches(found: DetectedSystem, srcdir: Path, system_root: Path = Path("/")) -> DetectedSystem:
    """`found` for a tree that patches have changed: a shipped configure whose inputs a patch made newer, made by
    an automake the build's system (`system_root`) does not have, is regenerated first (see
    `autotools_input_newer_than_configure`). With the same automake, make regenerates what changed by itself, as
    upstream intended."""
    if found.system != "autotools" or found.bootstrap:
        return found
    changed = autotools_input_newer_than_configure(srcdir)
    version = missing_automake(srcdir, system_root) if changed is not None else None
    if version is None:
        return found
    reason = f"{found.reason}, but a patch made {changed} newer and automake {version} is not here: autoreconf first"
    return dataclasses.replace(found, bootstrap=(AUTORECONF,), tools=("autotools",), reason=reason)


def detect_in_tree(
    srcdir: Path, series_dir: Path | None = None, *, patched: bool = False, system_root: Path = Path("/")
) -> DetectedSystem:
    """The build system at the top of the tree or, when there is none there, in the subdirectory debian/rules
    names (`--sourcedirectory`) or in `src/` (rp-pppoe keeps its configure in src/). `patched`: patches were
    applied to the tree; `system_root`: what the build sees as / (see `after_patches`)."""
    found = _detect_in_tree(srcdir, series_dir)
    return after_patches(found, srcdir / found.subdir, system_root) if patched else found


def _detect_in_tree(srcdir: Path, series_dir: Path | None) -> DetectedSystem:
    try:
        return detect_build_system(srcdir)
    except NoBuildSystem as top:
        candidates = [debian_source_directory(series_dir)] if series_dir is not None else []
        for subdir in (*[c for c in candidates if c], "src"):
            inner = srcdir / subdir
            if not inner.is_dir() or inner.is_symlink() or not inner.resolve().is_relative_to(srcdir.resolve()):
                continue
            try:
                found = detect_build_system(inner)
            except NoBuildSystem:
                continue
            return dataclasses.replace(found, subdir=subdir, reason=f"{found.reason} in {subdir}/")
        raise top


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
    foreign = foreign_ecosystem(srcdir)
    if foreign is not None:
        raise NoBuildSystem(
            f"no supported build system: the tree is {foreign}; generated recipes build C and C++ projects "
            "(autotools, CMake, Meson or a Makefile)"
        )
    for name in ("GNUmakefile", "Makefile", "makefile"):
        if has(name):
            return DetectedSystem("make", reason=f"found {name}")
    raise NoBuildSystem(
        "no build system detected (looked for configure, configure.ac, CMakeLists.txt, meson.build, Makefile)"
    )
