"""The NEEDED check after packing: every library an artifact's ELF files need must be somewhere a client has it.

A client installs the artifact with its runtime dependencies' artifacts and nothing else; the only libraries its
system is assumed to have are the build platform's base libraries (the toolchain definition's `base_libraries`,
manylinux's policy: libc, libm, libstdc++, ...). A binary that needs anything else (a library of the build host,
of a build-only dependency) would fail at run time on a client without it, so the build fails instead, naming the
file and the library.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from pkgc.core.elf import ElfError, read_dynamic_file
from pkgc.core.relocation import PLACEHOLDER


class UnsatisfiedLibrary(Exception):
    """An ELF file of the artifact needs a library that neither it, its runtime dependencies nor the base provide,
    or looks for libraries outside the prefix it is installed into."""


def _inside_prefix(entry: str) -> bool:
    """A RUNPATH entry a client can trust: the (relocated) prefix, or a path relative to the binary itself."""
    return entry == PLACEHOLDER or entry.startswith((PLACEHOLDER + "/", "$ORIGIN", "${ORIGIN}"))


def _regular_files(tree: Path) -> Iterable[Path]:
    for current, _dirs, files in os.walk(tree):
        for name in sorted(files):
            path = Path(current) / name
            if path.is_file() and not path.is_symlink():
                yield path


def provided_libraries(tree: Path) -> set[str]:
    """The sonames a tree provides: each shared library's DT_SONAME, and the name of every `*.so*` file or symlink
    (the loader finds a library by the file name in NEEDED, which is the soname or, without one, the link name)."""
    found: set[str] = set()
    for current, _dirs, files in os.walk(tree):
        for name in files:
            path = Path(current) / name
            if ".so" in name:
                found.add(name)
            if path.is_symlink() or not path.is_file():
                continue
            try:
                info = read_dynamic_file(path)
            except (ElfError, OSError):
                continue
            if info is not None and info.soname:
                found.add(info.soname)
    return found


def check_needed(
    staged: Path,
    *,
    base_sonames: Iterable[str],
    runtime_trees: Iterable[Path],
    toolchain: str,
    log: Callable[[str], None] = lambda line: None,
) -> int:
    """Check every ELF file of `staged`; return how many were checked, raise UnsatisfiedLibrary at the first miss.

    `runtime_trees` are the unpacked runtime dependencies (their whole runtime closure).
    """
    available = set(base_sonames) | provided_libraries(staged)
    for tree in runtime_trees:
        available |= provided_libraries(tree)
    checked = 0
    for path in _regular_files(staged):
        try:
            info = read_dynamic_file(path)
        except ElfError as exc:
            log(f"pkgc: NEEDED check: {path.relative_to(staged)} is not a readable ELF file ({exc}); skipped")
            continue
        if info is None or not info.is_dynamic:
            continue
        checked += 1
        for library in info.needed:
            if library not in available or "/" in library:
                raise UnsatisfiedLibrary(
                    f"{path.relative_to(staged)} needs {library}, which is neither in the artifact, in its runtime "
                    f"dependencies nor a base library of toolchain {toolchain}"
                )
        # A search path outside the prefix (the farm's work directory, through a dependency's libtool file, say)
        # would make every client look for libraries in a directory that anyone might create on its machine.
        for entry in info.search_path:
            if not _inside_prefix(entry):
                raise UnsatisfiedLibrary(
                    f"{path.relative_to(staged)} looks for libraries in {entry[:200]}, outside its prefix (RUNPATH)"
                )
    return checked
