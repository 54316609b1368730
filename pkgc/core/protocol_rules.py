"""The rules of the wire contract that are plain Python: bounds, field checks, checks of a whole answer, statuses.

Two modules describe the contract with these rules. `pkgc.core.protocol` builds pydantic models from them: the farm
(FastAPI, Lambda) validates requests and builds answers with those. `pkgc.core.wire` is generated from those models
by tools/gen_wire.py into plain dataclasses that the client uses, so that no command a user waits on imports
pydantic (about 65 ms of a 0.2 s command). Both call the functions here, so they refuse the same things with the same
words; tests/unit/test_wire.py checks that they agree.

A field check takes the value and returns it, or raises ValueError with a one-line reason. A model check takes the
whole object (either module's) and raises ValueError; MODEL_CHECKS says which models have which.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from pkgc.core.errors import UsageError
from pkgc.core.names import validate_name
from pkgc.core.options import is_valid_option_value
from pkgc.core.platform import Platform
from pkgc.core.text import has_control_characters
from pkgc.core.versions import Version

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


class BuildStatus(StrEnum):
    QUEUED = "queued"
    BUILDING = "building"
    READY = "ready"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (BuildStatus.READY, BuildStatus.FAILED)


def _shown(value: str) -> str:
    """A value as an error message may quote it: short, and one line whatever it holds."""
    return repr(value if len(value) <= 80 else value[:77] + "...")


def _core_check(check: Callable[[str], object]) -> Callable[[str], str]:
    """A core validator (which raises UsageError) as a field check (which raises ValueError)."""

    def run(value: str) -> str:
        try:
            check(value)
        except UsageError as exc:
            raise ValueError(exc.message) from None
        return value

    return run


check_name = _core_check(validate_name)
check_version = _core_check(Version)


def check_hex64(value: str) -> str:
    if not _HEX64.fullmatch(value):
        raise ValueError(f"{_shown(value)} is not 64 lower-case hex digits")
    return value


def check_option_value(value: str) -> str:
    if not is_valid_option_value(value):
        raise ValueError(f"invalid option value {_shown(value)}")
    return value


def check_farm_url(value: str) -> str:
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


def check_one_line(value: str) -> str:
    if _CONTROL.search(value.replace("\t", " ")):
        raise ValueError(f"{_shown(value)} holds control characters")
    return value


def check_no_control(value: str) -> str:
    if has_control_characters(value):
        raise ValueError(f"{_shown(value)} holds control characters a terminal would act on")
    return value


def check_recipe_file(value: str) -> str:
    """A recipe's file name as the publisher read it (`NAME.toml`): a plain name, no directory, one line. The farm
    uses it only in its answer (which file was skipped), but it reaches the publisher's terminal."""
    if not _RECIPE_FILE.fullmatch(value):
        raise ValueError(f"{_shown(value)} is not a recipe file name (NAME.toml: letters, digits, '._+-')")
    return value


def check_recipe_text(value: str) -> str:
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > MAX_RECIPE_BYTES:
        raise ValueError(f"the recipe is {size} bytes, more than {MAX_RECIPE_BYTES}")
    return value


def describe_problem(loc: Iterable[object], message: str) -> str:
    """A refused value as one line, where then what (`builds.0.name: invalid package name '../x'`): how the farm's
    pydantic errors and the client's wire errors are both told, so a user sees the same words from either."""
    where = ".".join(str(part) for part in loc)
    line = f"{where}: {message}" if where else message
    return " ".join(line.split())[:300]


# Checks of a whole object. `Any`: each is called with the pydantic model and with the generated dataclass.


def platform_of(client: Any) -> Platform:
    """The core Platform a ClientPlatform (either module's) names; UsageError when it names none."""
    return Platform(client.os, client.arch, client.libc, client.libc_version)


def valid_platform(client: Any) -> None:
    try:
        platform_of(client)
    except UsageError as exc:
        raise ValueError(exc.message) from None


def ready_has_artifact(build: Any) -> None:
    """A ready build says where its artifact is and what its sha256 is: the client downloads and checks it."""
    if build.status == BuildStatus.READY and (build.url is None or build.sha256 is None):
        raise ValueError("url: a ready build needs its artifact's url and sha256")


def resolve_is_consistent(answer: Any) -> None:
    """Every key the answer mentions is one of its builds: the client walks dependencies by key."""
    keys = [build.key for build in answer.builds]
    if len(set(keys)) != len(keys):
        raise ValueError("builds: a build key is listed twice")
    known = set(keys)
    for key in answer.requested:
        if key not in known:
            raise ValueError(f"requested: key {key} is not among the builds of the answer")
    for build in answer.builds:
        for dependency in build.dependencies:
            if dependency not in known:
                raise ValueError(f"dependencies: {build.name}'s dependency {dependency} is not in the answer")


def recipe_files_once(request: Any) -> None:
    seen: set[str] = set()
    for recipe in request.recipes:
        if recipe.file in seen:
            raise ValueError(f"recipes: the file {recipe.file} is listed twice")
        seen.add(recipe.file)


def each_file_once(answer: Any) -> None:
    files = [item.file for item in answer.published] + [item.file for item in answer.skipped]
    if len(set(files)) != len(files):
        raise ValueError("published: a file is both published and skipped, or named twice")


MODEL_CHECKS: dict[str, tuple[Callable[[Any], None], ...]] = {
    "ClientPlatform": (valid_platform,),
    "BuildInfo": (ready_has_artifact,),
    "ResolveResponse": (resolve_is_consistent,),
    "PublishRequest": (recipe_files_once,),
    "PublishResponse": (each_file_once,),
}
