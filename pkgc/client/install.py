"""The install use case: resolve on the farm, wait for builds, download, verify, stage, relocate, switch, record.

Everything that can fail is done before the prefix is touched: the prefix length is checked before any download,
artifacts are verified and unpacked into a staging directory inside the prefix (same file system, so the final
moves are renames), conflicts with other packages' files are checked, and only then are files moved into place and
the database written. Progress goes to a Reporter, never to the terminal: this module neither prints nor exits.
"""

from __future__ import annotations

import stat
import time
from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import Protocol

from pkgc.artifact import Manifest, relocate_tree, unpack_artifact
from pkgc.client.farm_client import FarmClient
from pkgc.client.options import OptionLevels
from pkgc.client.transaction import StagedPackage, Transaction, recover
from pkgc.core.errors import BadFarmAnswer, BuildFailed, ConflictError, IntegrityError, UsageError
from pkgc.core.names import parse_spec
from pkgc.core.platform import Platform
from pkgc.core.protocol_rules import MAX_KEYS_PER_REQUEST, BuildStatus, platform_of
from pkgc.core.record import record
from pkgc.core.relocation import check_prefix_fits
from pkgc.core.wire import BuildInfo, ClientPlatform, PackageRequestModel
from pkgc.localdb.store import InstalledFile, InstalledPackage, InstalledStore

LOG_TAIL_LINES = 25


class Reporter(Protocol):
    poll_seconds: float  # how long one long-poll may block: short when a live display wants fresh log lines

    def builds_changed(self, builds: list[BuildInfo]) -> None: ...
    def download_progress(self, name: str, done: int, total: int) -> None: ...
    def installed(self, name: str, version: str) -> None: ...


class SilentReporter:
    poll_seconds = 20.0

    def builds_changed(self, builds: list[BuildInfo]) -> None:
        pass

    def download_progress(self, name: str, done: int, total: int) -> None:
        pass

    def installed(self, name: str, version: str) -> None:
        pass


@record
class InstalledItem:
    name: str
    version: str
    key: str
    action: str  # "installed", "already installed", or "marked as requested" (it was there as a dependency)
    files: int = 0


@record
class PendingRequest:
    """A package left compiling on the farm by `install --background`, to be finished by `pending --install`."""

    spec: str
    key: str
    options: dict[str, str | bool]
    dependency_options: dict[str, str | bool] | None = None  # None in files written before this field existed


@record
class InstallResult:
    prefix: str
    items: list[InstalledItem] = field(default_factory=list)
    seconds: float = 0.0
    pending: list[PendingRequest] = field(default_factory=list)


def _closure(key: str, by_key: Mapping[str, BuildInfo]) -> set[str]:
    """KEY and every build it needs, to build or to run: what must be ready (or has failed) before KEY can be."""
    seen: set[str] = set()
    stack = [key]
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.add(current)
            stack.extend(by_key[current].dependencies)
    return seen


def runtime_closure(key: str, by_key: Mapping[str, BuildInfo]) -> set[str]:
    """KEY and the builds it needs at run time, transitively: what goes into the prefix.

    A build's `dependencies` are the keys of everything it was built with; those whose package is among its
    `runtime_dependencies` are needed to run it. Build-only dependencies (a code generator, a build tool) stay on the
    farm, and so do their own dependencies.
    """
    seen: set[str] = set()
    stack = [key]
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        build = by_key[current]
        runtime = set(build.runtime_dependencies)
        stack.extend(k for k in build.dependencies if by_key[k].name in runtime)
    return seen


def _one_build_per_package(requested: list[str], by_key: Mapping[str, BuildInfo]) -> None:
    """Refuse, before anything compiles or downloads, a request whose packages need two builds of one package.

    A prefix holds one build of each package: `install usesgen greet@1.0`, where usesgen runs with the newest greet,
    cannot have both.
    """
    chosen: dict[str, BuildInfo] = {}
    for key in requested:
        for needed in sorted(runtime_closure(key, by_key)):
            build = by_key[needed]
            first = chosen.setdefault(build.name, build)
            if first.key != build.key:
                what = f"{first.version} and {build.version}" if first.version != build.version else "two option sets"
                raise ConflictError(
                    f"these packages need two different builds of {build.name} ({what}); a prefix holds one",
                    hint="install them one at a time, or ask for the build the others need",
                )


@record(frozen=False)
class InstallPackages:
    farm: FarmClient
    store: InstalledStore
    cache_dir: Path
    reporter: Reporter = field(default_factory=SilentReporter)
    parallel_downloads: int = 4

    def __call__(
        self,
        specs: list[str],
        levels: OptionLevels | None = None,
        *,
        wait: bool = True,
        retry_failed: bool = False,
    ) -> InstallResult:
        """Install `specs` with the options their levels give each (see client/options.py); the caller holds the lock."""
        levels = levels or OptionLevels()
        requests = []
        for spec in specs:
            name, version = parse_spec(spec)
            requests.append(
                PackageRequestModel(
                    name=name,
                    version=version,
                    options=levels.for_package(name),
                    dependency_options=levels.for_dependencies(),
                )
            )
        return self.install_requests(specs, requests, wait=wait, retry_failed=retry_failed)

    def install_requests(
        self,
        specs: list[str],
        requests: list[PackageRequestModel],
        *,
        wait: bool = True,
        retry_failed: bool = False,
    ) -> InstallResult:
        """Install the exact `requests` (one per spec, options already decided); the caller holds the lock."""
        started = time.monotonic()
        prefix = self.store.prefix
        check_prefix_fits(str(prefix))
        if not specs:
            raise UsageError("name at least one package to install")
        recover(self.store)
        resolved = self.farm.resolve(requests, retry_failed=retry_failed)
        requested = set(resolved.requested)
        for build in resolved.builds:  # refuse before anything compiles or downloads
            existing = self.store.get(build.name)
            if existing is not None and existing.key != build.key and build.key in requested:
                raise ConflictError(
                    f"{build.name} {existing.version} is already installed with other options or version",
                    hint=f"use 'pkgc upgrade {build.name}' or 'pkgc downgrade', or remove it first",
                )
        by_key = {b.key: b for b in resolved.builds}
        _one_build_per_package(resolved.requested, by_key)
        groups = [
            (spec, request, key, _closure(key, by_key))
            for spec, request, key in zip(specs, requests, resolved.requested, strict=True)
        ]
        items: list[InstalledItem] = []
        pending: list[PendingRequest] = []
        installed_keys: set[str] = set()
        self.reporter.builds_changed(resolved.builds)
        while groups:
            # What is ready goes in before a failure stops the command, also when the failure was known at once.
            ready = [g for g in groups if all(by_key[k].status == BuildStatus.READY for k in g[3])]
            if ready:
                # Each package goes in as soon as it and its dependencies are built: one transaction per group,
                # with what it needs at run time (build-only dependencies stay on the farm).
                keys = set().union(*(runtime_closure(g[2], by_key) for g in ready)) - installed_keys
                builds = [b for b in resolved.builds if b.key in keys]
                items += self._install_builds([by_key[b.key] for b in builds], requested)
                installed_keys |= keys
                groups = [g for g in groups if g not in ready]
                continue
            failed = [
                by_key[k] for _, _, _, closure in groups for k in closure if by_key[k].status == BuildStatus.FAILED
            ]
            if failed:
                raise _failure(self.farm, failed[0])
            if not wait:
                pending = [
                    PendingRequest(
                        spec,
                        key,
                        dict(request.options),
                        None if request.dependency_options is None else dict(request.dependency_options),
                    )
                    for spec, request, key, _ in groups
                ]
                break
            # At most MAX_KEYS_PER_REQUEST keys per wait (a generated recipe's closure can be larger); the farm
            # builds the others all the same, and they are watched once these finish.
            waiting = sorted({k for g in groups for k in g[3] if not by_key[k].status.finished})[:MAX_KEYS_PER_REQUEST]
            answer = self.farm.wait(
                waiting, timeout=self.reporter.poll_seconds, seen={k: by_key[k].status for k in waiting}
            )
            for info in [*answer.finished, *answer.progress]:
                by_key[info.key] = info
            self.reporter.builds_changed(list(by_key.values()))
        return InstallResult(str(prefix), items, time.monotonic() - started, pending)

    def _install_builds(self, builds: list[BuildInfo], requested: set[str]) -> list[InstalledItem]:
        items: list[InstalledItem] = []
        wanted: list[tuple[BuildInfo, bool]] = []
        marked: list[str] = []
        for build in builds:
            existing = self.store.get(build.name)
            if existing is not None and build.key in requested and not existing.requested:
                # Asked for by name, it was there as a dependency: it is the user's now (autoremove leaves it).
                marked.append(build.name)
                items.append(InstalledItem(build.name, existing.version, existing.key, "marked as requested"))
            elif existing is not None:
                # The same build, or a dependency already present in some build: keep what is there.
                items.append(InstalledItem(build.name, existing.version, existing.key, "already installed"))
            else:
                wanted.append((build, build.key in requested))
        self.store.mark_requested(marked)
        if wanted:
            staged = switch(
                self.store,
                self.farm,
                self.cache_dir,
                self.reporter,
                wanted,
                "install",
                parallel_downloads=self.parallel_downloads,
            )
            for build, _ in wanted:
                items.append(
                    InstalledItem(build.name, build.version, build.key, "installed", _count(staged, build.name))
                )
        return items


def _count(staged: list[StagedPackage], name: str) -> int:
    return sum(1 for s in staged if s.package.name == name for f in s.files if f.type != "dir")


def download_builds(
    farm: FarmClient, builds: list[BuildInfo], cache_dir: Path, reporter: Reporter, parallel: int
) -> dict[str, Path]:
    """Download (or find in the cache) every artifact, `parallel` at a time, each checked against its sha256."""

    def fetch(build: BuildInfo) -> tuple[str, Path]:
        assert build.url and build.sha256
        path = farm.download(
            build.url,
            cache_dir / "artifacts" / f"{build.sha256}.tar.zst",
            build.sha256,
            lambda done, total: reporter.download_progress(build.name, done, total),
            size=build.size,
        )
        return build.key, path

    if parallel <= 1 or len(builds) <= 1:
        return dict(fetch(build) for build in builds)
    from concurrent.futures import ThreadPoolExecutor  # here: one download (the usual install) needs no pool

    with ThreadPoolExecutor(max_workers=parallel) as pool:
        return dict(pool.map(fetch, builds))


def check_runs_here(manifest: Manifest, build: BuildInfo, here: ClientPlatform) -> None:
    """Refuse an artifact built for a platform this machine cannot run (another architecture or C library, a newer
    C library) or for a CPU level its processor lacks: installed, it would fail at its first run, or worse."""
    try:
        built_for = Platform.from_dict(manifest.platform)
    except UsageError as exc:
        raise BadFarmAnswer(f"the artifact of {build.name} names no valid platform ({exc.message})") from None
    machine = platform_of(here)
    if not machine.can_run(built_for):
        raise BadFarmAnswer(
            f"the farm sent a build of {build.name} made for {built_for}, which does not run on this machine "
            f"({machine}); nothing was installed"
        )
    cpu = manifest.options.get("cpu")
    if cpu is not None and cpu not in here.cpu_levels:
        raise BadFarmAnswer(
            f"the farm sent a build of {build.name} for cpu={str(cpu)[:40]!r}, which this machine's processor cannot "
            f"run (it runs {', '.join(here.cpu_levels)}); nothing was installed"
        )


def stage_build(
    build: BuildInfo, artifact: Path, requested: bool, transaction: Transaction, here: ClientPlatform
) -> StagedPackage:
    """Unpack (through the allowlist) and relocate one verified artifact into the transaction's staging area.

    The manifest's platform is checked against `here` before any file is unpacked; an artifact refused for it is
    dropped from the download cache too (its bytes name the other platform, so they can never install here).
    """
    root = transaction.stage_dir / build.name
    try:
        manifest = unpack_artifact(artifact, root, lambda found: check_runs_here(found, build, here))
    except BadFarmAnswer:
        artifact.unlink(missing_ok=True)
        raise
    if manifest.key != build.key or manifest.name != build.name:
        raise IntegrityError(f"artifact of {build.name} carries another build's manifest")
    digests = relocate_tree(root, manifest, str(transaction.store.prefix))
    package = InstalledPackage(
        name=build.name,
        version=build.version,
        key=build.key,
        options=build.options,
        requested=requested,
        dependencies=list(build.runtime_dependencies),
        installed_at=time.time(),
    )
    return StagedPackage(package, _describe(root, manifest, digests), root)


def check_conflicts(store: InstalledStore, staged: list[StagedPackage], replacing: set[str]) -> None:
    """Stop before touching anything if a new file belongs to another package or to nobody."""
    leaving = replacing | {s.package.name for s in staged}
    claimed: dict[str, str] = {}
    for item in staged:
        name = item.package.name
        paths = [f.path for f in item.files if f.type != "dir"]
        for path in paths:
            if path in claimed:
                raise ConflictError(f"{path} is shipped by both {claimed[path]} and {name}", hint="nothing was changed")
            claimed[path] = name
        owners = store.owners(paths)
        for path, owner in owners.items():
            if owner not in leaving:
                raise ConflictError(f"{path} is owned by {owner}, and {name} ships it too", hint="nothing was changed")
        for file in item.files:
            target = store.prefix / file.path
            if file.type != "dir" and file.path not in owners and (target.exists() or target.is_symlink()):
                raise ConflictError(f"{target} exists and belongs to no package", hint="move it away and retry")
            if file.type == "dir" and target.exists() and not target.is_dir():
                raise ConflictError(f"{target} exists and is not a directory")


def _describe(staging: Path, manifest: Manifest, digests: dict[str, str]) -> list[InstalledFile]:
    """The files as they will be on disk, relocated (`digests`: their sha256 as relocate_tree read them): these
    hashes are what `verify` compares later."""
    described = []
    for entry in manifest.files:
        path = staging / entry.path
        if entry.type == "file":
            info = path.stat()
            described.append(
                InstalledFile(entry.path, "file", digests[entry.path], info.st_size, stat.S_IMODE(info.st_mode))
            )
        elif entry.type == "symlink":
            described.append(InstalledFile(entry.path, "symlink", target=entry.target))
        else:
            described.append(InstalledFile(entry.path, "dir", mode=entry.mode))
    return described


def wait_for_builds(farm: FarmClient, builds: list[BuildInfo], reporter: Reporter) -> list[BuildInfo]:
    """Long-poll until every build finished; a failed one stops the install with the tail of its log."""
    current = {b.key: b for b in builds}
    reporter.builds_changed(list(current.values()))
    while True:
        failed = [b for b in current.values() if b.status == BuildStatus.FAILED]
        if failed:
            raise _failure(farm, failed[0])
        pending = [k for k, b in current.items() if not b.status.finished]
        if not pending:
            return [current[b.key] for b in builds]
        # A wait names at most MAX_KEYS_PER_REQUEST keys (a generated recipe's closure can be larger): the first
        # ones, dependencies first as the farm planned them, so those that can finish first are watched.
        pending = pending[:MAX_KEYS_PER_REQUEST]
        answer = farm.wait(pending, timeout=reporter.poll_seconds, seen={k: current[k].status for k in pending})
        for info in [*answer.finished, *answer.progress]:
            current[info.key] = info
        reporter.builds_changed(list(current.values()))


def _failure(farm: FarmClient, build: BuildInfo) -> BuildFailed:
    tail = ""
    if build.log_url:
        log = farm.build_log(build.key, build.log_url)
        tail = "\n".join(log.rstrip().splitlines()[-LOG_TAIL_LINES:])
    return BuildFailed(
        f"build of {build.name}@{build.version} failed: {build.error or 'see the log'}",
        hint=f"full log: {farm.base_url}/v1/builds/{build.key}/log; to try the build again, add --retry-failed",
        details=tail,
    )


def switch(
    store: InstalledStore,
    farm: FarmClient,
    cache_dir: Path,
    reporter: Reporter,
    wanted: list[tuple[BuildInfo, bool]],
    operation: str,
    remove: list[str] | None = None,
    parallel_downloads: int = 4,
) -> list[StagedPackage]:
    """Download and stage `wanted` builds, check conflicts, then switch in one transaction."""
    with Transaction(store, operation) as transaction:
        artifacts = download_builds(farm, [b for b, _ in wanted], cache_dir, reporter, parallel_downloads)
        staged = [
            stage_build(build, artifacts[build.key], requested, transaction, farm.platform)
            for build, requested in wanted
        ]
        replacing = {*(remove or []), *(b.name for b, _ in wanted if store.get(b.name) is not None)}
        check_conflicts(store, staged, replacing=replacing)
        transaction.apply(add=staged, remove=remove or [])
    for build, _ in wanted:
        reporter.installed(build.name, build.version)
    return staged
