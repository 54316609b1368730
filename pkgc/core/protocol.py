"""The wire contract between client, farm API and worker (version 1).

One set of models, imported by both ends, so client and server cannot drift. The protocol is a resumable
long-poll: `resolve` answers at once with what is ready and the keys still building; `wait` blocks for at most
about 20 seconds and returns the keys that finished, and the client loops. It is stateless on the server, so it
works the same under uvicorn and behind API Gateway's 29-second limit.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

API_PREFIX = "/v1"
MAX_WAIT_SECONDS = 20.0
MAX_KEYS_PER_REQUEST = 100
MAX_PACKAGES_PER_REQUEST = 50


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BuildStatus(StrEnum):
    QUEUED = "queued"
    BUILDING = "building"
    READY = "ready"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (BuildStatus.READY, BuildStatus.FAILED)


class PackageRequestModel(Strict):
    name: str = Field(max_length=64)
    version: str | None = Field(default=None, max_length=64)
    options: dict[str, str | bool] = Field(default_factory=dict, max_length=64)
    dependency_options: dict[str, str | bool] | None = Field(
        default=None,
        max_length=64,
        description="global options for the package's dependencies; absent: they inherit the package's own",
    )


class ResolveRequest(Strict):
    packages: list[PackageRequestModel] = Field(min_length=1, max_length=MAX_PACKAGES_PER_REQUEST)
    retry_failed: bool = Field(
        default=False,
        description="queue failed builds among those resolved for another try (failures are kept otherwise, so that "
        "a broken recipe is not rebuilt on every request)",
    )


class BuildInfo(Strict):
    """One build as the client sees it; `url` and `sha256` are set once it is ready."""

    key: str
    name: str
    version: str
    options: dict[str, str]
    status: BuildStatus
    dependencies: list[str] = Field(default_factory=list, description="build keys this build needs")
    runtime_dependencies: list[str] = Field(default_factory=list, description="names needed at run time")
    url: str | None = None
    sha256: str | None = None
    size: int | None = None
    error: str | None = None
    log_url: str | None = None
    attempts: int = Field(default=0, description="how many times a worker has taken this build")
    last_line: str = Field(default="", description="the latest line of the build log, while it builds")


class ResolveResponse(Strict):
    requested: list[str] = Field(description="build keys of the requested packages, in request order")
    builds: list[BuildInfo] = Field(description="the requested builds and all their dependencies, dependencies first")


class WaitRequest(Strict):
    keys: list[str] = Field(min_length=1, max_length=MAX_KEYS_PER_REQUEST)
    timeout: float = Field(default=MAX_WAIT_SECONDS, ge=0, le=MAX_WAIT_SECONDS)
    seen: dict[str, BuildStatus] = Field(
        default_factory=dict,
        max_length=MAX_KEYS_PER_REQUEST,
        description="the status the client last saw per key; a change (queued -> building) also ends the wait",
    )


class WaitResponse(Strict):
    finished: list[BuildInfo]
    pending: list[str]
    progress: list[BuildInfo] = Field(
        default_factory=list,
        description="pending builds whose status differs from what the client had seen; all pending builds, as they "
        "are now, when the wait timed out",
    )


class VariantInfo(Strict):
    name: str
    description: str
    default: str
    values: list[str]


class PackageSummary(Strict):
    name: str
    summary: str
    latest: str


class SearchResponse(Strict):
    results: list[PackageSummary]


class PackageDetails(Strict):
    name: str
    summary: str
    homepage: str
    license: str
    versions: list[str] = Field(description="newest first")
    variants: list[VariantInfo]
    global_options: list[VariantInfo]
    build_dependencies: list[str]
    runtime_dependencies: list[str]


class CatalogResponse(Strict):
    """Every package in one document, for clients that search offline; served with an ETag."""

    packages: list[PackageSummary]


class BuildsResponse(Strict):
    builds: list[BuildInfo]


class ErrorBody(Strict):
    error: str
    reason: str
