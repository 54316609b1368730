"""Package names: the one rule that keeps names safe as file names, URL segments and database keys."""

from __future__ import annotations

import re

from pkgc.core.errors import UsageError

# Lower-case, starts with a letter or digit, no path separators and no "..": a name is used verbatim in paths.
_NAME = re.compile(r"^[a-z0-9][a-z0-9+_-]*(?:\.[a-z0-9+_-]+)*$")
MAX_NAME_LENGTH = 64


def validate_name(name: str) -> str:
    """Return the name unchanged if it is a legal package name, else raise a UsageError saying why."""
    if not name:
        raise UsageError("package name is empty")
    if len(name) > MAX_NAME_LENGTH:
        raise UsageError(f"package name is longer than {MAX_NAME_LENGTH} characters")
    if not _NAME.fullmatch(name):
        hint = "use lower-case letters, digits and + _ - . (no '/', no '..')"
        if _NAME.fullmatch(name.lower()):
            hint = f"did you mean '{name.lower()}'? names are lower-case"
        raise UsageError(f"invalid package name {name!r}", hint=hint)
    return name


def parse_spec(spec: str) -> tuple[str, str | None]:
    """Split `NAME[@VERSION]` as typed on the command line."""
    name, sep, version = spec.partition("@")
    validate_name(name)
    if sep and not version:
        raise UsageError(f"empty version in {spec!r}", hint="write NAME or NAME@VERSION")
    return name, (version or None)
