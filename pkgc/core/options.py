"""Build options: a declared schema, validation with helpful errors, and one canonical form.

Users never pass compiler flags. They choose from global options (optimisation, CPU target, debug symbols, LTO)
and from the variants each recipe declares. Free-form flags are refused on purpose: some of them run code
(`-fplugin=`, `-specs=`, `-wrapper`, `@file`). Normalising (defaults filled, keys sorted, values spelled one way)
means that equal requests give equal build keys, however the user wrote them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import field

from pkgc.core.errors import UsageError
from pkgc.core.record import record

OPT_LEVELS = ("O0", "O1", "O2", "O3", "Os")
CPU_TARGETS: dict[str, tuple[str, ...]] = {
    "x86_64": ("x86-64", "x86-64-v2", "x86-64-v3", "x86-64-v4"),
    "aarch64": ("armv8-a", "armv8.2-a", "armv8.4-a", "armv9-a"),
}
# An option value as the core spells them (O2, x86-64-v2, armv8.2-a, true, shared): no spaces, no control characters,
# no path separators. Recipes are held to it when they are read, and farm answers when they are received.
OPTION_VALUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+_-]*")
MAX_OPTION_VALUE_LENGTH = 64
MAX_OPTION_VALUES = 64


def is_valid_option_value(value: str) -> bool:
    return len(value) <= MAX_OPTION_VALUE_LENGTH and OPTION_VALUE.fullmatch(value) is not None


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}

OptionValue = str | bool


@record
class OptionSpec:
    """One option a user may set: a boolean, or a choice among fixed values."""

    name: str
    default: OptionValue
    values: tuple[str, ...] = ()
    description: str = ""
    # Extra build arguments per canonical value ("true"/"false" for booleans); empty for global options.
    args: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def is_bool(self) -> bool:
        return isinstance(self.default, bool)

    def allowed(self) -> str:
        return "true or false" if self.is_bool else ", ".join(self.values)

    def canonical(self, value: OptionValue) -> str:
        """Spell a value the one canonical way, or raise an error naming the option and what is allowed."""
        if self.is_bool:
            if isinstance(value, bool):
                return "true" if value else "false"
            lowered = str(value).strip().lower()
            if lowered in _TRUE:
                return "true"
            if lowered in _FALSE:
                return "false"
        elif isinstance(value, str) and value in self.values:
            return value
        raise UsageError(f"invalid value {value!r} for option '{self.name}'", hint=f"allowed: {self.allowed()}")


def global_option_specs(arch: str) -> dict[str, OptionSpec]:
    """The options every package accepts; the CPU targets depend on the architecture being built for."""
    cpus = CPU_TARGETS.get(arch)
    if cpus is None:
        raise UsageError(f"unsupported architecture {arch!r}", hint=f"supported: {', '.join(CPU_TARGETS)}")
    return {
        "opt": OptionSpec("opt", "O2", OPT_LEVELS, "optimisation level"),
        "cpu": OptionSpec("cpu", cpus[0], cpus, "CPU target (-march)"),
        "debug": OptionSpec("debug", False, description="keep debug symbols (-g)"),
        "lto": OptionSpec("lto", False, description="link-time optimisation"),
    }


GLOBAL_OPTION_NAMES = frozenset({"opt", "cpu", "debug", "lto"})


@record
class NormalisedOptions:
    """Every option of a package with a canonical value, in name order: the form that is hashed."""

    items: tuple[tuple[str, str], ...]

    def as_dict(self) -> dict[str, str]:
        return dict(self.items)

    def get(self, name: str) -> str:
        return dict(self.items)[name]

    def globals_only(self) -> dict[str, str]:
        return {k: v for k, v in self.items if k in GLOBAL_OPTION_NAMES}


def normalise_options(
    requested: Mapping[str, OptionValue], variants: Mapping[str, OptionSpec], arch: str, *, package: str
) -> NormalisedOptions:
    """Validate `requested` against the global options and the recipe's variants, fill defaults, sort."""
    schema = {**global_option_specs(arch), **variants}
    unknown = sorted(set(requested) - set(schema))
    if unknown:
        raise UsageError(
            f"unknown option '{unknown[0]}' for {package}",
            hint=f"allowed options: {', '.join(sorted(schema))}",
        )
    values = {
        name: spec.canonical(requested[name]) if name in requested else spec.canonical(spec.default)
        for name, spec in schema.items()
    }
    return NormalisedOptions(tuple(sorted(values.items())))


def parse_option_assignments(assignments: list[str]) -> dict[str, str]:
    """Turn `KEY=VALUE` strings from the command line into a mapping; a repeated key is an error."""
    parsed: dict[str, str] = {}
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"option {assignment!r} is not KEY=VALUE", hint="for example --opt opt=O3")
        if key in parsed:
            raise UsageError(f"option '{key}' given twice")
        parsed[key] = value.strip()
    return parsed


def compiler_flags(options: NormalisedOptions) -> dict[str, str]:
    """CFLAGS, CXXFLAGS and LDFLAGS that the global options stand for; the only place options become flags."""
    flags = [f"-{options.get('opt')}", f"-march={options.get('cpu')}"]
    if options.get("debug") == "true":
        flags.append("-g")
    if options.get("lto") == "true":
        flags.append("-flto=auto")
    common = " ".join(flags)
    ldflags = "-flto=auto" if options.get("lto") == "true" else ""
    return {"CFLAGS": common, "CXXFLAGS": common, "LDFLAGS": ldflags}
