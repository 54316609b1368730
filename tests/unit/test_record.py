"""`@record` makes classes that behave as `@dataclass(frozen=True)` ones do (pkgc.core.record).

Each case builds the same class both ways and compares what a caller can see: construction (positional, keyword,
defaults, factories, errors), equality, hashing, ordering, repr, frozenness, __post_init__, and the dataclasses
functions (fields, replace, asdict).
"""

from __future__ import annotations

import dataclasses
import inspect
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

    assert make(record) < make(dataclasses.dataclass(frozen=True)) / 5


def test_init_is_compiled_at_the_first_instance_and_then_is_a_dataclasss() -> None:
    """Nothing is compiled when the class is made; the first instance puts the real __init__ in place."""
    reference, ours = pair()
    stub = ours.__dict__["__init__"]
    assert ours.__init__.__qualname__.endswith("Build.__init__")

    class Later(ours):  # type: ignore[misc, valid-type]  # a subclass made, and used, before its base ever was
        pass

    assert Later("hello", "2.12").version == "2.12"
    compiled = ours.__dict__["__init__"]
    assert compiled is not stub

    def shape(function: Any) -> list[tuple[str, bool]]:
        """The parameters' names and which have defaults (annotations and a factory's marker are spelled otherwise)."""
        return [(p.name, p.default is not p.empty) for p in inspect.signature(function).parameters.values()]

    assert shape(compiled) == shape(reference.__init__) and shape(ours) == shape(reference)
    assert ours("a", "1") == ours(name="a", version="1") and ours.__dict__["__init__"] is compiled
    assert stub(ours.__new__(ours), "b", "2") is None  # a stub kept somewhere still initialises


def test_methods_the_class_defines_are_kept_as_a_dataclass_keeps_them() -> None:
    def body(decorate: Any) -> type[Any]:
        @decorate
        class Named:
            name: str
            note: str = ""

            def __repr__(self) -> str:
                return f"<{self.name}>"

            def __eq__(self, other: object) -> bool:
                return isinstance(other, Named) and other.name == self.name

        return Named

    reference, ours = body(dataclasses.dataclass(frozen=True)), body(record)
    for cls in (reference, ours):
        assert repr(cls("x", "a")) == "<x>"
        assert cls("x", "a") == cls("x", "b")
        assert hash(cls("x", "a")) == hash(cls("x", "a"))  # frozen and eq: a field hash, as a dataclass makes

    @record
    class Hashed:
        name: str

        def __hash__(self) -> int:
            return 7

    assert hash(Hashed("x")) == 7 == hash(dataclasses.dataclass(frozen=True)(type("H", (), {
        "__annotations__": {"name": "str"}, "__hash__": lambda self: 7}))("x"))

    with pytest.raises(TypeError, match="__init__ of its own"):

        @record
        class Own:
            name: str

            def __init__(self) -> None:
                pass

    with pytest.raises(TypeError, match="cannot combine __lt__ with order"):

        @record(order=True)
        class Ordered:
            name: str

            def __lt__(self, other: object) -> bool:
                return False

    with pytest.raises(TypeError, match="cannot combine __setattr__ with frozen"):

        @record
        class Settable:
            name: str

            def __setattr__(self, name: str, value: object) -> None:
                pass


def test_one_and_no_field_records_compare_and_hash_as_dataclasses_do() -> None:
    one = record(type("One", (), {"__annotations__": {"a": "int"}}))
    reference = dataclasses.dataclass(frozen=True, order=True)(type("One", (), {"__annotations__": {"a": "int"}}))
    ordered = record(order=True)(type("One", (), {"__annotations__": {"a": "int"}}))
    assert hash(one(3)) == hash(reference(3)) and one(3) == one(3) and one(3) != one(4)
    assert sorted([ordered(2), ordered(1)]) == [ordered(1), ordered(2)] and ordered(1) <= ordered(1)
    empty = record(type("Empty", (), {}))
    assert empty() == empty() and hash(empty()) == hash(dataclasses.dataclass(frozen=True)(type("E", (), {}))())
    assert repr(one(3)) == "One(a=3)" and repr(empty()) == "Empty()"


def test_fields_named_like_the_generated_code_and_slots() -> None:
    """Field names the generated __init__ could confuse with its own names still work; __slots__ is refused."""

    @record
    class Awkward:
        _fields: int
        _MISSING: int = 2
        fields: list[int] = dataclasses.field(default_factory=list)

    made = Awkward(1)
    assert (made._fields, made._MISSING, made.fields) == (1, 2, [])
    assert Awkward(1, 3, [4]) == Awkward(_fields=1, _MISSING=3, fields=[4])
    with pytest.raises(TypeError, match="__slots__"):

        @record
        class Slotted:
            __slots__ = ("a",)
            a: int
