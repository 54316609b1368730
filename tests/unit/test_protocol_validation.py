"""The protocol models validate every field of a farm's answer (pkgc.core.protocol).

The client uses a build's name and sha256 in paths, so the models are where a crafted answer stops. The same models
build the server's answers, so these tests also check that what a real farm produces passes them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from pkgc.core.protocol import (
    MAX_ERROR_LENGTH,
    BuildInfo,
    BuildStatus,
    CatalogResponse,
    PackageDetails,
    ResolveRequest,
    ResolveResponse,
    VariantInfo,
    WaitResponse,
    describe_invalid,
)
from pkgc.farm.embedded import build_service, publish_recipes
from pkgc.farm.paths import FarmPaths
from pkgc.farm.ports import BuildRecord
from pkgc.farm.service import FarmService

KEY = "ab" * 32
DEP = "cd" * 32


def build(**changes: Any) -> dict[str, Any]:
    good: dict[str, Any] = {
        "key": KEY,
        "name": "hello",
        "version": "2.10",
        "options": {"opt": "O2", "cpu": "x86-64-v2", "debug": "false"},
        "status": "ready",
        "dependencies": [],
        "runtime_dependencies": ["zlib"],
        "url": f"/v1/artifacts/{KEY}.tar.zst",
        "sha256": "ef" * 32,
        "size": 54_321,
        "error": None,
        "log_url": f"/v1/builds/{KEY}/log",
        "attempts": 1,
        "last_line": "make[2]: Entering directory '/build'",
    }
    return {**good, **changes}


def refused(model: Any, data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as raised:
        model.model_validate(data)
    return describe_invalid(raised.value.errors())


def test_a_well_formed_build_passes() -> None:
    info = BuildInfo.model_validate(build())
    assert info.name == "hello" and info.size == 54_321


@pytest.mark.parametrize(
    "url",
    [
        f"/v1/artifacts/{KEY}.tar.zst",
        "https://cdn.example.org/artifacts/ab/x.tar.zst?sig=a%2Fb",
        "http://127.0.0.1:9/a",
    ],
)
def test_farm_urls_that_are_accepted(url: str) -> None:
    assert BuildInfo.model_validate(build(url=url)).url == url


BAD_BUILDS = [
    pytest.param({"name": "../../x"}, "name", id="name-traversal"),
    pytest.param({"name": ".."}, "name", id="name-dotdot"),
    pytest.param({"name": "/etc/passwd"}, "name", id="name-absolute"),
    pytest.param({"name": "a/b"}, "name", id="name-slash"),
    pytest.param({"name": "Hello"}, "name", id="name-upper-case"),
    pytest.param({"name": "x" * 65}, "name", id="name-long"),
    pytest.param({"version": "../1"}, "version", id="version-traversal"),
    pytest.param({"version": "1/2"}, "version", id="version-slash"),
    pytest.param({"key": "AB" * 32}, "key", id="key-upper-case"),
    pytest.param({"key": "ab" * 31}, "key", id="key-short"),
    pytest.param({"key": "ab" * 33}, "key", id="key-long"),
    pytest.param({"sha256": "../../../etc/passwd"}, "sha256", id="sha256-traversal"),
    pytest.param({"sha256": "EF" * 32}, "sha256", id="sha256-upper-case"),
    pytest.param({"sha256": "ef" * 31 + "e"}, "sha256", id="sha256-short"),
    pytest.param({"sha256": "gg" * 32}, "sha256", id="sha256-not-hex"),
    pytest.param({"size": -1}, "size", id="size-negative"),
    pytest.param({"size": 10**30}, "size", id="size-enormous"),
    pytest.param({"size": "12"}, "size", id="size-string"),
    pytest.param({"size": 1.5}, "size", id="size-float"),
    pytest.param({"url": "file:///etc/passwd"}, "url", id="url-file"),
    pytest.param({"url": "ftp://127.0.0.1/x"}, "url", id="url-ftp"),
    pytest.param({"url": "/etc/passwd"}, "url", id="url-outside-api"),
    pytest.param({"url": "/v1/../etc/passwd"}, "url", id="url-dotdot"),
    pytest.param({"url": "/v1//x"}, "url", id="url-empty-segment"),
    pytest.param({"url": "http://"}, "url", id="url-no-host"),
    pytest.param({"url": "https://cdn.example.org/a b"}, "url", id="url-space"),
    pytest.param({"url": "https://cdn.example.org/\nx"}, "url", id="url-newline"),
    pytest.param({"url": "https://x.example/" + "a" * 3000}, "url", id="url-long"),
    pytest.param({"log_url": "javascript:alert(1)"}, "log_url", id="log-url"),
    pytest.param({"options": {"../x": "1"}}, "options", id="option-name"),
    pytest.param({"options": {"opt": "O2 -fplugin=/tmp/x.so"}}, "options", id="option-value-space"),
    pytest.param({"options": {"opt": "\x1b[2J"}}, "options", id="option-value-escape"),
    pytest.param({"options": {f"o{i}": "1" for i in range(65)}}, "options", id="options-too-many"),
    pytest.param({"dependencies": ["../x"]}, "dependencies", id="dependency-key"),
    pytest.param({"dependencies": [DEP] * 257}, "dependencies", id="dependencies-too-many"),
    pytest.param({"runtime_dependencies": ["../x"]}, "runtime_dependencies", id="runtime-dependency"),
    pytest.param({"error": "e" * (MAX_ERROR_LENGTH + 1)}, "error", id="error-long"),
    pytest.param({"last_line": "l" * 501}, "last_line", id="last-line-long"),
    pytest.param({"attempts": -1}, "attempts", id="attempts-negative"),
    pytest.param({"status": "pwned"}, "status", id="status"),
    pytest.param({"evil": 1}, "evil", id="extra-field"),
    pytest.param({"url": None}, "url", id="ready-without-url"),
    pytest.param({"sha256": None}, "url", id="ready-without-sha256"),
]


@pytest.mark.parametrize(("changes", "field_name"), BAD_BUILDS)
def test_a_crafted_build_is_refused_naming_the_field(changes: dict[str, Any], field_name: str) -> None:
    problem = refused(BuildInfo, build(**changes))
    assert problem.startswith(field_name), problem
    assert "\n" not in problem and len(problem) <= 300


def test_a_resolve_answer_must_mention_only_its_own_builds() -> None:
    dependency = build(key=DEP, name="zlib", runtime_dependencies=[])
    ok = ResolveResponse.model_validate({"requested": [KEY], "builds": [dependency, build(dependencies=[DEP])]})
    assert [b.key for b in ok.builds] == [DEP, KEY]
    assert refused(ResolveResponse, {"requested": [DEP], "builds": [build()]}).startswith("requested")
    missing = refused(ResolveResponse, {"requested": [KEY], "builds": [build(dependencies=[DEP])]})
    assert missing.startswith("dependencies") and DEP in missing
    twice = refused(ResolveResponse, {"requested": [KEY], "builds": [build(), build()]})
    assert "twice" in twice


def test_answers_with_too_many_items_are_refused() -> None:
    builds = [build(key=f"{i:064x}") for i in range(1001)]
    assert refused(ResolveResponse, {"requested": [], "builds": builds}).startswith("builds")
    keys = [f"{i:064x}" for i in range(101)]
    assert refused(WaitResponse, {"finished": [], "pending": keys}).startswith("pending")


def test_crafted_catalog_entries_and_details_are_refused() -> None:
    entry = {"name": "x", "summary": "s", "latest": "1.0"}
    assert CatalogResponse.model_validate({"packages": [entry]}).packages[0].name == "x"
    assert refused(CatalogResponse, {"packages": [{**entry, "name": "../x"}]}).startswith("packages.0.name")
    assert refused(CatalogResponse, {"packages": [{**entry, "latest": "a b"}]}).startswith("packages.0.latest")
    variant = {"name": "tls", "description": "", "default": "on", "values": ["on", "off"]}
    assert refused(VariantInfo, {**variant, "values": ["on", "../x"]}).startswith("values.1")
    details = {
        "name": "x",
        "summary": "",
        "homepage": "",
        "license": "MIT\n\x1b[31m",
        "versions": ["1.0"],
        "variants": [],
        "global_options": [],
        "build_dependencies": [],
        "runtime_dependencies": [],
    }
    assert refused(PackageDetails, details).startswith("license")


def test_describe_invalid_is_one_short_line() -> None:
    problem = refused(BuildInfo, build(name="\n" * 500 + "x"))
    assert "\n" not in problem and len(problem) <= 300


# --- the server's own answers pass the same models ---------------------------------------------------------


@pytest.fixture
def service(tmp_path: Path) -> FarmService:
    service = build_service(FarmPaths(tmp_path))
    publish_recipes(service)
    return service


def test_the_farms_own_answers_pass(service: FarmService) -> None:
    for name in [summary.name for summary in service.catalog_snapshot()]:
        details = service.details(name)
        assert PackageDetails.model_validate_json(details.model_dump_json()) == details
    resolved = service.resolve(ResolveRequest.model_validate({"packages": [{"name": "pigz"}, {"name": "hello"}]}))
    assert ResolveResponse.model_validate_json(resolved.model_dump_json()) == resolved
    catalog = CatalogResponse(packages=service.catalog_snapshot())
    assert CatalogResponse.model_validate_json(catalog.model_dump_json()) == catalog


def test_the_farm_bounds_a_long_worker_error_so_its_answer_stays_valid(service: FarmService) -> None:
    record = BuildRecord(
        key=KEY,
        name="hello",
        version="2.10",
        options={"opt": "O2"},
        spec={},
        status=BuildStatus.FAILED,
        error="x" * 100_000,
        last_line="y" * 10_000,
    )
    info = service.to_info(record)
    assert info.error is not None and len(info.error) == MAX_ERROR_LENGTH
