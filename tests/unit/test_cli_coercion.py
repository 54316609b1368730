"""pkgc.cli converts plain parameter values itself (no pydantic import); the results and errors must be typer's."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from typer import core as typer_core
from typer._coercion import resolve_type_descriptor
from typer.models import ArgumentInfo, OptionInfo

import pkgc.cli  # noqa: F401  (installs the plain coercion)

PLAIN = typer_core.build_runtime_param
TYPER = PLAIN.typer_build  # type: ignore[attr-defined]


def _outcome(build: Any, annotation: Any, info: Any, value: Any) -> tuple[str, Any]:
    try:
        return "ok", build(resolve_type_descriptor(annotation, info))._coerce_value(value, param=None, ctx=None)
    except Exception as exc:  # the error itself is what is compared
        return type(exc).__name__, str(exc)


def test_the_plain_coercion_is_installed() -> None:
    assert getattr(PLAIN, "pkgc_plain", False)


@pytest.mark.parametrize(
    ("annotation", "info", "value"),
    [
        (bool, OptionInfo(), True),
        (bool, OptionInfo(), False),
        (bool, OptionInfo(), "yes"),  # not plain: typer's
        (str, ArgumentInfo(), "hello"),
        (str, ArgumentInfo(), ""),
        (list[str], OptionInfo(), ("opt=O2", "cpu=x86-64")),
        (list[str], ArgumentInfo(), ["hello", "zlib@1.3"]),
        (list[str], OptionInfo(), ()),
        (int, OptionInfo(min=1, max=100000), "50"),
        (int, OptionInfo(min=1, max=100000), 50),
        (int, OptionInfo(min=1, max=100000), "0"),
        (int, OptionInfo(min=1, max=100000), "100001"),
        (int, OptionInfo(min=1, max=100000), "-3"),
        (int, OptionInfo(min=1, max=100000), "05"),
        (int, OptionInfo(min=1, max=100000), " 7"),
        (int, OptionInfo(min=1, max=100000), "x"),
        (int, OptionInfo(), "123456789012345678901234567890"),
        (Path, OptionInfo(), "relative/prefix"),
        (Path, OptionInfo(), "/nonexistent/prefix"),
        (Path, OptionInfo(), "~/prefix"),
        (Path, OptionInfo(), "/"),
        (Path, OptionInfo(), ""),
        (Path, OptionInfo(), "a\0b"),
        (Path, OptionInfo(exists=True), "/nonexistent/prefix"),  # not plain: typer's
    ],
)
def test_plain_values_convert_as_typer_converts_them(annotation: Any, info: Any, value: Any) -> None:
    assert _outcome(PLAIN, annotation, info, value) == _outcome(TYPER, annotation, info, value)


def test_an_unreadable_path_gets_typers_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if str(path) == str(locked) else real_access(path, mode))
    outcome = _outcome(PLAIN, Path, OptionInfo(), str(locked))
    assert outcome == _outcome(TYPER, Path, OptionInfo(), str(locked))
    assert outcome[0] == "BadParameter"


@pytest.mark.parametrize(
    ("annotation", "info", "value"),
    [
        (bool, OptionInfo(), False),
        (str, ArgumentInfo(), "hello"),
        (list[str], OptionInfo(), ("opt=O2",)),
        (int, OptionInfo(min=1, max=100000), "50"),
        (int, OptionInfo(min=1, max=100000), 50),
        (Path, OptionInfo(), "/tmp"),
    ],
)
def test_the_parameters_pkgc_uses_are_converted_without_typers_adapters(annotation: Any, info: Any, value: Any) -> None:
    from pkgc.cli import _DELEGATE, _plain_converter

    convert = _plain_converter(resolve_type_descriptor(annotation, info))
    assert convert is not None
    assert convert(value) is not _DELEGATE
