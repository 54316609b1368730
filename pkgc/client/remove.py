"""The remove use case: delete exactly the files a package owns, refuse to break a dependent, prune empty dirs."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from pkgc.core.errors import ConflictError, NotFound
from pkgc.core.names import validate_name
from pkgc.localdb.store import STATE_DIR, InstalledStore


@dataclass(frozen=True)
class RemovedItem:
    name: str
    version: str
    files: int


@dataclass(frozen=True)
class RemoveResult:
    prefix: str
    removed: list[RemovedItem] = field(default_factory=list)


def _dependents(store: InstalledStore, names: set[str]) -> dict[str, list[str]]:
    """For each of `names`, the installed packages outside `names` that need it at run time."""
    needed: dict[str, list[str]] = {}
    for package in store.packages():
        if package.name in names:
            continue
        for dependency in package.dependencies:
            if dependency in names:
                needed.setdefault(dependency, []).append(package.name)
    return needed


def remove_packages(store: InstalledStore, names: list[str], *, cascade: bool = False) -> RemoveResult:
    targets: set[str] = set()
    for name in names:
        validate_name(name)
        if store.get(name) is None:
            raise NotFound(f"{name} is not installed in {store.prefix}")
        targets.add(name)
    needed = _dependents(store, targets)
    while needed and cascade:
        targets |= {dependent for dependents in needed.values() for dependent in dependents}
        needed = _dependents(store, targets)
    if needed:
        name, dependents = sorted(needed.items())[0]
        raise ConflictError(
            f"{name} is needed by {', '.join(sorted(dependents))}",
            hint="remove those too, or use --cascade",
        )
    removed: list[RemovedItem] = []
    for name in sorted(targets):
        package = store.get(name)
        assert package is not None
        files = store.files(name)
        directories: set[Path] = set()
        for file in files:
            path = store.prefix / file.path
            if path.is_symlink() or path.exists():
                path.unlink()
            directories.update(_parents_inside(path, store.prefix))
        store.record_removal([name])
        _prune(directories, store.prefix)
        removed.append(RemovedItem(name, package.version, len(files)))
    return RemoveResult(prefix=str(store.prefix), removed=removed)


def _parents_inside(path: Path, prefix: Path) -> list[Path]:
    parents = []
    for parent in path.parents:
        if parent == prefix or prefix not in parent.parents:
            break
        parents.append(parent)
    return parents


def _prune(directories: set[Path], prefix: Path) -> None:
    """Remove directories left empty, deepest first; never the prefix or pkgc's own state."""
    for directory in sorted(directories, key=lambda p: len(p.parts), reverse=True):
        if directory.name == STATE_DIR and directory.parent == prefix:
            continue
        with contextlib.suppress(OSError):  # not empty: another package's files, or the user's
            os.rmdir(directory)
