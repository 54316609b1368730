"""The small validator that the generated `pkgc.core.wire` dataclasses run: kinds of values, and JSON in and out.

Why not pydantic here: the client validates every farm answer, and importing pydantic and building the protocol's
models cost about 85 ms of every command that asks the farm (`info` took 0.25 s in all). These kinds are the subset
the protocol uses (strings, integers, floats, booleans, enums, literals, lists, dicts, unions, nested models), each
with its bounds and its field checks from protocol_rules, generated from the pydantic models so both agree.

They are stricter than pydantic's lax mode, on purpose: a JSON string is not an integer, 1 is not `true`, a float is
not an integer. The farm serialises its answers from the pydantic models, which never write those forms, so a real
farm's answer passes; tests/unit/test_wire.py checks both directions.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar, Protocol, TypeVar

Loc = tuple[str | int, ...]


class Invalid(ValueError):
    """A value the contract refuses: where it is (field names and list indexes) and why, in one line."""

    def __init__(self, loc: Loc, message: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message

    def describe(self) -> str:
        where = ".".join(str(part) for part in self.loc)
        line = f"{where}: {self.message}" if where else self.message
        return " ".join(line.split())[:300]


class WireModel(Protocol):
    """A generated dataclass: its fields' kinds and whether each is required, and its checks of the whole object."""

    __wire_fields__: ClassVar[dict[str, tuple[Kind, bool]]]
    __wire_checks__: ClassVar[tuple[Callable[[Any], None], ...]]


_Model = TypeVar("_Model")


class Kind:
    def check(self, value: object, loc: Loc) -> Any:
        """The value as the field holds it (nested dicts made models, strings made enum members), or Invalid."""
        raise NotImplementedError


def _bounds(value: float, loc: Loc, ge: float | None, le: float | None, gt: float | None, lt: float | None) -> None:
    if ge is not None and not value >= ge:
        raise Invalid(loc, f"Input should be greater than or equal to {ge}")
    if gt is not None and not value > gt:
        raise Invalid(loc, f"Input should be greater than {gt}")
    if le is not None and not value <= le:
        raise Invalid(loc, f"Input should be less than or equal to {le}")
    if lt is not None and not value < lt:
        raise Invalid(loc, f"Input should be less than {lt}")


def _length(size: int, loc: Loc, what: str, min_length: int | None, max_length: int | None) -> None:
    if max_length is not None and size > max_length:
        raise Invalid(loc, f"{what} should have at most {max_length} {'characters' if what == 'String' else 'items'}")
    if min_length is not None and size < min_length:
        raise Invalid(loc, f"{what} should have at least {min_length} {'characters' if what == 'String' else 'items'}")


@dataclass(frozen=True)
class Str(Kind):
    min_length: int | None = None
    max_length: int | None = None
    checks: tuple[Callable[[str], str], ...] = ()

    def check(self, value: object, loc: Loc) -> Any:
        if not isinstance(value, str) or isinstance(value, Enum):
            raise Invalid(loc, "Input should be a valid string")
        _length(len(value), loc, "String", self.min_length, self.max_length)
        for check in self.checks:
            try:
                check(value)
            except ValueError as exc:
                raise Invalid(loc, str(exc)) from None
        return value


@dataclass(frozen=True)
class Int(Kind):
    ge: int | None = None
    le: int | None = None
    gt: int | None = None
    lt: int | None = None

    def check(self, value: object, loc: Loc) -> Any:
        if not isinstance(value, int) or isinstance(value, bool):
            raise Invalid(loc, "Input should be a valid integer")
        _bounds(value, loc, self.ge, self.le, self.gt, self.lt)
        return value


@dataclass(frozen=True)
class Float(Kind):
    ge: float | None = None
    le: float | None = None
    gt: float | None = None
    lt: float | None = None

    def check(self, value: object, loc: Loc) -> Any:
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            raise Invalid(loc, "Input should be a finite number")
        _bounds(value, loc, self.ge, self.le, self.gt, self.lt)
        return float(value)


@dataclass(frozen=True)
class Bool(Kind):
    def check(self, value: object, loc: Loc) -> Any:
        if not isinstance(value, bool):
            raise Invalid(loc, "Input should be a valid boolean")
        return value


@dataclass(frozen=True)
class Null(Kind):
    def check(self, value: object, loc: Loc) -> Any:
        if value is not None:
            raise Invalid(loc, "Input should be None")
        return None


@dataclass(frozen=True)
class EnumOf(Kind):
    enum: type[Enum]

    def check(self, value: object, loc: Loc) -> Any:
        if isinstance(value, self.enum):
            return value
        for member in self.enum:
            if type(value) is str and member.value == value:
                return member
        allowed = ", ".join(repr(member.value) for member in self.enum)
        raise Invalid(loc, f"Input should be {allowed}")


@dataclass(frozen=True)
class LiteralOf(Kind):
    values: tuple[str, ...]

    def check(self, value: object, loc: Loc) -> Any:
        if type(value) is not str or value not in self.values:
            raise Invalid(loc, f"Input should be {', '.join(repr(v) for v in self.values)}")
        return value


@dataclass(frozen=True)
class ListOf(Kind):
    item: Kind
    min_length: int | None = None
    max_length: int | None = None

    def check(self, value: object, loc: Loc) -> Any:
        if not isinstance(value, list | tuple):
            raise Invalid(loc, "Input should be a valid list")
        _length(len(value), loc, "List", self.min_length, self.max_length)  # before the items: bounded work
        return [self.item.check(item, (*loc, index)) for index, item in enumerate(value)]


@dataclass(frozen=True)
class DictOf(Kind):
    key: Kind
    value: Kind
    max_length: int | None = None

    def check(self, value: object, loc: Loc) -> Any:
        if not isinstance(value, dict):
            raise Invalid(loc, "Input should be a valid dictionary")
        _length(len(value), loc, "Dictionary", None, self.max_length)
        result = {}
        for key, item in value.items():
            checked = self.key.check(key, (*loc, str(key)))
            result[checked] = self.value.check(item, (*loc, str(key)))
        return result


@dataclass(frozen=True)
class OneOf(Kind):
    """The first option that takes the value (a union: `X | None`, `str | bool`); the last refusal otherwise."""

    options: tuple[Kind, ...]

    def check(self, value: object, loc: Loc) -> Any:
        refusal = Invalid(loc, "no option takes this value")
        for option in self.options:
            try:
                return option.check(value, loc)
            except Invalid as exc:
                refusal = exc
        raise refusal


@dataclass(frozen=True)
class ModelOf(Kind):
    model: type[Any]

    def check(self, value: object, loc: Loc) -> Any:
        if isinstance(value, self.model):
            return value
        return decode(self.model, value, loc)


def validate(instance: Any) -> None:
    """Check (and convert) every field of a generated dataclass, then the checks of the whole object; its
    `__post_init__` calls this, so an instance that exists is a valid one, as a pydantic model's is."""
    for name, (kind, _required) in type(instance).__wire_fields__.items():
        value = getattr(instance, name)
        checked = kind.check(value, (name,))
        if checked is not value:
            object.__setattr__(instance, name, checked)
    for check in type(instance).__wire_checks__:
        try:
            check(instance)
        except ValueError as exc:
            raise Invalid((), str(exc)) from None


def decode(model: type[_Model], data: object, loc: Loc = ()) -> _Model:
    """A generated dataclass from JSON-shaped data: no unknown field, every required one, each one checked."""
    fields: dict[str, tuple[Kind, bool]] = model.__wire_fields__  # type: ignore[attr-defined]
    if not isinstance(data, dict):
        raise Invalid(loc, f"Input should be an object ({model.__name__})")
    for key in data:
        if key not in fields:
            raise Invalid((*loc, str(key)), "Extra inputs are not permitted")
    for name, (_kind, required) in fields.items():
        if required and name not in data:
            raise Invalid((*loc, name), "Field required")
    try:
        return model(**data)
    except Invalid as exc:
        raise Invalid((*loc, *exc.loc), exc.message) from None


def decode_json(model: type[_Model], content: bytes | str) -> _Model:
    """A generated dataclass from a JSON document; Invalid when it is not JSON or not the model."""
    try:
        data = json.loads(content)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise Invalid((), f"Invalid JSON: {str(exc)[:200]}") from None
    return decode(model, data)


def encode(value: Any) -> Any:
    """JSON-shaped data from a generated dataclass (every field, as pydantic's model_dump(mode="json") writes it)."""
    fields = getattr(type(value), "__wire_fields__", None)
    if fields is not None:
        return {name: encode(getattr(value, name)) for name in fields}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, list | tuple):
        return [encode(item) for item in value]
    if isinstance(value, dict):
        return {key: encode(item) for key, item in value.items()}
    return value


def dumps(value: Any) -> bytes:
    """The compact UTF-8 JSON of a generated dataclass, as pydantic's model_dump_json() writes it."""
    return json.dumps(encode(value), separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")
