"""The remove use case: delete exactly the files a package owns (in one transaction), refuse to break a dependent."""

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
    removed = []
    for name in sorted(targets):
        package = store.get(name)
        assert package is not None
        removed.append(RemovedItem(name, package.version, sum(1 for f in store.files(name) if f.type != "dir")))
    with Transaction(store, "remove") as transaction:
        transaction.apply(add=[], remove=sorted(targets))
    return RemoveResult(prefix=str(store.prefix), removed=removed)
