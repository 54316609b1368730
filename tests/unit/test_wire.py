"""The client's wire models (pkgc.core.wire, generated) agree with the farm's pydantic models (pkgc.core.protocol).

The client no longer imports pydantic; it validates every answer with dataclasses generated from the pydantic
models. These tests hold the two together: the generated file is what the models generate; every answer a farm can
send (a pydantic model's JSON) is taken, with the same values; and over thousands of hostile variations of real
answers, whatever the client takes the farm's models take too (the client is never the more lenient of the two).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import AfterValidator, BaseModel, ValidationError

from pkgc.core import protocol, wire
from pkgc.core.wire_schema import Invalid, decode, decode_json, dumps, encode

ROOT = Path(__file__).resolve().parents[2]
KEY_A, KEY_B, KEY_C = "a" * 64, "b" * 64, "c" * 64
SHA = "d" * 64


def _load_generator() -> Any:
    spec = importlib.util.spec_from_file_location("gen_wire", ROOT / "tools" / "gen_wire.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ready(key: str, name: str, dependencies: list[str] = []) -> dict[str, Any]:  # noqa: B006
    return {
        "key": key,
        "name": name,
        "version": "2.12.1",
        "options": {"opt": "O2", "cpu": "x86-64-v2"},
        "status": "ready",
        "dependencies": dependencies,
        "runtime_dependencies": ["zlib"] if dependencies else [],
        "url": f"/v1/artifacts/{key}.tar.zst",
        "sha256": SHA,
        "size": 123456,
        "log_url": "https://cdn.example.test/logs/x.log",
        "attempts": 1,
        "last_line": "make[1]: Leaving directory",
    }


def variant(name: str) -> dict[str, Any]:
    return {"name": name, "description": "optimisation level", "default": "O2", "values": ["O0", "O2", "O3"]}


# One real-looking document of each model the client reads or sends.
CORPUS: list[tuple[type[BaseModel], dict[str, Any]]] = [
    (
        protocol.ResolveResponse,
        {"requested": [KEY_B], "builds": [ready(KEY_A, "zlib"), ready(KEY_B, "hello", [KEY_A])]},
    ),
    (
        protocol.WaitResponse,
        {
            "finished": [ready(KEY_A, "zlib")],
            "pending": [KEY_B],
            "progress": [
                {
                    "key": KEY_B,
                    "name": "hello",
                    "version": "2.12",
                    "options": {},
                    "status": "building",
                    "last_line": "CC hello.o",
                    "error": None,
                }
            ],
        },
    ),
    (
        protocol.BuildsResponse,
        {"builds": [ready(KEY_A, "zlib"), {**ready(KEY_C, "zlib"), "status": "failed", "url": None, "error": "x"}]},
    ),
    (
        protocol.PackageDetails,
        {
            "name": "hello",
            "summary": "GNU Hello: prints a friendly greeting",
            "homepage": "https://www.gnu.org/software/hello/",
            "license": "GPL-3.0-or-later",
            "versions": ["2.12.1", "2.10"],
            "variants": [variant("nls")],
            "global_options": [variant("opt")],
            "build_dependencies": ["gettext"],
            "runtime_dependencies": [],
            "origin": "generated",
        },
    ),
    (
        protocol.CatalogResponse,
        {
            "packages": [
                {"name": "zlib", "summary": "compression", "latest": "1.3.1", "homepage": ""},
                {"name": "hello", "summary": "greeting", "latest": "2.12"},
            ],
            "debian": {"state": "loaded", "since": 1_700_000_000.5, "packages": 2},
        },
    ),
    (protocol.SearchResponse, {"results": [{"name": "zlib", "summary": "compression", "latest": "1.3.1"}]}),
    (
        protocol.PublishResponse,
        {
            "published": [{"file": "hello.toml", "name": "hello", "version": "2.12"}],
            "skipped": [{"file": "bad.toml", "error": "[source] needs url"}],
        },
    ),
    (protocol.ErrorBody, {"error": "not_found", "reason": "unknown package 'nosuch'"}),
    (
        protocol.ResolveRequest,
        {
            "packages": [
                {"name": "hello", "version": "2.12", "options": {"opt": "O3", "nls": False}},
                {"name": "zlib", "dependency_options": {"opt": "O2"}},
            ],
            "platform": {
                "os": "linux",
                "arch": "x86_64",
                "libc": "glibc",
                "libc_version": "2.36",
                "cpu_levels": ["x86-64", "x86-64-v2"],
            },
            "retry_failed": True,
        },
    ),
    (protocol.WaitRequest, {"keys": [KEY_A], "timeout": 12.5, "seen": {KEY_A: "queued"}}),
    (protocol.PublishRequest, {"recipes": [{"file": "hello.toml", "text": "[package]\nname = 'hello'\n"}]}),
]

HOSTILE: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    7,
    1.5,
    2.0,
    2**40,
    2**70,
    10**400,  # valid JSON, too large for a float
    1e300,
    "",
    "x",
    "2.12",
    "ready",
    "failed",
    "loaded",
    "O3",
    "../x",
    "a/b",
    "x" * 65,
    "y" * 5000,
    "\x1b[2J",
    "line\nbreak",
    "/v1/a/../b",
    "/v1/artifacts/ok",
    "http://",
    "file:///etc/passwd",
    "https://cdn.example.test/x",
    "f" * 64,
    "F" * 64,
    [],
    ["x"],
    [KEY_A],
    {},
    {"a": "b"},
    {"opt": "O3"},
]


def wire_model(model: type[BaseModel]) -> Any:
    return getattr(wire, model.__name__)


def leaves(document: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path into a JSON document (containers and scalars), and each object's missing and extra keys."""
    yield path
    if isinstance(document, dict):
        for key, value in document.items():
            yield from leaves(value, (*path, key))
        yield (*path, "unexpected_field")
    elif isinstance(document, list):
        for index, value in enumerate(document):
            yield from leaves(value, (*path, index))


def replaced(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    copy: Any = dict(document) if isinstance(document, dict) else list(document)
    head = path[0]
    copy[head] = replaced(copy[head] if (isinstance(copy, dict) and head in copy) or isinstance(copy, list) else {}, path[1:], value)
    return copy


def removed(document: Any, path: tuple[Any, ...]) -> Any:
    if len(path) == 1:
        if isinstance(document, dict):
            return {k: v for k, v in document.items() if k != path[0]}
        return [v for i, v in enumerate(document) if i != path[0]]
    copy: Any = dict(document) if isinstance(document, dict) else list(document)
    copy[path[0]] = removed(copy[path[0]], path[1:])
    return copy


def pydantic_takes(model: type[BaseModel], raw: bytes) -> BaseModel | None:
    try:
        return model.model_validate_json(raw)
    except ValidationError:
        return None


def wire_takes(model: type[BaseModel], raw: bytes) -> Any:
    try:
        return decode_json(wire_model(model), raw)
    except Invalid:
        return None


def test_the_generated_module_is_what_the_models_generate() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_wire.py"), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_every_protocol_model_has_its_wire_twin_with_the_same_fields() -> None:
    generator = _load_generator()
    for model in generator.models():
        twin = wire_model(model)
        assert list(twin.__wire_fields__) == list(model.model_fields), model.__name__
        required = [name for name, (_kind, needed) in twin.__wire_fields__.items() if needed]
        assert required == [name for name, info in model.model_fields.items() if info.is_required()], model.__name__


def test_a_field_check_from_outside_the_rules_stops_the_generator() -> None:
    """A check the generator cannot name would be dropped silently; it refuses instead."""
    generator = _load_generator()
    with pytest.raises(generator.Unsupported, match=r"not a function of pkgc\.core\.protocol_rules"):
        generator.kind(Annotated[str, AfterValidator(lambda value: value)], [])
    with pytest.raises(generator.Unsupported, match="the type"):
        generator.kind(set[str], [])


@pytest.mark.parametrize(("model", "document"), CORPUS, ids=[model.__name__ for model, _ in CORPUS])
def test_what_a_farm_sends_the_client_takes_with_the_same_values(model: type[BaseModel], document: Any) -> None:
    sent = model.model_validate(document)
    taken = decode_json(wire_model(model), sent.model_dump_json())
    assert encode(taken) == sent.model_dump(mode="json")
    assert json.loads(dumps(taken)) == json.loads(sent.model_dump_json())


@pytest.mark.parametrize(("model", "document"), CORPUS, ids=[model.__name__ for model, _ in CORPUS])
def test_hostile_variations_the_client_takes_the_farm_takes_too(model: type[BaseModel], document: Any) -> None:
    """Each path of a real document replaced by each hostile value, or removed: the client never takes what the farm's
    models refuse, and takes every variation the farm's models take once the farm has written it out."""
    cases = 0
    taken_by_both = 0
    for path in leaves(document):
        variants = [replaced(document, path, value) for value in HOSTILE]
        if path and path[-1] != "unexpected_field":
            variants.append(removed(document, path))
        for variant_document in variants:
            raw = json.dumps(variant_document).encode()
            theirs = pydantic_takes(model, raw)
            ours = wire_takes(model, raw)
            cases += 1
            if ours is not None:
                assert theirs is not None, f"the client takes what the farm refuses: {raw[:300]!r}"
                assert encode(ours) == theirs.model_dump(mode="json"), raw[:300]
                taken_by_both += 1
            if theirs is not None:
                canonical = theirs.model_dump_json()
                again = wire_takes(model, canonical.encode())
                assert again is not None, f"the client refuses what a farm sends: {canonical[:300]}"
                assert encode(again) == theirs.model_dump(mode="json")
    assert cases > 100 and taken_by_both > 0


def test_the_client_names_the_field_as_the_farm_does() -> None:
    """A crafted name, key, URL or inconsistency: the same one-line reason from both, the field named first."""
    good = CORPUS[0][1]
    crafted = [
        replaced(good, ("builds", 1, "name"), "../../somewhere/x"),
        replaced(good, ("builds", 0, "sha256"), "F" * 64),
        replaced(good, ("builds", 0, "url"), "/v1/a/../../etc"),
        replaced(good, ("builds", 1, "dependencies"), [KEY_C]),
        replaced(good, ("builds", 0, "url"), None),
        replaced(good, ("builds", 0, "options"), {"opt": "$(reboot)"}),
    ]
    for document in crafted:
        raw = json.dumps(document).encode()
        with pytest.raises(ValidationError) as theirs:
            protocol.ResolveResponse.model_validate_json(raw)
        with pytest.raises(Invalid) as ours:
            decode_json(wire.ResolveResponse, raw)
        assert ours.value.describe() == protocol.describe_invalid(theirs.value.errors())


def test_a_wire_model_cannot_be_built_invalid() -> None:
    """Built in the client (a request), a wire model checks itself as a pydantic model does."""
    with pytest.raises(Invalid, match="not 64 lower-case hex digits"):
        wire.BuildInfo(key="k", name="hello", version="1", options={}, status=wire.BuildStatus.QUEUED)
    with pytest.raises(Invalid, match="ready build needs"):
        wire.BuildInfo(key=KEY_A, name="hello", version="1", options={}, status=wire.BuildStatus.READY)
    with pytest.raises(Invalid, match="listed twice"):
        wire.PublishRequest(recipes=[wire.RecipeFile(file="a.toml", text="x"), wire.RecipeFile(file="a.toml", text="y")])
    with pytest.raises(Invalid):
        wire.WaitRequest(keys=[])
    built = wire.BuildInfo(key=KEY_A, name="hello", version="1", options={}, status="queued")  # type: ignore[arg-type]
    assert built.status is wire.BuildStatus.QUEUED


def test_a_long_list_is_refused_before_its_items_are_read() -> None:
    """The bound comes first: a hostile farm's 10,000 bad keys cost one check, and the error names the list."""
    with pytest.raises(Invalid) as refused:
        decode(wire.WaitResponse, {"finished": [], "pending": ["x"] * 10_000})
    assert refused.value.describe() == "pending: List should have at most 100 items"


@pytest.mark.parametrize("raw", [b"", b"{", b"[]", b"null", b'"x"', b"[" * 100_000, b'{"builds": 1e999}', b"\xff"])
def test_what_is_not_an_answer_is_invalid_not_a_crash(raw: bytes) -> None:
    with pytest.raises(Invalid):
        decode_json(wire.BuildsResponse, raw)


def test_a_number_too_large_for_a_float_is_invalid_not_a_crash() -> None:
    """A hostile farm's 400-digit `since` (a float field): an Invalid naming the field, not an OverflowError."""
    raw = b'{"packages": [], "debian": {"state": "loaded", "since": 1' + b"0" * 400 + b"}}"
    with pytest.raises(Invalid) as refused:
        decode_json(wire.CatalogResponse, raw)
    assert refused.value.describe() == "debian.since: Input should be a finite number"
