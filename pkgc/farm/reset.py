"""`pkgc farm reset`: start the embedded farm's database afresh, keeping the artifacts it built.

The database is the only record of which builds exist, but every artifact carries a manifest naming the build it
came from. After a reset the farm re-adopts an artifact when that manifest proves the build: the artifact unpacks
cleanly with every file matching the manifest, the manifest's key is the key the blob is stored under, today's
recipe with the manifest's version and options plans exactly that key (so name, version, options, platform and
dependencies agree), and the blob's sha256 agrees with the one its build log recorded when it was packed. What
cannot be proven is left where it is and reported: a later request simply builds it again.
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
from pkgc.core.protocol import BuildStatus
from pkgc.farm.adapters.local import SqliteBuildStore, checkpoint_farm_database, open_farm_database
from pkgc.farm.embedded import FARM_UMASK, SkippedRecipe, build_service, publish_recipes
from pkgc.farm.lifecycle import home_is_locked
from pkgc.farm.paths import FarmPaths
from pkgc.farm.ports import BuildRecord
from pkgc.farm.service import FarmService, artifact_blob_name, log_blob_name

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


def _packed_sha256(service: FarmService, key: str) -> str | None:
    """The sha256 the build's log recorded when the worker packed the artifact, if the log is there."""
    log = service.blobs.get_bytes(log_blob_name(key))
    if log is None:
        return None
    found = _PACKED.findall(log)
    return found[-1][1].decode() if found else None


def prove(service: FarmService, paths: FarmPaths, blob: Path, now: float) -> BuildRecord:
    """The ready build record an artifact blob proves, or NotProven saying what does not agree."""
    key = blob.name.removesuffix(".tar.zst")
    if not _KEY.fullmatch(key) or blob.relative_to(paths.blobs).as_posix() != artifact_blob_name(key):
        raise NotProven("not named like a build's artifact")
    digest = hashlib.sha256()
    with blob.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    sha256, size = digest.hexdigest(), blob.stat().st_size
    with tempfile.TemporaryDirectory(prefix=".reset-", dir=paths.home) as scratch:
        manifest = unpack_artifact(blob, Path(scratch) / "tree")  # every file must match the manifest
    if manifest.key != key:
        raise NotProven(f"its manifest names build {manifest.key[:12]}, not {key[:12]}")
    request = PackageRequest(manifest.name, manifest.version, manifest.options)
    try:
        specs, requested = plan_builds([request], service.recipe, service.platform)
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
    packed = _packed_sha256(service, key)
    if packed is not None and packed != sha256:
        raise NotProven(f"its sha256 {sha256[:12]} is not the {packed[:12]} its build log recorded")
    log = log_blob_name(key) if service.blobs.local_path(log_blob_name(key)) is not None else None
    return BuildRecord(
        key=key,
        name=spec.name,
        version=spec.version,
        options=spec.options.as_dict(),
        spec=spec.to_json(),
        status=BuildStatus.READY,
        dependencies=tuple(dep_key for _, dep_key in spec.dependencies),
        runtime_dependencies=spec.runtime_dependencies,
        artifact=artifact_blob_name(key),
        sha256=sha256,
        size=size,
        log=log,
        created_at=now,
        updated_at=now,
        enqueued_at=now,
    )


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
                service = build_service(paths, engine)
                report.skipped_recipes = publish_recipes(service)
                store = SqliteBuildStore(engine)
                for blob in sorted((paths.blobs / "artifacts").glob("*/*.tar.zst")):
                    if blob.name.startswith("."):
                        continue  # a blob being written when the farm stopped
                    name = blob.relative_to(paths.blobs).as_posix()
                    try:
                        record = prove(service, paths, blob, now)
                    except PkgcError as exc:
                        report.left_out.append((name, " ".join(exc.message.split())))
                        continue
                    except OSError as exc:
                        report.left_out.append((name, f"cannot be read: {exc.strerror or exc}"))
                        continue
                    store.adopt_ready(record)
                    report.adopted.append(Adopted(record.key, record.name, record.version))
            finally:
                checkpoint_farm_database(engine, "TRUNCATE")
        finally:
            os.umask(previous)
    return report
