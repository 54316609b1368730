"""The farm's one composition root: every adapter of every farm deployable is chosen here, from one setting.

`PKGC_FARM_BACKEND=local` (the default) is the embedded farm: SQLite, a directory of blobs and a JSON-lines event
file under `PKGC_FARM_HOME`. `PKGC_FARM_BACKEND=aws` is DynamoDB, SQS, S3 (+ CloudFront) and SNS, named by the
`PKGC_AWS_*` variables. The embedded supervisor, `python -m pkgc.worker`, `pkgc farm reset` and the Lambda
handlers get their ports, service and lifecycle from here and nowhere else, so that a deployment differs from
another only in its configuration.
"""

from __future__ import annotations

import importlib
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal

from sqlalchemy import Engine

from pkgc.core.errors import UsageError
from pkgc.core.platform import Platform, detect_platform
from pkgc.core.protocol import MAX_WAIT_SECONDS
from pkgc.farm.access import AccessPolicy, AccessSettings, access_policy
from pkgc.farm.adapters.local import (
    DirectoryBlobStore,
    JsonLinesNotifier,
    NoInstanceProtection,
    SqliteBuildStore,
    SqliteCatalogStore,
    SqliteQueueRouter,
    checkpoint_farm_database,
    open_farm_database,
)
from pkgc.farm.adapters.local_tokens import SqliteTokenStore
from pkgc.farm.aws_settings import AwsSettings
from pkgc.farm.paths import FarmPaths
from pkgc.farm.ports import BacklogMetrics, BlobStore, FarmPorts, GeneratedRecipes, InstanceProtection
from pkgc.farm.service import FarmService
from pkgc.farm.work import BuildLifecycle

Backend = Literal["local", "aws"]
MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # SigV4's limit (pkgc/farm/adapters/aws.py checks it again)
BACKENDS: tuple[Backend, ...] = ("local", "aws")
LOCAL_WAIT_POLL_SECONDS = 0.1  # a SQLite read: cheap, and a finished build is seen at once
AWS_WAIT_POLL_SECONDS = 1.0  # a DynamoDB read per poll per waiting client: about 1 s, as the issue asks
LAMBDA_DEBIAN_CACHE = "/tmp/pkgc-debian-catalog"  # a Lambda container's /tmp is private to it


def _seconds_setting(env: Mapping[str, str], name: str, lowest: float, highest: float) -> float | None:
    """An optional number of seconds in [lowest, highest] from `env`; a bad value is a one-line UsageError."""
    text = env.get(name, "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not lowest <= value <= highest:  # NaN fails this too
        raise UsageError(f"{name} must be a number of seconds from {lowest:g} to {highest:g}, not {text[:40]!r}")
    return value


@dataclass(frozen=True)
class FarmConfig:
    """Which adapters a farm process uses, and their parameters (nothing is opened until `open_ports`)."""

    backend: Backend = "local"
    home: Path | None = None  # local: the farm home (database, blobs, sources, events)
    aws: AwsSettings | None = None  # aws: the resources' names (PKGC_AWS_*, see pkgc/farm/aws_settings.py)
    # The /v1/wait long-poll: how often it reads the store and how long one call may last. None: the backend's
    # default (local: every 0.1 s, a SQLite read; aws: every 1 s, a DynamoDB read each, and at most 20 s, well
    # inside API Gateway's 29 s integration timeout). PKGC_FARM_WAIT_POLL_SECONDS / PKGC_FARM_WAIT_MAX_SECONDS.
    wait_poll_seconds: float | None = None
    wait_max_seconds: float | None = None
    # aws: the Debian catalog (pkgc/farm/debian_blobs.py) is a blob the API copies into `debian_cache` (None: a
    # Lambda's /tmp/pkgc-debian-catalog, else a private temporary directory per process), re-reading its pointer
    # at most every `debian_pointer_seconds` (None: 60 s). PKGC_FARM_DEBIAN_CACHE / PKGC_FARM_DEBIAN_POINTER_SECONDS.
    debian_cache: Path | None = None
    debian_pointer_seconds: float | None = None

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
        wait_max = _seconds_setting(env, "PKGC_FARM_WAIT_MAX_SECONDS", 1.0, MAX_WAIT_SECONDS)
        wait_poll = _seconds_setting(env, "PKGC_FARM_WAIT_POLL_SECONDS", 0.01, wait_max or MAX_WAIT_SECONDS)
        if chosen == "local":
            where = home or (Path(env["PKGC_FARM_HOME"]) if env.get("PKGC_FARM_HOME") else None)
            if where is None:
                raise UsageError("the local farm backend needs a farm home: set PKGC_FARM_HOME or pass --home")
            return cls(backend="local", home=where.absolute(), wait_poll_seconds=wait_poll, wait_max_seconds=wait_max)
        settings = AwsSettings.from_env(env)
        if not settings.queues:
            raise UsageError("PKGC_AWS_QUEUES must name at least one platform's queue: {platform: queue URL}")
        cache_text = env.get("PKGC_FARM_DEBIAN_CACHE", "").strip()
        if cache_text and not cache_text.startswith("/"):
            raise UsageError(f"PKGC_FARM_DEBIAN_CACHE must be an absolute directory, not {cache_text[:100]!r}")
        if not cache_text and env.get("AWS_LAMBDA_FUNCTION_NAME"):
            cache_text = LAMBDA_DEBIAN_CACHE  # a Lambda's /tmp is its own and lasts as long as its container
        return cls(
            backend="aws",
            aws=settings,
            wait_poll_seconds=wait_poll,
            wait_max_seconds=wait_max,
            debian_cache=Path(cache_text) if cache_text else None,
            debian_pointer_seconds=_seconds_setting(env, "PKGC_FARM_DEBIAN_POINTER_SECONDS", 0.0, 3600.0),
        )

    @property
    def wait_poll(self) -> float:
        """Seconds between the store reads of one /v1/wait (each is a paid request on DynamoDB)."""
        if self.wait_poll_seconds is not None:
            return self.wait_poll_seconds
        return AWS_WAIT_POLL_SECONDS if self.backend == "aws" else LOCAL_WAIT_POLL_SECONDS

    @property
    def wait_max(self) -> float:
        """The longest one /v1/wait lasts (the protocol's 20 s at most)."""
        return min(self.wait_max_seconds or MAX_WAIT_SECONDS, MAX_WAIT_SECONDS)

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
        ports: FarmPorts = aws.aws_ports(_aws_settings(config))
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


def _aws_settings(config: FarmConfig) -> AwsSettings:
    if config.aws is None:
        raise UsageError("the aws farm backend needs its settings (PKGC_AWS_*)")
    return config.aws


def backlog_metrics(config: FarmConfig) -> BacklogMetrics:
    """Where the backlog for the workers' autoscaling goes: CloudWatch on AWS. The embedded farm has no
    autoscaling (its supervisor runs a fixed number of workers), so there is nothing to publish to."""
    if config.backend != "aws":
        raise UsageError("the backlog metric is published by an AWS farm only (PKGC_FARM_BACKEND=aws)")
    metrics = importlib.import_module("pkgc.farm.adapters.aws_metrics")
    publisher: BacklogMetrics = metrics.CloudWatchBacklogMetrics.from_settings(_aws_settings(config))
    return publisher


def close_ports(ports: FarmPorts, checkpoint: str = "PASSIVE") -> None:
    """Leave what this process wrote in the farm database's main file (local) without waiting for others."""
    if isinstance(ports, LocalFarmPorts):
        checkpoint_farm_database(ports.engine, checkpoint)


def generated_recipes(config: FarmConfig, blobs: BlobStore) -> GeneratedRecipes:
    """The Debian catalog of the configured farm: the index file in the embedded farm's home, or (AWS) the index
    blob its pointer names, copied into a local cache (`pkgc farm catalog update` writes either)."""
    if config.backend == "local":
        from pkgc.farm.debian_catalog import DebianCatalog, index_path

        return DebianCatalog(index_path(config.paths.home))
    from pkgc.farm.debian_blobs import DEFAULT_POINTER_TTL, BlobDebianCatalog

    ttl = config.debian_pointer_seconds
    return BlobDebianCatalog(blobs, config.debian_cache, ttl=DEFAULT_POINTER_TTL if ttl is None else ttl)


def farm_service(
    config: FarmConfig,
    *,
    ports: FarmPorts | None = None,
    engine: Engine | None = None,
    generated: GeneratedRecipes | None = None,
) -> FarmService:
    """The farm's API use cases over the configured ports. `generated`: a Debian catalog to use instead of the
    configured one (`pkgc farm catalog update` writes the snapshot from the index it has just published)."""
    ports = ports if ports is not None else open_ports(config, engine=engine)
    if config.backend == "aws":
        platforms = [Platform.parse(name) for name in config.platforms()]
    else:  # the embedded farm's workers build natively: its own machine's platform only
        platforms = [detect_platform()]
    if generated is None:
        generated = generated_recipes(config, ports.blobs)
    debian_state = None
    if config.backend == "local":  # the embedded farm's background load: loading, loaded, failed, read live
        from pkgc.farm.catalog_autoload import catalog_state

        debian_state = partial(catalog_state, config.paths.home)
    return FarmService.from_ports(
        ports,
        platforms[0],
        generated=generated,
        debian_state=debian_state,
        build_platforms=tuple(platforms[1:]),
        poll_interval=config.wait_poll,
        max_wait=config.wait_max,
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


def instance_protection(
    config: FarmConfig, worker_id: str, environ: Mapping[str, str] | None = None
) -> InstanceProtection:
    """The worker's scale-in protection: none locally (nothing scales the embedded farm in); on AWS, its instance in
    the Auto Scaling group `PKGC_AWS_ASG_NAME` names (its id: `worker_id` when it is an EC2 instance id, else from
    the instance metadata service), or none when that variable is unset (a worker outside a group).

    Raises UsageError when the group is named but this instance's id cannot be found."""
    if config.backend != "aws":
        return NoInstanceProtection()
    aws_instance = importlib.import_module("pkgc.farm.adapters.aws_instance")
    found: InstanceProtection | None = aws_instance.auto_scaling_protection(
        os.environ if environ is None else environ,
        worker_id,
        region=_aws_settings(config).region,
        endpoint_url=_aws_settings(config).endpoint_url,
    )
    return found if found is not None else NoInstanceProtection()


def blob_files(blobs: BlobStore) -> Callable[[str], Path | None] | None:
    """How the API serves blobs itself (`/v1/blobs/...`): the local directory's files; None where a CDN or
    presigned URLs serve them (AWS), so the route is not there."""
    return blobs.path_of if isinstance(blobs, DirectoryBlobStore) else None
