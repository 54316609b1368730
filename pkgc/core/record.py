"""`@record`: a frozen dataclass made with one compile instead of six, for the classes every command imports.

Why: `@dataclass(frozen=True)` compiles each generated method (__init__, __repr__, __eq__, __hash__, __setattr__,
__delattr__) on its own, about 0.5 ms a class on the machines here; the twenty classes a cache-hit install imports
cost 10 ms of its 0.16 s. `record` writes the same methods as one source and compiles it once (about 0.1 ms).

It covers what those classes use and refuses the rest rather than getting it wrong: fields from the class's own
annotations (no inheritance of fields), defaults and `dataclasses.field(default=...)` or
`field(default_factory=...)`, `__post_init__`, `order=True`, `frozen=False`. Instances behave as a frozen
dataclass's: keyword or positional arguments in field order, equal when of the same class with equal fields,
hashable when frozen, FrozenInstanceError on assignment; `dataclasses.fields`, `replace` and `asdict` work (the
class carries `__dataclass_fields__`). tests/unit/test_record.py compares it with dataclasses.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar, dataclass_transform, overload

_Class = TypeVar("_Class", bound=type)


@overload
def record(cls: _Class, /) -> _Class: ...


@overload
def record(*, frozen: bool = True, order: bool = False) -> Callable[[_Class], _Class]: ...


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field, dataclasses.Field))
def record(cls: Any = None, /, *, frozen: bool = True, order: bool = False) -> Any:
    """Make `cls` a dataclass as `@dataclass(frozen=frozen, order=order)` would, compiled in one piece."""

    def wrap(target: type) -> type:
        return _make(target, frozen=frozen, order=order)

    return wrap if cls is None else wrap(cls)


def _spelled(annotation: object) -> str:
    return annotation if isinstance(annotation, str) else repr(annotation)


def _is_class_var(annotation: object) -> bool:
    return _spelled(annotation).startswith(("ClassVar", "typing.ClassVar"))


def _make(cls: type, *, frozen: bool, order: bool) -> type:
    for base in cls.__mro__[1:]:
        if hasattr(base, "__dataclass_fields__"):
            raise TypeError(f"@record {cls.__name__}: fields inherited from {base.__name__} are not supported")
    annotations = cls.__dict__.get("__annotations__", {})  # noqa: RUF063  # the class's own, as dataclasses reads
    names = [name for name, annotation in annotations.items() if not _is_class_var(annotation)]
    for name in names:  # an init-only argument for __post_init__: a dataclass takes it, this would drop it
        if _spelled(annotations[name]).startswith(("InitVar", "dataclasses.InitVar")):
            raise TypeError(f"@record {cls.__name__}.{name}: InitVar is not supported")
    namespace: dict[str, Any] = {"_MISSING": dataclasses.MISSING, "_Frozen": dataclasses.FrozenInstanceError}
    parameters: list[str] = []
    body: list[str] = []
    fields: dict[str, dataclasses.Field[Any]] = {}
    seen_default = False
    for name in names:
        value = cls.__dict__.get(name, dataclasses.MISSING)
        spec = value if isinstance(value, dataclasses.Field) else dataclasses.field(default=value)
        if isinstance(value, dataclasses.Field):
            plain = spec.init and spec.repr and spec.compare and spec.hash is None
            if not plain or spec.kw_only not in (dataclasses.MISSING, False):
                raise TypeError(f"@record {cls.__name__}.{name}: only default= and default_factory= are supported")
            if spec.default is dataclasses.MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, spec.default)
        spec.name, spec.type = name, annotations[name]
        spec._field_type = dataclasses._FIELD  # type: ignore[attr-defined,union-attr]  # what dataclasses.fields() lists
        fields[name] = spec
        if spec.default_factory is not dataclasses.MISSING:
            namespace[f"_factory_{name}"] = spec.default_factory
            parameters.append(f"{name}=_MISSING")
            body.append(f"  if {name} is _MISSING: {name} = _factory_{name}()")
            seen_default = True
        elif spec.default is not dataclasses.MISSING:
            namespace[f"_default_{name}"] = spec.default
            parameters.append(f"{name}=_default_{name}")
            seen_default = True
        elif seen_default:
            raise TypeError(f"@record {cls.__name__}: non-default argument {name!r} follows default argument")
        else:
            parameters.append(name)
        body.append(f"  _set(self, {name!r}, {name})" if frozen else f"  self.{name} = {name}")
    if hasattr(cls, "__post_init__"):
        body.append("  self.__post_init__()")
    values = "(" + "".join(f"self.{name}, " for name in names) + ")"
    others = "(" + "".join(f"other.{name}, " for name in names) + ")"
    shown = ", ".join(f"{name}={{self.{name}!r}}" for name in names)
    source = [
        f"def __init__(self, {', '.join(parameters)}):",
        *(body or ["  pass"]),
        "def __repr__(self):",
        f"  return f'{{self.__class__.__qualname__}}({shown})'",
        "def __eq__(self, other):",
        f"  return {values} == {others} if other.__class__ is self.__class__ else NotImplemented",
    ]
    if frozen:
        source += [
            "def __hash__(self):",
            f"  return hash({values})",
            "def __setattr__(self, name, value):",
            "  raise _Frozen(f'cannot assign to field {name!r}')",
            "def __delattr__(self, name):",
            "  raise _Frozen(f'cannot delete field {name!r}')",
        ]
    if order:
        for method, operator in (("__lt__", "<"), ("__le__", "<="), ("__gt__", ">"), ("__ge__", ">=")):
            source += [
                f"def {method}(self, other):",
                f"  return {values} {operator} {others} if other.__class__ is self.__class__ else NotImplemented",
            ]
    namespace["_set"] = object.__setattr__
    exec("\n".join(source), namespace)  # one compile for every method: the point of this module
    methods = ["__init__", "__repr__", "__eq__"]
    methods += ["__hash__", "__setattr__", "__delattr__"] if frozen else []
    methods += ["__lt__", "__le__", "__gt__", "__ge__"] if order else []
    for method in methods:
        function = namespace[method]
        function.__qualname__ = f"{cls.__qualname__}.{method}"
        function.__module__ = cls.__module__
        setattr(cls, method, function)
    if not frozen:
        cls.__hash__ = None  # type: ignore[assignment]  # as dataclasses does: mutable and compared by value
    setattr(cls, "__match_args__", tuple(names))  # noqa: B010  # mypy refuses the plain assignment
    cls.__dataclass_fields__ = fields  # type: ignore[attr-defined]
    return cls
