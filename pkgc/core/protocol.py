"""The wire contract between client, farm API and worker (version 1).

One set of models, imported by both ends, so client and server cannot drift. The protocol is a resumable
long-poll: `resolve` answers at once with what is ready and the keys still building; `wait` blocks for at most
about 20 seconds and returns the keys that finished, and the client loops. It is stateless on the server, so it
works the same under uvicorn and behind API Gateway's 29-second limit.

The answers are validated field by field, because the client uses some of their fields in paths (a build's name
names its staging directory, the sha256 names the download in the cache) and a farm is a peer on the network, not
a trusted part of the program: names and versions pass the core's own validators, keys and digests are 64
lower-case hex digits, sizes and counts are bounded integers, URLs are http(s) or a path under `/v1/`, free text
and lists have upper bounds, and a resolve answer is consistent (every key it mentions is one of its builds). The
server builds its answers from these same models, so an answer it could not send is one the client refuses.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from enum import StrEnum
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from pkgc.core.errors import UsageError
from pkgc.core.names import MAX_NAME_LENGTH, validate_name
from pkgc.core.options import MAX_OPTION_VALUES, is_valid_option_value
from pkgc.core.platform import Platform
from pkgc.core.text import has_control_characters
from pkgc.core.versions import MAX_VERSION_LENGTH, Version

API_PREFIX = "/v1"
MAX_WAIT_SECONDS = 20.0
MAX_KEYS_PER_REQUEST = 100
MAX_PACKAGES_PER_REQUEST = 50

# Bounds on what an answer may hold: far above anything a real farm sends, low enough that a hostile one cannot
# make the client hold or print without end.
MAX_BUILDS_PER_ANSWER = 1000
MAX_BUILDS_OF_A_PACKAGE = 10_000
MAX_CATALOG_PACKAGES = 100_000
MAX_DEPENDENCIES = 256
MAX_OPTIONS = 64
MAX_VERSIONS = 1000
MAX_ARTIFACT_BYTES = 1 << 36  # 64 GiB
MAX_ATTEMPTS = 1000
MAX_URL_LENGTH = 2048
MAX_ERROR_LENGTH = 2000
MAX_LAST_LINE_LENGTH = 500
MAX_TEXT_LENGTH = 4000  # summaries, descriptions, homepages
MAX_SHORT_TEXT_LENGTH = 200  # licenses, error codes
MAX_CPU_LEVELS = 16
# Publishing recipes (POST /v1/recipes, admin token): at most this many per request, each at most this many bytes of
# UTF-8 (the largest starter recipe is a few KiB), and the one-line error of a skipped recipe at most this long.
MAX_RECIPES_PER_PUBLISH = 100
MAX_RECIPE_BYTES = 64 * 1024
MAX_RECIPE_FILE_LENGTH = 128
MAX_SKIP_REASON_LENGTH = 500
# The body of one POST /v1/recipes (the other routes take 64 KiB): the client splits a larger set into several
# requests. Why 1 MiB and not 100 x 64 KiB: see pkgc/farm/api.py.
MAX_PUBLISH_BODY_BYTES = 1024 * 1024

_HEX64 = re.compile(r"[0-9a-f]{64}")
_FARM_PATH = re.compile(r"/v1/[A-Za-z0-9._~+-]+(?:/[A-Za-z0-9._~+-]+)*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_RECIPE_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*\.toml")


def _shown(value: str) -> str:
    """A value as an error message may quote it: short, and one line whatever it holds."""
    return repr(value if len(value) <= 80 else value[:77] + "...")


def _core_check(check: Callable[[str], object]) -> Callable[[str], str]:
    """A core validator (which raises UsageError) as a pydantic one (which must raise ValueError)."""

    def run(value: str) -> str:
        try:
            check(value)
        except UsageError as exc:
            raise ValueError(exc.message) from None
        return value

    return run


def _hex64(value: str) -> str:
    if not _HEX64.fullmatch(value):
        raise ValueError(f"{_shown(value)} is not 64 lower-case hex digits")
    return value


def _option_value(value: str) -> str:
    if not is_valid_option_value(value):
        raise ValueError(f"invalid option value {_shown(value)}")
    return value


def _farm_url(value: str) -> str:
    """An http(s) URL (a CDN), or a path on the farm itself under /v1/ with no `.` or `..` segments."""
    if _CONTROL.search(value) or " " in value or "\\" in value:
        raise ValueError(f"URL {_shown(value)} holds spaces or control characters")
    if value.startswith(API_PREFIX + "/"):
        if not _FARM_PATH.fullmatch(value) or any(part in (".", "..") for part in value.split("/")):
            raise ValueError(f"{_shown(value)} is not a plain path under {API_PREFIX}/")
        return value
    if not value.startswith(("http://", "https://")) or not urlsplit(value).hostname:
        raise ValueError(f"{_shown(value)} is neither an http(s) URL nor a path under {API_PREFIX}/")
    return value


def _one_line(value: str) -> str:
    if _CONTROL.search(value.replace("\t", " ")):
        raise ValueError(f"{_shown(value)} holds control characters")
    return value


Name = Annotated[str, Field(max_length=MAX_NAME_LENGTH), AfterValidator(_core_check(validate_name))]
VersionText = Annotated[str, Field(max_length=MAX_VERSION_LENGTH), AfterValidator(_core_check(Version))]
BuildKey = Annotated[str, Field(max_length=64), AfterValidator(_hex64)]
Sha256 = Annotated[str, Field(max_length=64), AfterValidator(_hex64)]
OptionName = Name
OptionValue = Annotated[str, Field(max_length=MAX_NAME_LENGTH), AfterValidator(_option_value)]
FarmUrl = Annotated[str, Field(max_length=MAX_URL_LENGTH), AfterValidator(_farm_url)]
def _no_control(value: str) -> str:
    if has_control_characters(value):
        raise ValueError(f"{_shown(value)} holds control characters a terminal would act on")
    return value


Text = Annotated[str, Field(max_length=MAX_TEXT_LENGTH), AfterValidator(_no_control)]
ShortText = Annotated[str, Field(max_length=MAX_SHORT_TEXT_LENGTH), AfterValidator(_one_line)]
Size = Annotated[int, Field(strict=True, ge=0, le=MAX_ARTIFACT_BYTES)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


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


class ClientPlatform(Strict):
    """The platform the client runs on and the CPU levels (values of the `cpu` option) its processor can run.

    The farm builds for a compatible build platform (same os, architecture and C library, a C library no newer than
    the client's) and refuses a `cpu` option the client cannot run; a request without it is planned for the farm's
    default build platform (clients from before the field existed).
    """

    os: str = Field(max_length=16)
    arch: str = Field(max_length=16)
    libc: str = Field(max_length=16)
    libc_version: str = Field(max_length=14)
    cpu_levels: list[OptionValue] = Field(min_length=1, max_length=MAX_CPU_LEVELS)

    @model_validator(mode="after")
    def _valid_platform(self) -> Self:
        try:
            self.platform()
        except UsageError as exc:
            raise ValueError(exc.message) from None
        return self

    def platform(self) -> Platform:
        return Platform(self.os, self.arch, self.libc, self.libc_version)

    @classmethod
    def of(cls, platform: Platform, cpu_levels: Iterable[str]) -> ClientPlatform:
        return cls(**platform.as_dict(), cpu_levels=list(cpu_levels))


class ResolveRequest(Strict):
    packages: list[PackageRequestModel] = Field(min_length=1, max_length=MAX_PACKAGES_PER_REQUEST)
    platform: ClientPlatform | None = Field(
        default=None,
        description="the client's platform and CPU levels; absent (older clients): the farm's default build platform",
    )
    retry_failed: bool = Field(
        default=False,
        description="queue failed builds among those resolved for another try (failures are kept otherwise, so that "
        "a broken recipe is not rebuilt on every request)",
    )


class BuildInfo(Strict):
    """One build as the client sees it; `url` and `sha256` are set once it is ready."""

    key: BuildKey
    name: Name
    version: VersionText
    options: dict[OptionName, OptionValue] = Field(max_length=MAX_OPTIONS)
    status: BuildStatus
    dependencies: list[BuildKey] = Field(
        default_factory=list, max_length=MAX_DEPENDENCIES, description="build keys this build needs"
    )
    runtime_dependencies: list[Name] = Field(
        default_factory=list, max_length=MAX_DEPENDENCIES, description="names needed at run time"
    )
    url: FarmUrl | None = None
    sha256: Sha256 | None = None
    size: Size | None = None
    error: str | None = Field(default=None, max_length=MAX_ERROR_LENGTH)
    log_url: FarmUrl | None = None
    attempts: int = Field(
        default=0, strict=True, ge=0, le=MAX_ATTEMPTS, description="how many times a worker has taken this build"
    )
    last_line: str = Field(
        default="", max_length=MAX_LAST_LINE_LENGTH, description="the latest line of the build log, while it builds"
    )

    @model_validator(mode="after")
    def _ready_has_artifact(self) -> Self:
        """A ready build says where its artifact is and what its sha256 is: the client downloads and checks it."""
        if self.status == BuildStatus.READY and (self.url is None or self.sha256 is None):
            raise ValueError("url: a ready build needs its artifact's url and sha256")
        return self


class ResolveResponse(Strict):
    requested: list[BuildKey] = Field(
        max_length=MAX_PACKAGES_PER_REQUEST, description="build keys of the requested packages, in request order"
    )
    builds: list[BuildInfo] = Field(
        max_length=MAX_BUILDS_PER_ANSWER,
        description="the requested builds and all their dependencies, dependencies first",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        """Every key the answer mentions is one of its builds: the client walks dependencies by key."""
        keys = [build.key for build in self.builds]
        if len(set(keys)) != len(keys):
            raise ValueError("builds: a build key is listed twice")
        known = set(keys)
        for key in self.requested:
            if key not in known:
                raise ValueError(f"requested: key {key} is not among the builds of the answer")
        for build in self.builds:
            for dependency in build.dependencies:
                if dependency not in known:
                    raise ValueError(f"dependencies: {build.name}'s dependency {dependency} is not in the answer")
        return self


class WaitRequest(Strict):
    keys: list[str] = Field(min_length=1, max_length=MAX_KEYS_PER_REQUEST)
    timeout: float = Field(default=MAX_WAIT_SECONDS, ge=0, le=MAX_WAIT_SECONDS)
    seen: dict[str, BuildStatus] = Field(
        default_factory=dict,
        max_length=MAX_KEYS_PER_REQUEST,
        description="the status the client last saw per key; a change (queued -> building) also ends the wait",
    )


class WaitResponse(Strict):
    finished: list[BuildInfo] = Field(max_length=MAX_KEYS_PER_REQUEST)
    pending: list[BuildKey] = Field(max_length=MAX_KEYS_PER_REQUEST)
    progress: list[BuildInfo] = Field(
        default_factory=list,
        max_length=MAX_KEYS_PER_REQUEST,
        description="pending builds whose status differs from what the client had seen; all pending builds, as they "
        "are now, when the wait timed out",
    )


class VariantInfo(Strict):
    name: OptionName
    description: Text
    default: OptionValue
    values: list[OptionValue] = Field(max_length=MAX_OPTION_VALUES)


class PackageSummary(Strict):
    name: Name
    summary: Text
    latest: VersionText
    homepage: Text = ""  # known for generated recipes (the Debian catalog's Homepage); "" when not given


class SearchResponse(Strict):
    results: list[PackageSummary] = Field(max_length=MAX_CATALOG_PACKAGES)


class PackageDetails(Strict):
    name: Name
    summary: Text
    homepage: Text
    license: ShortText
    versions: list[VersionText] = Field(max_length=MAX_VERSIONS, description="newest first")
    variants: list[VariantInfo] = Field(max_length=MAX_OPTIONS)
    global_options: list[VariantInfo] = Field(max_length=MAX_OPTIONS)
    build_dependencies: list[Name] = Field(max_length=MAX_DEPENDENCIES)
    runtime_dependencies: list[Name] = Field(max_length=MAX_DEPENDENCIES)
    origin: Literal["curated", "generated"] = "curated"  # generated: made from the Debian source catalog


class DebianCatalogState(Strict):
    """Where the farm's Debian catalog is: absent, loading since `since`, loaded (`packages` at `since`), or failed
    (`error`, one line, at `since`). The client tells a user whose search found nothing whether to wait or what to
    run. `since` is seconds since the epoch."""

    state: Literal["absent", "loading", "loaded", "failed"]
    since: float | None = Field(default=None, ge=0, lt=1e11)
    packages: int | None = Field(default=None, ge=0, le=MAX_CATALOG_PACKAGES)
    error: ShortText | None = None


class CatalogResponse(Strict):
    """Every package in one document, for clients that search offline; served with an ETag. `debian` is only sent
    by a farm that keeps a Debian catalog (the embedded one)."""

    packages: list[PackageSummary] = Field(max_length=MAX_CATALOG_PACKAGES)
    debian: DebianCatalogState | None = None


class BuildsResponse(Strict):
    builds: list[BuildInfo] = Field(max_length=MAX_BUILDS_OF_A_PACKAGE)


def _recipe_file(value: str) -> str:
    """A recipe's file name as the publisher read it (`NAME.toml`): a plain name, no directory, one line. The farm
    uses it only in its answer (which file was skipped), but it reaches the publisher's terminal."""
    if not _RECIPE_FILE.fullmatch(value):
        raise ValueError(f"{_shown(value)} is not a recipe file name (NAME.toml: letters, digits, '._+-')")
    return value


def _recipe_text(value: str) -> str:
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > MAX_RECIPE_BYTES:
        raise ValueError(f"the recipe is {size} bytes, more than {MAX_RECIPE_BYTES}")
    return value


RecipeFileName = Annotated[str, Field(max_length=MAX_RECIPE_FILE_LENGTH), AfterValidator(_recipe_file)]


class RecipeFile(Strict):
    """One recipe to publish: the file it was read from (named in the answer) and its TOML text."""

    file: RecipeFileName
    text: Annotated[str, Field(max_length=MAX_RECIPE_BYTES), AfterValidator(_recipe_text)]


class PublishRequest(Strict):
    """POST /v1/recipes (admin token): recipes to publish into the catalog, each file named once."""

    recipes: list[RecipeFile] = Field(min_length=1, max_length=MAX_RECIPES_PER_PUBLISH)

    @model_validator(mode="after")
    def _files_once(self) -> Self:
        seen: set[str] = set()
        for recipe in self.recipes:
            if recipe.file in seen:
                raise ValueError(f"recipes: the file {recipe.file} is listed twice")
            seen.add(recipe.file)
        return self


class PublishedRecipe(Strict):
    file: RecipeFileName
    name: Name
    version: VersionText = Field(description="the newest version the recipe has")


class SkippedRecipeFile(Strict):
    file: RecipeFileName
    error: Annotated[str, Field(max_length=MAX_SKIP_REASON_LENGTH), AfterValidator(_one_line)]


class PublishResponse(Strict):
    """What was published (in the catalog now) and what was skipped, each skipped file with its one-line error."""

    published: list[PublishedRecipe] = Field(max_length=MAX_RECIPES_PER_PUBLISH)
    skipped: list[SkippedRecipeFile] = Field(default_factory=list, max_length=MAX_RECIPES_PER_PUBLISH)

    @model_validator(mode="after")
    def _each_file_once(self) -> Self:
        files = [item.file for item in self.published] + [item.file for item in self.skipped]
        if len(set(files)) != len(files):
            raise ValueError("published: a file is both published and skipped, or named twice")
        return self


class ErrorBody(Strict):
    error: ShortText
    reason: Annotated[str, Field(max_length=MAX_ERROR_LENGTH)]


def describe_invalid(errors: list[Any]) -> str:
    """The first problem of a pydantic ValidationError's `errors()` as one line: where, then what."""
    if not errors:
        return "invalid"
    first = errors[0]
    where = ".".join(str(part) for part in first.get("loc", ()))
    message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    if first.get("type") in ("string_too_long", "too_long", "less_than_equal", "greater_than_equal"):
        message = message.split(" [", 1)[0]
    line = f"{where}: {message}" if where else message
    return " ".join(line.split())[:300]
