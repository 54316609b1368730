"""`@record`: a frozen dataclass that costs a command almost nothing to define, for the classes every command imports.

Why: `@dataclass(frozen=True)` compiles each generated method (__init__, __repr__, __eq__, __hash__, __setattr__,
__delattr__) on its own, about 0.5 ms a class on the machines here; the twenty classes a cache-hit install imports
cost 10 ms of its 0.15 s, most of them for methods the command never calls. `record` compiles nothing when the class
is made: __init__ (the one method whose speed matters, since some classes are made thousands of times) is compiled
when the first instance is made, and only for the classes a command uses; the other methods are small functions
over the fields, shared in shape by every record (about 0.02 ms a class in all).

It covers what those classes use and refuses the rest rather than getting it wrong: fields from the class's own
annotations (no inheritance of fields), defaults and `dataclasses.field(default=...)` or
`field(default_factory=...)`, `__post_init__`, `order=True`, `frozen=False`. Instances behave as a frozen
dataclass's: keyword or positional arguments in field order, equal when of the same class with equal fields,
hashable when frozen, FrozenInstanceError on assignment; `dataclasses.fields`, `replace` and `asdict` work (the
class carries `__dataclass_fields__`). A method the class defines itself (__repr__, __eq__, __hash__) is kept, as a
dataclass keeps it. tests/unit/test_record.py compares it with dataclasses.
"""

from __future__ import annotations

import dataclasses
import operator
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


# The methods every record shares in shape, made per class over a function that reads its fields as a tuple.
# Closures, not generated source: making them costs no compile.
def _values_of(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    if len(names) > 1:
        return operator.attrgetter(*names)  # a tuple, read in C
    if names:
        single = operator.attrgetter(names[0])
        return lambda self: (single(self),)
    return lambda self: ()


def _repr_of(names: tuple[str, ...]) -> Callable[[Any], str]:
    def __repr__(self: Any) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in names)
        return f"{self.__class__.__qualname__}({shown})"

    return __repr__


def _eq_of(values: Callable[[Any], tuple[Any, ...]]) -> Callable[[Any, Any], Any]:
    def __eq__(self: Any, other: Any) -> Any:
        return values(self) == values(other) if other.__class__ is self.__class__ else NotImplemented

    return __eq__


def _hash_of(values: Callable[[Any], tuple[Any, ...]]) -> Callable[[Any], int]:
    def __hash__(self: Any) -> int:
        return hash(values(self))

    return __hash__


def _compare_of(values: Callable[[Any], tuple[Any, ...]], compare: Callable[[Any, Any], Any]) -> Callable[..., Any]:
    def method(self: Any, other: Any) -> Any:
        return compare(values(self), values(other)) if other.__class__ is self.__class__ else NotImplemented

    return method


def frozen_setattr(self: Any, name: str, value: Any) -> None:
    """Every frozen record's __setattr__, and that of a class that writes its own __init__ but is as immutable."""
    raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")


def frozen_delattr(self: Any, name: str) -> None:
    """Every frozen record's __delattr__ (see frozen_setattr)."""
    raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")


def _compiled_on_first_use(cls: type, source: str, namespace: dict[str, Any]) -> Callable[..., None]:
    """An __init__ that compiles the class's real one the first time an instance is made, and puts it in its place."""

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if cls.__dict__.get("__init__") is __init__:
            exec(source, namespace)  # two threads may both compile it: the same function either way
            real = namespace["__init__"]
            real.__qualname__ = f"{cls.__qualname__}.__init__"
            real.__module__ = cls.__module__
            cls.__init__ = real  # type: ignore[misc]
        cls.__init__(self, *args, **kwargs)  # type: ignore[misc]

    return __init__


_ORDER = (("__lt__", operator.lt), ("__le__", operator.le), ("__gt__", operator.gt), ("__ge__", operator.ge))


def _make(cls: type, *, frozen: bool, order: bool) -> type:
    for base in cls.__mro__[1:]:
        if hasattr(base, "__dataclass_fields__"):
            raise TypeError(f"@record {cls.__name__}: fields inherited from {base.__name__} are not supported")
    own = cls.__dict__
    if "__slots__" in own:  # no __dict__ for the fields to go into
        raise TypeError(f"@record {cls.__name__}: __slots__ is not supported")
    if "__init__" in own:
        raise TypeError(f"@record {cls.__name__}: an __init__ of its own is not supported (use __post_init__)")
    for method in (["__setattr__", "__delattr__"] if frozen else []) + ([m for m, _ in _ORDER] if order else []):
        if method in own:  # as dataclasses refuses them
            raise TypeError(f"@record {cls.__name__}: cannot combine {method} with {'order' if order else 'frozen'}")
    annotations = own.get("__annotations__", {})  # the class's own, as dataclasses reads
    names = [name for name, annotation in annotations.items() if not _is_class_var(annotation)]
    for name in names:  # an init-only argument for __post_init__: a dataclass takes it, this would drop it
        if _spelled(annotations[name]).startswith(("InitVar", "dataclasses.InitVar")):
            raise TypeError(f"@record {cls.__name__}.{name}: InitVar is not supported")
    namespace: dict[str, Any] = {"__MISSING": dataclasses.MISSING}
    parameters: list[str] = []
    body: list[str] = []
    fields: dict[str, dataclasses.Field[Any]] = {}
    seen_default = False
    for name in names:
        value = own.get(name, dataclasses.MISSING)
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
            namespace[f"__factory_{name}"] = spec.default_factory
            parameters.append(f"{name}=__MISSING")
            body.append(f"  if {name} is __MISSING: {name} = __factory_{name}()")
            seen_default = True
        elif spec.default is not dataclasses.MISSING:
            namespace[f"__default_{name}"] = spec.default
            parameters.append(f"{name}=__default_{name}")
            seen_default = True
        elif seen_default:
            raise TypeError(f"@record {cls.__name__}: non-default argument {name!r} follows default argument")
        else:
            parameters.append(name)
        # A frozen record's fields go straight into the instance's __dict__ (its __setattr__ refuses them): half the
        # time of a call to object.__setattr__ per field, for classes made thousands of times.
        body.append(f"  __fields[{name!r}] = {name}" if frozen else f"  self.{name} = {name}")
    if hasattr(cls, "__post_init__"):
        body.append("  self.__post_init__()")
    # The generated code's own names start with two underscores, which no field's can: a class body turns
    # `__fields` into `_Class__fields`.
    first = ["  __fields = self.__dict__"] if frozen and names else []
    source = "\n".join([f"def __init__(self, {', '.join(parameters)}):", *first, *(body or ["  pass"])])
    values = _values_of(tuple(names))
    methods: dict[str, Callable[..., Any]] = {
        "__init__": _compiled_on_first_use(cls, source, namespace),
        "__repr__": _repr_of(tuple(names)),
        "__eq__": _eq_of(values),
    }
    # A class that defines __eq__ gets __hash__ = None in its namespace; only a __hash__ it wrote itself counts.
    explicit_hash = "__hash__" in own and not (own["__hash__"] is None and "__eq__" in own)
    if frozen and not explicit_hash:
        methods["__hash__"] = _hash_of(values)
    if order:
        methods.update((method, _compare_of(values, compare)) for method, compare in _ORDER)
    for method, function in methods.items():  # each made for this class: named as its own
        if method in ("__repr__", "__eq__") and method in own:  # the class's own, as a dataclass keeps it
            continue
        function.__name__, function.__qualname__ = method, f"{cls.__qualname__}.{method}"
        function.__module__ = cls.__module__
        setattr(cls, method, function)
    if frozen:  # shared by every frozen record
        cls.__setattr__, cls.__delattr__ = frozen_setattr, frozen_delattr  # type: ignore[assignment,method-assign]
    if not frozen and not explicit_hash:
        cls.__hash__ = None  # type: ignore[assignment]  # as dataclasses does: mutable and compared by value
    setattr(cls, "__match_args__", tuple(names))  # noqa: B010  # mypy refuses the plain assignment
    cls.__dataclass_fields__ = fields  # type: ignore[attr-defined]
    return cls
