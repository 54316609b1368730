"""The remove and autoremove use cases: delete exactly the files packages own, in one transaction each.

`remove` refuses to break a package that needs what it removes (unless --cascade). A package installed only as a
dependency (not `requested`) that no requested package needs any more, directly or through others, is "no longer
needed": `remove` names them, and `autoremove` removes them all in one transaction (one history entry, so a rollback
brings them back).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pkgc.client.transaction import Transaction, recover
from pkgc.core.errors import ConflictError, NotFound
from pkgc.core.names import validate_name
from pkgc.localdb.store import InstalledStore


@dataclass(frozen=True)
class RemovedItem:
    name: str
    version: str
    files: int


@dataclass(frozen=True)
class RemoveResult:
    prefix: str
    removed: list[RemovedItem] = field(default_factory=list)
    no_longer_needed: list[str] = field(default_factory=list)  # what `pkgc autoremove` would remove now


def unused_packages(store: InstalledStore) -> list[str]:
    """Installed packages that were not asked for and that no requested package needs, even through others."""
    packages = {p.name: p for p in store.packages()}
    needed: set[str] = set()
    stack = [name for name, package in packages.items() if package.requested]
    while stack:
        name = stack.pop()
        if name in needed or name not in packages:
            continue
        needed.add(name)
        stack.extend(packages[name].dependencies)
    return sorted(set(packages) - needed)


def _describe(store: InstalledStore, names: list[str]) -> list[RemovedItem]:
    items = []
    for name in names:
        package = store.get(name)
        assert package is not None
        items.append(RemovedItem(name, package.version, sum(1 for f in store.files(name) if f.type != "dir")))
    return items


def autoremove(store: InstalledStore, *, dry_run: bool = False) -> RemoveResult:
    """Remove every package that is no longer needed, in one transaction; `dry_run` only says which."""
    recover(store)
    targets = unused_packages(store)
    removed = _describe(store, targets)
    if targets and not dry_run:
        with Transaction(store, "autoremove") as transaction:
            transaction.apply(add=[], remove=targets)
    return RemoveResult(prefix=str(store.prefix), removed=removed)


def dependents(store: InstalledStore, names: set[str]) -> dict[str, list[str]]:
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
    recover(store)
    targets: set[str] = set()
    for name in names:
        validate_name(name)
        if store.get(name) is None:
            raise NotFound(f"{name} is not installed in {store.prefix}")
        targets.add(name)
    needed = dependents(store, targets)
    while needed and cascade:
        targets |= {dependent for users in needed.values() for dependent in users}
        needed = dependents(store, targets)
    if needed:
        name, users = sorted(needed.items())[0]
        raise ConflictError(
            f"{name} is needed by {', '.join(sorted(users))}",
            hint="remove those too, or use --cascade",
        )
    removed = _describe(store, sorted(targets))
    with Transaction(store, "remove") as transaction:
        transaction.apply(add=[], remove=sorted(targets))
    return RemoveResult(prefix=str(store.prefix), removed=removed, no_longer_needed=unused_packages(store))
