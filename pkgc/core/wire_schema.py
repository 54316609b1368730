"""The small validator that the generated `pkgc.core.wire` models run: kinds of values, and JSON in and out.

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
from enum import Enum
from typing import Any, ClassVar, TypeVar

from pkgc.core.protocol_rules import describe_problem

Loc = tuple[str | int, ...]


class Invalid(ValueError):
    """A value the contract refuses: where it is (field names and list indexes) and why, in one line."""

    def __init__(self, loc: Loc, message: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message

    def describe(self) -> str:
        return describe_problem(self.loc, self.message)


_Model = TypeVar("_Model")


class WireObject:
    """The base of the generated models: frozen, compared and shown by their fields (what a frozen dataclass does,
    without the ~0.5 ms that `@dataclass` spends making each class: 20 models were 10 ms of every command)."""

    __slots__ = ()
    __wire_fields__: ClassVar[dict[str, tuple[Kind, bool]]]
    __wire_checks__: ClassVar[tuple[Callable[[Any], None], ...]]

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen: cannot assign to {name}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen: cannot delete {name}")

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__wire_fields__)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__wire_fields__)
        return f"{type(self).__name__}({fields})"


class Kind:
    __slots__ = ()

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
    unit = "characters" if what == "String" else "items"
    if max_length is not None and size > max_length:
        raise Invalid(loc, f"{what} should have at most {max_length} {unit}")
    if min_length is not None and size < min_length:
        raise Invalid(loc, f"{what} should have at least {min_length} {unit}")


# The kinds are plain classes with slots, not dataclasses, for the same reason as WireObject.


class Str(Kind):
    __slots__ = ("checks", "max_length", "min_length")

    def __init__(
        self, min_length: int | None = None, max_length: int | None = None, checks: tuple[Callable[[str], str], ...] = ()
    ) -> None:
        self.min_length, self.max_length, self.checks = min_length, max_length, checks

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


class Int(Kind):
    __slots__ = ("ge", "gt", "le", "lt")

    def __init__(self, ge: int | None = None, le: int | None = None, gt: int | None = None, lt: int | None = None) -> None:
        self.ge, self.le, self.gt, self.lt = ge, le, gt, lt

    def check(self, value: object, loc: Loc) -> Any:
        if not isinstance(value, int) or isinstance(value, bool):
            raise Invalid(loc, "Input should be a valid integer")
        _bounds(value, loc, self.ge, self.le, self.gt, self.lt)
        return value


class Float(Kind):
    __slots__ = ("ge", "gt", "le", "lt")

    def __init__(
        self, ge: float | None = None, le: float | None = None, gt: float | None = None, lt: float | None = None
    ) -> None:
        self.ge, self.le, self.gt, self.lt = ge, le, gt, lt

    def check(self, value: object, loc: Loc) -> Any:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise Invalid(loc, "Input should be a finite number")
        try:
            number = float(value)  # an integer of 400 digits is valid JSON, and too large for a float
        except OverflowError:
            raise Invalid(loc, "Input should be a finite number") from None
        if not math.isfinite(number):
            raise Invalid(loc, "Input should be a finite number")
        _bounds(number, loc, self.ge, self.le, self.gt, self.lt)
        return number


class Bool(Kind):
    __slots__ = ()

    def check(self, value: object, loc: Loc) -> Any:
        if not isinstance(value, bool):
            raise Invalid(loc, "Input should be a valid boolean")
        return value


class Null(Kind):
    __slots__ = ()

    def check(self, value: object, loc: Loc) -> Any:
        if value is not None:
            raise Invalid(loc, "Input should be None")
        return None


class EnumOf(Kind):
    __slots__ = ("enum",)

    def __init__(self, enum: type[Enum]) -> None:
        self.enum = enum

    def check(self, value: object, loc: Loc) -> Any:
        if isinstance(value, self.enum):
            return value
        for member in self.enum:
            if type(value) is str and member.value == value:
                return member
        allowed = ", ".join(repr(member.value) for member in self.enum)
        raise Invalid(loc, f"Input should be {allowed}")


class LiteralOf(Kind):
    __slots__ = ("values",)

    def __init__(self, values: tuple[str, ...]) -> None:
        self.values = values

    def check(self, value: object, loc: Loc) -> Any:
        if type(value) is not str or value not in self.values:
            raise Invalid(loc, f"Input should be {', '.join(repr(v) for v in self.values)}")
        return value


class ListOf(Kind):
    __slots__ = ("item", "max_length", "min_length")

    def __init__(self, item: Kind, min_length: int | None = None, max_length: int | None = None) -> None:
        self.item, self.min_length, self.max_length = item, min_length, max_length

    def check(self, value: object, loc: Loc) -> Any:
        if not isinstance(value, list | tuple):
            raise Invalid(loc, "Input should be a valid list")
        _length(len(value), loc, "List", self.min_length, self.max_length)  # before the items: bounded work
        return [self.item.check(item, (*loc, index)) for index, item in enumerate(value)]


class DictOf(Kind):
    __slots__ = ("key", "max_length", "value")

    def __init__(self, key: Kind, value: Kind, max_length: int | None = None) -> None:
        self.key, self.value, self.max_length = key, value, max_length

    def check(self, value: object, loc: Loc) -> Any:
        if not isinstance(value, dict):
            raise Invalid(loc, "Input should be a valid dictionary")
        _length(len(value), loc, "Dictionary", None, self.max_length)
        result = {}
        for key, item in value.items():
            checked = self.key.check(key, (*loc, str(key)))
            result[checked] = self.value.check(item, (*loc, str(key)))
        return result


class OneOf(Kind):
    """The first option that takes the value (a union: `X | None`, `str | bool`); the last refusal otherwise."""

    __slots__ = ("options",)

    def __init__(self, options: tuple[Kind, ...]) -> None:
        self.options = options

    def check(self, value: object, loc: Loc) -> Any:
        refusal = Invalid(loc, "no option takes this value")
        for option in self.options:
            try:
                return option.check(value, loc)
            except Invalid as exc:
                refusal = exc
        raise refusal


class ModelOf(Kind):
    __slots__ = ("model",)

    def __init__(self, model: type[WireObject]) -> None:
        self.model = model

    def check(self, value: object, loc: Loc) -> Any:
        if isinstance(value, self.model):
            return value
        return decode(self.model, value, loc)


# A field's default of no items or entries: never stored (ListOf and DictOf make each instance its own copy).
NO_ITEMS: Any = ()
NO_ENTRIES: Any = {}


def fill(instance: WireObject, values: dict[str, Any]) -> None:
    """Set, check (and convert) every field of a generated model from its __init__'s arguments, then run the checks of
    the whole object: an instance that exists is a valid one, as a pydantic model's is."""
    for name, (kind, _required) in type(instance).__wire_fields__.items():
        object.__setattr__(instance, name, kind.check(values[name], (name,)))
    for check in type(instance).__wire_checks__:
        try:
            check(instance)
        except ValueError as exc:
            raise Invalid((), str(exc)) from None


def decode(model: type[_Model], data: object, loc: Loc = ()) -> _Model:
    """A generated model from JSON-shaped data: no unknown field, every required one, each one checked."""
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
    """A generated model from a JSON document; Invalid when it is not JSON or not the model."""
    try:
        data = json.loads(content)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise Invalid((), f"Invalid JSON: {str(exc)[:200]}") from None
    return decode(model, data)


def encode(value: Any) -> Any:
    """JSON-shaped data from a generated model (every field, as pydantic's model_dump(mode="json") writes it)."""
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
    """The compact UTF-8 JSON of a generated model, as pydantic's model_dump_json() writes it."""
    return json.dumps(encode(value), separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")
