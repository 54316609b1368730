"""`@record` makes classes that behave as `@dataclass(frozen=True)` ones do (pkgc.core.record).

Each case builds the same class both ways and compares what a caller can see: construction (positional, keyword,
defaults, factories, errors), equality, hashing, ordering, repr, frozenness, __post_init__, and the dataclasses
functions (fields, replace, asdict).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, ClassVar

import pytest

from pkgc.core.record import record


def pair(frozen: bool = True, order: bool = False) -> tuple[type[Any], type[Any]]:
    def body(decorate: Any) -> type[Any]:
        @decorate
        class Build:
            """A build, as the client records it."""

            kind: ClassVar[str] = "build"
            name: str
            version: str
            options: dict[str, str] = dataclasses.field(default_factory=dict)
            requested: bool = True
            files: list[str] = dataclasses.field(default_factory=list)

            def label(self) -> str:
                return f"{self.name}@{self.version}"

        return Build

    if frozen:
        return body(dataclasses.dataclass(frozen=True, order=order)), body(record(order=order))
    return body(dataclasses.dataclass(order=order)), body(record(frozen=False, order=order))


def test_construction_repr_and_equality_are_a_dataclasss() -> None:
    reference, ours = pair()
    for args, kwargs in [
        (("hello", "2.12"), {}),
        (("hello",), {"version": "2.12", "requested": False}),
        ((), {"name": "zlib", "version": "1.3", "options": {"opt": "O2"}, "files": ["lib/libz.a"]}),
    ]:
        a, b = reference(*args, **kwargs), ours(*args, **kwargs)
        assert repr(a).replace("test_record.pair.<locals>.body.<locals>.", "") == repr(b).replace(
            "test_record.pair.<locals>.body.<locals>.", ""
        )
        assert dataclasses.asdict(a) == dataclasses.asdict(b)
        assert b == ours(*args, **kwargs) and b != reference(*args, **kwargs)
        assert b.label() == a.label() and ours.kind == "build"
    assert ours("a", "1").options is not ours("a", "1").options, "a factory per instance"
    for bad_args, bad_kwargs in [((), {}), (("a",), {}), (("a", "1"), {"colour": "red"}), (("a", "1", {}, True, [], 5), {})]:
        with pytest.raises(TypeError):
            reference(*bad_args, **bad_kwargs)
        with pytest.raises(TypeError):
            ours(*bad_args, **bad_kwargs)


def test_frozen_hashable_and_the_dataclasses_functions_work() -> None:
    _reference, ours = pair()
    build = ours("hello", "2.12", {}, True, [])
    with pytest.raises(dataclasses.FrozenInstanceError):
        build.name = "other"
    with pytest.raises(dataclasses.FrozenInstanceError):
        del build.name
    assert [f.name for f in dataclasses.fields(ours)] == ["name", "version", "options", "requested", "files"]
    assert dataclasses.is_dataclass(build)
    changed = dataclasses.replace(build, version="2.13")
    assert changed.version == "2.13" and changed.name == "hello" and build.version == "2.12"
    simple = record(type("Key", (), {"__annotations__": {"a": "str", "b": "int"}}))
    assert hash(simple("x", 1)) == hash(simple("x", 1)) and len({simple("x", 1), simple("x", 1)}) == 1


def test_mutable_records_are_unhashable_and_assignable_as_dataclasses_are() -> None:
    reference, ours = pair(frozen=False)
    build = ours("hello", "2.12")
    build.version = "2.13"
    assert build.version == "2.13"
    assert reference.__hash__ is None and ours.__hash__ is None


def test_order_and_post_init() -> None:
    @record(order=True)
    class Platform:
        os: str
        arch: str

        def __post_init__(self) -> None:
            if "/" in self.arch:
                raise ValueError("bad arch")

    platforms = [Platform("linux", "x86_64"), Platform("linux", "aarch64"), Platform("darwin", "arm64")]
    assert sorted(platforms) == [Platform("darwin", "arm64"), Platform("linux", "aarch64"), Platform("linux", "x86_64")]
    with pytest.raises(ValueError, match="bad arch"):
        Platform("linux", "../x")


def test_what_it_does_not_support_is_refused() -> None:
    with pytest.raises(TypeError, match="only default= and default_factory="):

        @record
        class Hidden:
            a: int = dataclasses.field(default=0, repr=False)

    with pytest.raises(TypeError, match="InitVar is not supported"):

        @record
        class Seeded:
            a: int
            seed: dataclasses.InitVar[int]

    with pytest.raises(TypeError, match="follows default argument"):

        @record
        class Order:
            a: int = 0
            b: int

    with pytest.raises(TypeError, match="inherited"):

        @record
        class Child(dataclasses.make_dataclass("Base", [("a", int)])):  # type: ignore[misc]
            b: int


def test_it_is_cheaper_to_make_than_a_dataclass() -> None:
    """What it exists for: the classes a command imports are made faster (a ratio in one run, not a time)."""

    def make(decorate: Any) -> float:
        started = time.perf_counter()
        for _ in range(40):
            decorate(type("Many", (), {"__annotations__": {f"f{n}": "int" for n in range(8)}}))
        return time.perf_counter() - started

    assert make(record) < make(dataclasses.dataclass(frozen=True)) / 2
