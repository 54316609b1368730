"""Read-only questions about a prefix: which files a package owns, who owns a file, and whether disk matches."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from pkgc.client.hashing import sha256_file
from pkgc.core.errors import NotFound, UsageError
from pkgc.core.names import validate_name
from pkgc.localdb.store import InstalledFile, InstalledStore


def package_files(store: InstalledStore, name: str) -> list[InstalledFile]:
    validate_name(name)
    if store.get(name) is None:
        raise NotFound(f"{name} is not installed in {store.prefix}")
    return store.files(name)


def owner_of(store: InstalledStore, path: str) -> tuple[str, str]:
    """(package, path relative to the prefix) for an absolute path in the prefix or a path relative to it."""
    candidate = Path(path)
    if candidate.is_absolute():
        try:
            candidate = Path(os.path.normpath(candidate)).relative_to(store.prefix)
        except ValueError:
            raise UsageError(f"{path} is not inside the prefix {store.prefix}") from None
    relative = candidate.as_posix()
    owner = store.owners([relative]).get(relative)
    if owner is None:
        raise NotFound(f"no installed package owns {relative}")
    return owner, relative


@dataclass(frozen=True)
class Problem:
    package: str
    path: str
    kind: str  # "missing", "modified", "mode changed", "not a symlink", "symlink changed"
    detail: str = ""


def verify(store: InstalledStore, names: list[str] | None = None) -> list[Problem]:
    """Compare every recorded file with the disk: present, same content (sha256), same mode, same link target."""
    if names:
        for name in names:
            package_files(store, name)  # raises for a package that is not installed
        packages = names
    else:
        packages = [p.name for p in store.packages()]
    problems: list[Problem] = []
    for name in packages:
        for file in store.files(name):
            path = store.prefix / file.path
            if not path.is_symlink() and not path.exists():
                problems.append(Problem(name, file.path, "missing"))
            elif file.type == "symlink":
                if not path.is_symlink():
                    problems.append(Problem(name, file.path, "not a symlink"))
                elif os.readlink(path) != file.target:
                    problems.append(Problem(name, file.path, "symlink changed", os.readlink(path)))
            elif path.is_symlink() or not path.is_file():
                problems.append(Problem(name, file.path, "modified", "no longer a regular file"))
            elif sha256_file(path) != file.sha256:
                problems.append(Problem(name, file.path, "modified", "content differs"))
            elif stat.S_IMODE(path.stat().st_mode) != file.mode:
                problems.append(
                    Problem(name, file.path, "mode changed", f"{file.mode:o} -> {stat.S_IMODE(path.stat().st_mode):o}")
                )
    return problems
