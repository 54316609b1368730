"""Output that is not a terminal skips rich (about 30 ms to import) and must still print what rich would print."""

from __future__ import annotations

import io
import sys

import pytest
from rich.console import Console

from pkgc.cli import PlainConsole, console

LINES = [
    "hello 2.10: installed",
    "prefix: /tmp/x/prefix (0.3s)",
    "embedded farm running at http://127.0.0.1:44739, pid 11449, workers 2",
    "hello@2.10: still compiling on the farm",
    "run 'pkgc pending' to follow the builds and 'pkgc pending --install' to finish",
    "skipped recipe bad.toml: [packages.x] is not a table",  # markup-like: rich with markup=False keeps it
    "a :smile: here",  # an emoji code: rich replaces it
    "tab\there",  # rich expands tabs
    "bell\x07 and escape \x1b[31m",  # rich drops control characters
    "12:30:45 [bold]x[/bold]",
    "ünïcödé ✓",
    "",
]


def _rich(text: str, markup: bool | None) -> str:
    out = io.StringIO()
    Console(file=out, highlight=False, soft_wrap=True, force_terminal=False).print(text, markup=markup)
    return out.getvalue()


@pytest.mark.parametrize("text", LINES)
@pytest.mark.parametrize("markup", [None, False])
def test_plain_output_is_what_rich_prints_on_a_pipe(
    text: str, markup: bool | None, capsys: pytest.CaptureFixture[str]
) -> None:
    PlainConsole(stderr=False, quiet=False).print(text, markup=markup)
    assert capsys.readouterr().out == _rich(text, markup)


def test_quiet_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    PlainConsole(stderr=True, quiet=True).print("hello 2.10: installed")
    assert capsys.readouterr() == ("", "")


def test_a_pipe_gets_the_plain_console_unless_rich_would_see_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "JUPYTER_COLUMNS", "JUPYTER_LINES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert isinstance(console(), PlainConsole)
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich would treat the pipe as a terminal: let it
    assert isinstance(console(), Console)
