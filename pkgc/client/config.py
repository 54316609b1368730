"""The config use cases: get, set, unset and edit keys of config.toml, each validated before anything is written."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import tomli_w

from pkgc.client.settings import read_document, validate_document, validator_for
from pkgc.core.errors import NotFound, UsageError

ALLOWED_KEYS = (
    "farm, token, prefix, install_mode, parallel_downloads, network_timeout, catalog_max_age, "
    "options.<opt|cpu|debug|lto>, packages.<name>.options.<option>, pins.<name>"
)


def _write(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(tomli_w.dumps(document), encoding="utf-8")
    os.replace(temporary, path)


def _lookup(document: dict[str, Any], key: str) -> Any:
    node: Any = document
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise NotFound(f"'{key}' is not set")
        node = node[part]
    return node


def get_value(path: Path, key: str) -> Any:
    return _lookup(read_document(path), key)


def set_value(path: Path, key: str, raw: str) -> Any:
    check = validator_for(key)
    if check is None:
        raise UsageError(f"{path}: unknown key '{key}'", hint=f"keys: {ALLOWED_KEYS}")
    try:
        value = check(raw)
    except ValueError as exc:
        raise UsageError(f"{path}: key '{key}' has a bad value {raw!r}", hint=f"allowed: {exc}") from None
    document = read_document(path)
    validate_document(document, path)  # refuse to build on a file that is already invalid
    node = document
    *parents, last = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise UsageError(f"{path}: '{part}' is a value, not a table")
    node[last] = value
    _write(path, document)
    return value


def unset_value(path: Path, key: str) -> None:
    document = read_document(path)
    _lookup(document, key)
    node = document
    *parents, last = key.split(".")
    trail = []
    for part in parents:
        trail.append((node, part))
        node = node[part]
    del node[last]
    for parent, part in reversed(trail):  # drop tables the removal left empty
        if parent[part] == {}:
            del parent[part]
    _write(path, document)


def edit(path: Path, editor: str) -> list[str]:
    """Open a copy in the user's editor; save it only if it is valid TOML with valid values. Returns warnings."""
    argv = shlex.split(editor)
    if not argv or shutil.which(argv[0]) is None:
        raise UsageError(f"editor {editor!r} not found", hint="set EDITOR or VISUAL")
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / "config.toml"
        if path.is_file():
            shutil.copyfile(path, copy)
        else:
            copy.write_text("", encoding="utf-8")
        if subprocess.run([*argv, str(copy)], check=False).returncode != 0:
            raise UsageError("the editor exited with an error; config.toml was not changed")
        document = read_document(copy)
        _values, warnings = validate_document(document, path)
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(copy, path.with_name(path.name + ".tmp"))
        os.replace(path.with_name(path.name + ".tmp"), path)
    return warnings
