"""`pkgc farm reset`: start the embedded farm's database afresh, keeping the artifacts it built.

The database is the only record of which builds exist, but every artifact carries a manifest naming the build it
came from. After a reset the farm re-adopts an artifact when that manifest proves the build: the artifact unpacks
cleanly with every file matching the manifest, the blob's name agrees with it (a content-addressed blob,
`artifacts/sha256/xx/<sha256>.tar.zst`, is named by its bytes' sha256; an older farm's `artifacts/xx/<key>.tar.zst`
by the manifest's key), today's recipe with the manifest's version and options plans exactly the manifest's key (so
name, version, options, platform and dependencies agree), and the blob's sha256 agrees with the one its build log
recorded when it was packed (the log is found by that line; an older farm's by the key). What cannot be proven is
left where it is and reported: a later request simply builds it again.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pkgc.artifact import unpack_artifact
from pkgc.core.buildspec import PackageRequest, plan_builds
from pkgc.core.errors import ConflictError, PkgcError
from pkgc.core.platform import Platform
from pkgc.core.protocol import BuildStatus
from pkgc.farm.adapters.local import SqliteBuildStore, checkpoint_farm_database, open_farm_database
from pkgc.farm.blobnames import CONTENT_BLOB_NAME
from pkgc.farm.bootstrap import FarmConfig, farm_service, open_ports
from pkgc.farm.embedded import FARM_UMASK, SkippedRecipe, publish_recipes
from pkgc.farm.lifecycle import home_is_locked
from pkgc.farm.paths import FarmPaths
from pkgc.farm.ports import BuildRecord, content_blob_name
from pkgc.farm.service import FarmService

_KEY = re.compile(r"[0-9a-f]{64}")
_PACKED = re.compile(rb"^pkgc: packed (\d+) bytes, sha256 ([0-9a-f]{64})$", re.MULTILINE)


class FarmRunning(ConflictError):
    """The farm is running (or starting); resetting its database under it would lose what it is doing."""


class NotProven(PkgcError):
    """An artifact whose manifest does not prove the build it claims; it is left out of the new database."""


@dataclass(frozen=True)
class Adopted:
    key: str
    name: str
    version: str


@dataclass
class ResetReport:
    """What a reset did: where the old database went, which builds came back, and what was left out and why."""

    moved_aside: list[Path] = field(default_factory=list)
    adopted: list[Adopted] = field(default_factory=list)
    left_out: list[tuple[str, str]] = field(default_factory=list)  # (artifact file, one-line reason)
    skipped_recipes: list[SkippedRecipe] = field(default_factory=list)


@contextmanager
def _no_farm_starts(paths: FarmPaths) -> Iterator[None]:
    """Hold the client's launch lock, so no farm starts during the reset; refuse if one is starting right now."""
    paths.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    with (paths.home / "launch.lock").open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FarmRunning(
                "the embedded farm is starting", hint="stop it with 'pkgc farm stop' before 'pkgc farm reset'"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_stopped(home: Path) -> None:
    """Raise FarmRunning if a supervisor serves `home`: it holds the home's lock for its whole life (a pid in a state
    file left by a killed farm may belong to any process by now, so the lock is what counts)."""
    if home_is_locked(home):
        raise FarmRunning("the embedded farm is running", hint="stop it with 'pkgc farm stop' before 'pkgc farm reset'")


def _move_database_aside(paths: FarmPaths) -> list[Path]:
    """Keep the old database (and its WAL) under a dated name instead of deleting it: nothing stored is destroyed."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    moved: list[Path] = []
    for suffix in ("", "-wal", "-shm"):
        current = paths.database.with_name(paths.database.name + suffix)
        if current.exists():
            target = paths.database.with_name(f"{paths.database.name}.reset-{stamp}{suffix}")
            os.replace(current, target)
            moved.append(target)
    return moved


def legacy_artifact_name(key: str) -> str:
    """Where a farm before content-addressed blobs stored a build's artifact (by its key)."""
    return f"artifacts/{key[:2]}/{key}.tar.zst"


def legacy_log_name(key: str) -> str:
    return f"logs/{key[:2]}/{key}.log"


def _packed_line(log: bytes) -> tuple[int, str] | None:
    found = _PACKED.findall(log)
    return (int(found[-1][0]), found[-1][1].decode()) if found else None


def logs_by_artifact(paths: FarmPaths) -> dict[str, str]:
    """{artifact sha256: log blob name} from the "packed" line each content-addressed build log ends with."""
    found: dict[str, str] = {}
    for log in sorted((paths.blobs / "logs" / "sha256").glob("*/*.log")):
        name = log.relative_to(paths.blobs).as_posix()
        if not CONTENT_BLOB_NAME.fullmatch(name):
            continue
        try:
            with log.open("rb") as handle:
                handle.seek(max(0, log.stat().st_size - 65536))
                packed = _packed_line(handle.read())
        except OSError:
            continue
        if packed is not None:
            found.setdefault(packed[1], name)
    return found


def prove(
    service: FarmService, paths: FarmPaths, blob: Path, now: float, logs: dict[str, str] | None = None
) -> BuildRecord:
    """The ready build record an artifact blob proves, or NotProven saying what does not agree."""
    name = blob.relative_to(paths.blobs).as_posix()
    digest = hashlib.sha256()
    with blob.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    sha256, size = digest.hexdigest(), blob.stat().st_size
    content_addressed = CONTENT_BLOB_NAME.fullmatch(name) is not None
    if content_addressed:
        if name != content_blob_name("artifacts", sha256):
            raise NotProven(f"its sha256 {sha256[:12]} is not the one its name gives")
    else:
        key = blob.name.removesuffix(".tar.zst")
        if not _KEY.fullmatch(key) or name != legacy_artifact_name(key):
            raise NotProven("not named like a build's artifact")
    with tempfile.TemporaryDirectory(prefix=".reset-", dir=paths.home) as scratch:
        manifest = unpack_artifact(blob, Path(scratch) / "tree")  # every file must match the manifest
    key = manifest.key if content_addressed else blob.name.removesuffix(".tar.zst")
    if manifest.key != key:
        raise NotProven(f"its manifest names build {manifest.key[:12]}, not {key[:12]}")
    request = PackageRequest(manifest.name, manifest.version, manifest.options)
    try:
        platform = Platform.from_dict(manifest.platform)
    except PkgcError as exc:
        raise NotProven(f"its manifest names no valid platform: {exc}") from None
    if platform not in service.platforms:
        raise NotProven(f"it was built for {platform}, which this farm does not build for")
    try:
        specs, requested = plan_builds([request], service.recipe, platform)
    except PkgcError as exc:
        raise NotProven(f"{manifest.name} {manifest.version} cannot be planned today: {exc}") from None
    spec = next(s for s in specs if s.key == requested[0])
    if spec.key != key:
        raise NotProven(f"the recipe of {manifest.name} {manifest.version} with its options no longer gives this key")
    if (
        (spec.name, spec.version) != (manifest.name, manifest.version)
        or spec.options.as_dict() != manifest.options
        or spec.platform.as_dict() != manifest.platform
        or [list(pair) for pair in spec.dependencies] != manifest.dependencies
    ):
        raise NotProven("its manifest does not agree with the build its key stands for")
    log: str | None
    if content_addressed:
        log = (logs or {}).get(sha256)
    else:
        log = legacy_log_name(key)
        recorded = service.blobs.get_bytes(log)
        packed = _packed_line(recorded) if recorded is not None else None
        if packed is not None and packed[1] != sha256:
            raise NotProven(f"its sha256 {sha256[:12]} is not the {packed[1][:12]} its build log recorded")
        if recorded is None:
            log = None
    return BuildRecord(
        key=key,
        name=spec.name,
        version=spec.version,
        options=spec.options.as_dict(),
        spec=spec.to_json(),
        status=BuildStatus.READY,
        dependencies=tuple(dep_key for _, dep_key in spec.dependencies),
        runtime_dependencies=spec.runtime_dependencies,
        artifact=name,
        sha256=sha256,
        size=size,
        log=log,
        created_at=now,
        updated_at=now,
        enqueued_at=now,
        platform=str(spec.platform),
    )


def artifact_blobs(paths: FarmPaths) -> list[Path]:
    """Every artifact file in the blob directory, in both layouts, except files being written when the farm
    stopped (temporary names start with a dot)."""
    root = paths.blobs / "artifacts"
    found = {*root.glob("sha256/*/*.tar.zst"), *root.glob("*/*.tar.zst")}
    return sorted(path for path in found if not path.name.startswith("."))


def reset_farm(home: Path, clock: float | None = None) -> ResetReport:
    """Move the database aside, create a fresh one with the recipes, and re-adopt every artifact that proves itself.

    Refuses (FarmRunning) while the farm runs or starts. Artifacts, logs and the source cache stay where they are.
    """
    paths = FarmPaths(home)
    report = ResetReport()
    now = clock if clock is not None else time.time()
    with _no_farm_starts(paths):
        ensure_stopped(home)
        report.moved_aside = _move_database_aside(paths)
        previous = os.umask(FARM_UMASK)  # the new database is the user's alone, like the farm's other files
        try:
            engine = open_farm_database(paths.database)
            try:
                config = FarmConfig.local(paths.home)
                ports = open_ports(config, engine=engine)
                service = farm_service(config, ports=ports)
                report.skipped_recipes = publish_recipes(service)
                store = ports.builds
                assert isinstance(store, SqliteBuildStore)  # the local backend: adopt_ready is its own
                logs = logs_by_artifact(paths)
                for blob in artifact_blobs(paths):
                    name = blob.relative_to(paths.blobs).as_posix()
                    try:
                        record = prove(service, paths, blob, now, logs)
                    except PkgcError as exc:
                        report.left_out.append((name, " ".join(exc.message.split())))
                        continue
                    except OSError as exc:
                        report.left_out.append((name, f"cannot be read: {exc.strerror or exc}"))
                        continue
                    if store.adopt_ready(record):
                        report.adopted.append(Adopted(record.key, record.name, record.version))
            finally:
                checkpoint_farm_database(engine, "TRUNCATE")
        finally:
            os.umask(previous)
    return report
