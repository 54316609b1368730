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

from collections.abc import Iterable
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from pkgc.core import protocol_rules as rules
from pkgc.core.names import MAX_NAME_LENGTH
from pkgc.core.options import MAX_OPTION_VALUES
from pkgc.core.platform import Platform
from pkgc.core.protocol_rules import (
    API_PREFIX as API_PREFIX,
    MAX_ARTIFACT_BYTES as MAX_ARTIFACT_BYTES,
    MAX_ATTEMPTS as MAX_ATTEMPTS,
    MAX_BUILDS_OF_A_PACKAGE as MAX_BUILDS_OF_A_PACKAGE,
    MAX_BUILDS_PER_ANSWER as MAX_BUILDS_PER_ANSWER,
    MAX_CATALOG_PACKAGES as MAX_CATALOG_PACKAGES,
    MAX_CPU_LEVELS as MAX_CPU_LEVELS,
    MAX_DEPENDENCIES as MAX_DEPENDENCIES,
    MAX_ERROR_LENGTH as MAX_ERROR_LENGTH,
    MAX_KEYS_PER_REQUEST as MAX_KEYS_PER_REQUEST,
    MAX_LAST_LINE_LENGTH as MAX_LAST_LINE_LENGTH,
    MAX_OPTIONS as MAX_OPTIONS,
    MAX_PACKAGES_PER_REQUEST as MAX_PACKAGES_PER_REQUEST,
    MAX_PUBLISH_BODY_BYTES as MAX_PUBLISH_BODY_BYTES,
    MAX_RECIPE_BYTES as MAX_RECIPE_BYTES,
    MAX_RECIPE_FILE_LENGTH as MAX_RECIPE_FILE_LENGTH,
    MAX_RECIPES_PER_PUBLISH as MAX_RECIPES_PER_PUBLISH,
    MAX_SHORT_TEXT_LENGTH as MAX_SHORT_TEXT_LENGTH,
    MAX_SKIP_REASON_LENGTH as MAX_SKIP_REASON_LENGTH,
    MAX_TEXT_LENGTH as MAX_TEXT_LENGTH,
    MAX_URL_LENGTH as MAX_URL_LENGTH,
    MAX_VERSIONS as MAX_VERSIONS,
    MAX_WAIT_SECONDS as MAX_WAIT_SECONDS,
    BuildStatus as BuildStatus,
)
from pkgc.core.versions import MAX_VERSION_LENGTH

Name = Annotated[str, Field(max_length=MAX_NAME_LENGTH), AfterValidator(rules.check_name)]
VersionText = Annotated[str, Field(max_length=MAX_VERSION_LENGTH), AfterValidator(rules.check_version)]
BuildKey = Annotated[str, Field(max_length=64), AfterValidator(rules.check_hex64)]
Sha256 = Annotated[str, Field(max_length=64), AfterValidator(rules.check_hex64)]
OptionName = Name
OptionValue = Annotated[str, Field(max_length=MAX_NAME_LENGTH), AfterValidator(rules.check_option_value)]
FarmUrl = Annotated[str, Field(max_length=MAX_URL_LENGTH), AfterValidator(rules.check_farm_url)]
Text = Annotated[str, Field(max_length=MAX_TEXT_LENGTH), AfterValidator(rules.check_no_control)]
ShortText = Annotated[str, Field(max_length=MAX_SHORT_TEXT_LENGTH), AfterValidator(rules.check_one_line)]
Size = Annotated[int, Field(strict=True, ge=0, le=MAX_ARTIFACT_BYTES)]


class Strict(BaseModel):
    """Unknown fields refused, instances frozen; the checks of a whole object come from protocol_rules.MODEL_CHECKS,
    by class name, which the generated pkgc.core.wire runs too."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    @model_validator(mode="after")
    def _model_checks(self) -> Self:
        for check in rules.MODEL_CHECKS.get(type(self).__name__, ()):
            check(self)
        return self


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

    def platform(self) -> Platform:
        return rules.platform_of(self)

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


class ResolveResponse(Strict):
    requested: list[BuildKey] = Field(
        max_length=MAX_PACKAGES_PER_REQUEST, description="build keys of the requested packages, in request order"
    )
    builds: list[BuildInfo] = Field(
        max_length=MAX_BUILDS_PER_ANSWER,
        description="the requested builds and all their dependencies, dependencies first",
    )


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


RecipeFileName = Annotated[str, Field(max_length=MAX_RECIPE_FILE_LENGTH), AfterValidator(rules.check_recipe_file)]


class RecipeFile(Strict):
    """One recipe to publish: the file it was read from (named in the answer) and its TOML text."""

    file: RecipeFileName
    text: Annotated[str, Field(max_length=MAX_RECIPE_BYTES), AfterValidator(rules.check_recipe_text)]


class PublishRequest(Strict):
    """POST /v1/recipes (admin token): recipes to publish into the catalog, each file named once."""

    recipes: list[RecipeFile] = Field(min_length=1, max_length=MAX_RECIPES_PER_PUBLISH)


class PublishedRecipe(Strict):
    file: RecipeFileName
    name: Name
    version: VersionText = Field(description="the newest version the recipe has")


class SkippedRecipeFile(Strict):
    file: RecipeFileName
    error: Annotated[str, Field(max_length=MAX_SKIP_REASON_LENGTH), AfterValidator(rules.check_one_line)]


class PublishResponse(Strict):
    """What was published (in the catalog now) and what was skipped, each skipped file with its one-line error."""

    published: list[PublishedRecipe] = Field(max_length=MAX_RECIPES_PER_PUBLISH)
    skipped: list[SkippedRecipeFile] = Field(default_factory=list, max_length=MAX_RECIPES_PER_PUBLISH)


class ErrorBody(Strict):
    error: ShortText
    reason: Annotated[str, Field(max_length=MAX_ERROR_LENGTH)]


def describe_invalid(errors: list[Any]) -> str:
    """The first problem of a pydantic ValidationError's `errors()` as one line: where, then what."""
    if not errors:
        return "invalid"
    first = errors[0]
    message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    if first.get("type") in ("string_too_long", "too_long", "less_than_equal", "greater_than_equal"):
        message = message.split(" [", 1)[0]
    return rules.describe_problem(first.get("loc", ()), message)
