"""main() imports only the command it runs; whatever needs the whole command list still gets all of it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pkgc.cli import _COMMANDS, _GROUPS, _commands_for


@pytest.mark.parametrize(
    ("args", "only"),
    [
        (["install", "hello"], "install"),
        (["-q", "list", "--json"], "list"),
        (["farm", "status"], "farm"),
        (["list", "--help"], "list"),
        (["--help", "install"], None),  # the root's help lists every command
        ([], None),
        (["instal"], None),  # a mistyped name: click's message needs the real names
        (["--", "list"], None),
    ],
)
def test_the_command_that_runs_is_the_only_one_imported(args: list[str], only: str | None) -> None:
    assert _commands_for(args) == only


def test_shell_completion_gets_every_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("_PKGC_COMPLETE", "complete_bash")
    assert _commands_for(["install"]) is None


@pytest.mark.parametrize("args", [["--help"], ["--help", "install"], []])
def test_the_root_help_lists_every_command(args: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_COMPLETE")}
    result = subprocess.run(
        [sys.executable, "-m", "pkgc", *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    listed = {line.split()[0] for line in result.stdout.split("Commands:")[1].splitlines() if line.strip()}
    assert listed == {*_COMMANDS, *_GROUPS}
