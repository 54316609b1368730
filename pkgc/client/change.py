"""Upgrade, downgrade and rollback: replace installed builds by others, in one transaction each.

Each keeps a package's recorded options, asks the farm in one request for everything it changes (so `upgrade --all`
is one round trip, plus the long-polls for builds in progress), and replaces exactly the packages whose build key
differs. Rollback restores the builds a history entry replaced, by key, so it brings back the very same binaries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pkgc.client.farm_client import FarmClient
from pkgc.client.install import Reporter, SilentReporter, runtime_closure, switch, wait_for_builds
from pkgc.client.remove import dependents
from pkgc.client.transaction import recover
from pkgc.core.errors import ConflictError, NotFound, UsageError
from pkgc.core.names import validate_name
from pkgc.core.options import GLOBAL_OPTION_NAMES
from pkgc.core.versions import Version
from pkgc.core.wire import BuildInfo, PackageRequestModel
from pkgc.localdb.store import InstalledPackage, InstalledStore


@dataclass(frozen=True)
class Change:
    name: str
    old_version: str | None
    new_version: str | None


@dataclass(frozen=True)
class ChangeResult:
    prefix: str
    operation: str
    changes: list[Change] = field(default_factory=list)
    held: list[str] = field(default_factory=list)


@dataclass
class ChangeVersions:
    farm: FarmClient
    store: InstalledStore
    cache_dir: Path
    reporter: Reporter = field(default_factory=SilentReporter)
    pins: Mapping[str, str] = field(default_factory=dict)
    parallel_downloads: int = 4

    def _installed(self, name: str) -> None:
        validate_name(name)
        if self.store.get(name) is None:
            raise NotFound(f"{name} is not installed in {self.store.prefix}")

    def _not_pinned(self, name: str) -> None:
        if name in self.pins:
            raise UsageError(f"{name} is pinned at {self.pins[name]}", hint=f"run 'pkgc unpin {name}' first")

    def upgrade(self, names: list[str], *, every: bool = False) -> ChangeResult:
        recover(self.store)
        if every:
            names = [p.name for p in self.store.packages() if p.requested and p.name not in self.pins]
        elif not names:
            raise UsageError("name packages to upgrade, or use --all")
        for name in names:
            self._installed(name)
            self._not_pinned(name)
        if not names:
            held = sorted(p.name for p in self.store.packages() if p.name in self.pins)
            return ChangeResult(str(self.store.prefix), "upgrade", [], held)
        return self._replace([self._request(name, None) for name in names], "upgrade")

    def downgrade(self, name: str, version: str | None) -> ChangeResult:
        recover(self.store)
        self._installed(name)
        self._not_pinned(name)
        installed = self.store.get(name)
        assert installed is not None
        if version is None:
            older = [v for v in self.farm.details(name).versions if Version(v) < Version(installed.version)]
            if not older:
                raise UsageError(f"{name} {installed.version} is the oldest version the farm knows")
            version = max(older, key=Version)
        elif Version(version) >= Version(installed.version):
            raise UsageError(f"{name} {version} is not older than the installed {installed.version}")
        return self._replace([self._request(name, version)], "downgrade")

    def _request(self, name: str, version: str | None) -> PackageRequestModel:
        installed = self.store.get(name)
        assert installed is not None
        return PackageRequestModel(
            name=name,
            version=version,
            options=dict(installed.options),
            dependency_options=self._dependency_options(installed),
        )

    def _dependency_options(self, package: InstalledPackage) -> dict[str, str | bool] | None:
        """The global options the package's installed dependencies were built with, so that they stay as they are.

        A package's own level (`[packages.NAME.options]`) was not passed on to its dependencies when it was
        installed, so its recorded options are not theirs. None (the farm passes the package's own global options
        on) when it has no installed dependency or they disagree.
        """
        found = []
        for name in package.dependencies:
            dependency = self.store.get(name)
            if dependency is not None:
                found.append({k: v for k, v in dependency.options.items() if k in GLOBAL_OPTION_NAMES})
        if found and all(options == found[0] for options in found):
            return dict(found[0])
        return None

    def _replace(self, requests: list[PackageRequestModel], operation: str) -> ChangeResult:
        resolved = self.farm.resolve(requests)
        builds = wait_for_builds(self.farm, resolved.builds, self.reporter)
        requested = set(resolved.requested)
        by_key = {b.key: b for b in builds}
        # What the requested packages need at run time; build-only dependencies stay on the farm.
        needed = set().union(*(runtime_closure(key, by_key) for key in requested))
        builds = [b for b in builds if b.key in needed]
        wanted: list[tuple[BuildInfo, bool]] = []
        changes: list[Change] = []
        held: list[str] = []
        for build in builds:
            installed = self.store.get(build.name)
            if installed is not None and installed.key == build.key:
                continue
            if installed is not None and build.name in self.pins:
                held.append(build.name)  # a pinned dependency stays as it is
                continue
            if installed is not None and build.key not in requested and operation == "downgrade":
                continue  # a downgrade changes the named package, not its dependencies
            wanted.append((build, installed.requested if installed else build.key in requested))
            changes.append(Change(build.name, installed.version if installed else None, build.version))
        if wanted:
            switch(
                self.store,
                self.farm,
                self.cache_dir,
                self.reporter,
                wanted,
                operation,
                parallel_downloads=self.parallel_downloads,
            )
        held += [p.name for p in self.store.packages() if p.name in self.pins and p.name not in held]
        return ChangeResult(str(self.store.prefix), operation, changes, sorted(set(held)))

    def rollback(self, entry: int | None) -> ChangeResult:
        """Restore the packages as they were before history entry `entry` (default: the last one)."""
        recover(self.store)
        history = self.store.history()
        if not history:
            raise UsageError("nothing to roll back: the history is empty")
        chosen = history[-1] if entry is None else next((h for h in history if h["id"] == entry), None)
        if chosen is None:
            raise NotFound(f"no transaction {entry} in the history", hint="see 'pkgc history'")
        before = {p["name"]: p for p in chosen["before"]}
        after = {p["name"]: p for p in chosen["after"]}
        wanted: list[tuple[BuildInfo, bool]] = []
        changes: list[Change] = []
        for name, package in sorted(before.items()):
            current = self.store.get(name)
            if current is not None and current.key == package["key"]:
                continue
            wanted.append((self.farm.build(package["key"]), bool(package["requested"])))
            changes.append(Change(name, current.version if current else None, package["version"]))
        remove = [name for name in sorted(after) if name not in before and self.store.get(name) is not None]
        needed = dependents(self.store, set(remove))
        if needed:  # a package installed later links it: taking it away would break that package
            name, users = sorted(needed.items())[0]
            raise ConflictError(
                f"rolling back entry {chosen['id']} would remove {name}, which is needed by {', '.join(sorted(users))}",
                hint="roll back the later entries first, or remove those packages",
            )
        for name in remove:
            current = self.store.get(name)
            changes.append(Change(name, current.version if current else None, None))
        if wanted or remove:
            switch(
                self.store,
                self.farm,
                self.cache_dir,
                self.reporter,
                wanted,
                "rollback",
                remove=remove,
                parallel_downloads=self.parallel_downloads,
            )
        return ChangeResult(str(self.store.prefix), "rollback", changes)


@dataclass(frozen=True)
class Outdated:
    name: str
    installed: str
    newest: str
    pinned: str | None


def find_outdated(farm: FarmClient, store: InstalledStore, pins: Mapping[str, str]) -> list[Outdated]:
    """Installed packages whose newest version on the farm is newer; asks the farm, builds nothing."""
    found = []
    for package in store.packages():
        newest = max(farm.details(package.name).versions, key=Version)
        if Version(newest) > Version(package.version):
            found.append(Outdated(package.name, package.version, newest, pins.get(package.name)))
    return found
