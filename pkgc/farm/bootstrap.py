"""The farm's one composition root: every adapter of every farm deployable is chosen here, from one setting.

`PKGC_FARM_BACKEND=local` (the default) is the embedded farm: SQLite, a directory of blobs and a JSON-lines event
file under `PKGC_FARM_HOME`. `PKGC_FARM_BACKEND=aws` is DynamoDB, SQS, S3 (+ CloudFront) and SNS, named by the
`PKGC_AWS_*` variables. The embedded supervisor, `python -m pkgc.worker`, `pkgc farm reset` and the Lambda
handlers get their ports, service and lifecycle from here and nowhere else, so that a deployment differs from
another only in its configuration.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sqlalchemy import Engine

from pkgc.core.errors import UsageError
from pkgc.core.platform import Platform, detect_platform
from pkgc.farm.access import AccessPolicy, AccessSettings, access_policy
from pkgc.farm.adapters.local import (
    DirectoryBlobStore,
    JsonLinesNotifier,
    SqliteBuildStore,
    SqliteCatalogStore,
    SqliteQueueRouter,
    checkpoint_farm_database,
    open_farm_database,
)
from pkgc.farm.adapters.local_tokens import SqliteTokenStore
from pkgc.farm.aws_settings import AwsSettings
from pkgc.farm.paths import FarmPaths
from pkgc.farm.ports import BlobStore, FarmPorts
from pkgc.farm.service import FarmService
from pkgc.farm.work import BuildLifecycle

Backend = Literal["local", "aws"]
BACKENDS: tuple[Backend, ...] = ("local", "aws")


@dataclass(frozen=True)
class FarmConfig:
    """Which adapters a farm process uses, and their parameters (nothing is opened until `open_ports`)."""

    backend: Backend = "local"
    home: Path | None = None  # local: the farm home (database, blobs, sources, events)
    aws: AwsSettings | None = None  # aws: the resources' names (PKGC_AWS_*, see pkgc/farm/aws_settings.py)

    @classmethod
    def local(cls, home: Path) -> FarmConfig:
        return cls(backend="local", home=home)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, home: Path | None = None, backend: str | None = None
    ) -> FarmConfig:
        """The configuration in `environ` (default: the process's); `home`/`backend` (command-line values) win.

        Raises UsageError with one line naming the variable that is missing or wrong.
        """
        env = os.environ if environ is None else environ
        chosen = (backend or env.get("PKGC_FARM_BACKEND") or "local").strip().lower()
        if chosen not in BACKENDS:
            raise UsageError(f"PKGC_FARM_BACKEND: unknown farm backend {chosen[:40]!r}", hint="use local or aws")
        if chosen == "local":
            where = home or (Path(env["PKGC_FARM_HOME"]) if env.get("PKGC_FARM_HOME") else None)
            if where is None:
                raise UsageError("the local farm backend needs a farm home: set PKGC_FARM_HOME or pass --home")
            return cls(backend="local", home=where.absolute())
        settings = AwsSettings.from_env(env)
        if not settings.queues:
            raise UsageError("PKGC_AWS_QUEUES must name at least one platform's queue: {platform: queue URL}")
        return cls(backend="aws", aws=settings)

    @property
    def paths(self) -> FarmPaths:
        if self.home is None:
            raise UsageError(f"the {self.backend} farm backend has no farm home")
        return FarmPaths(self.home)

    def platforms(self) -> list[str]:
        """The build platforms this farm serves: the embedded farm its own machine's, AWS those with a queue."""
        if self.aws is not None:
            return sorted(self.aws.queues)
        return [str(detect_platform())]


@dataclass(frozen=True)
class LocalFarmPorts(FarmPorts):
    """The local ports and the database engine they share (checkpointed when the process stops)."""

    engine: Engine = field(kw_only=True)


def open_ports(config: FarmConfig, *, engine: Engine | None = None, clock: Callable[[], float] = time.time) -> FarmPorts:
    """Every adapter of the configured backend. `engine`: an already opened (checked) farm database."""
    if config.backend == "aws":
        # boto3 is imported only by the AWS adapters, and only by a process that uses them.
        aws = importlib.import_module("pkgc.farm.adapters.aws")
        if config.aws is None:
            raise UsageError("the aws farm backend needs its settings (PKGC_AWS_*)")
        ports: FarmPorts = aws.aws_ports(config.aws)
        return ports
    paths = config.paths
    engine = engine if engine is not None else open_farm_database(paths.database)
    return LocalFarmPorts(
        catalog=SqliteCatalogStore(engine),
        builds=SqliteBuildStore(engine),
        queues=SqliteQueueRouter(engine, config.platforms(), clock=clock),
        blobs=DirectoryBlobStore(paths.blobs),
        notifier=JsonLinesNotifier(paths.events),
        tokens=SqliteTokenStore(engine),
        engine=engine,
    )


def close_ports(ports: FarmPorts, checkpoint: str = "PASSIVE") -> None:
    """Leave what this process wrote in the farm database's main file (local) without waiting for others."""
    if isinstance(ports, LocalFarmPorts):
        checkpoint_farm_database(ports.engine, checkpoint)


def farm_service(
    config: FarmConfig, *, ports: FarmPorts | None = None, engine: Engine | None = None
) -> FarmService:
    """The farm's API use cases over the configured ports."""
    ports = ports if ports is not None else open_ports(config, engine=engine)
    if config.backend == "aws":
        platforms = [Platform.parse(name) for name in config.platforms()]
    else:  # the embedded farm's workers build natively: its own machine's platform only
        platforms = [detect_platform()]
    return FarmService(
        catalog=ports.catalog,
        builds=ports.builds,
        queues=ports.queues,
        blobs=ports.blobs,
        platform=platforms[0],
        build_platforms=tuple(platforms[1:]),
    )


def farm_access(
    config: FarmConfig, ports: FarmPorts, environ: Mapping[str, str] | None = None
) -> AccessPolicy | None:
    """Who may ask (pkgc/farm/access.py): None for an open farm; otherwise the policy over the ports' token store.

    The embedded farm is open by default (loopback, one user); an AWS farm asks for tokens to start builds."""
    settings = AccessSettings.from_env(os.environ if environ is None else environ, config.backend)
    return access_policy(settings, ports.tokens, ports.builds)


def build_lifecycle(config: FarmConfig, *, ports: FarmPorts | None = None, **settings: float | int) -> BuildLifecycle:
    """The build lifecycle use cases a worker calls, over the configured ports."""
    return BuildLifecycle.from_ports(ports if ports is not None else open_ports(config), **settings)


def blob_files(blobs: BlobStore) -> Callable[[str], Path | None] | None:
    """How the API serves blobs itself (`/v1/blobs/...`): the local directory's files; None where a CDN or
    presigned URLs serve them (AWS), so the route is not there."""
    return blobs.path_of if isinstance(blobs, DirectoryBlobStore) else None
