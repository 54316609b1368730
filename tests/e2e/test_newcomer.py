"""End-to-end: what a newcomer met (issue 7), through the real CLI.

Help that reads like pip's and git's, `-q`/`-v` wherever a user puts them, settings shown with where they come from,
a catalog that syncs itself, and commands that answer from the local database without starting a farm.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from pkgc.cli import app
from tests.conftest import FarmEnv

pytestmark = pytest.mark.e2e


def run(argv: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)


# -- 13: flags look like flags, and are accepted after the command --------------------------------------------------


def test_help_shows_flags_as_flags(farm: FarmEnv) -> None:
    top = farm.pkgc("--help")
    assert top.returncode == 0, top.stderr
    assert "-v, --verbose" in top.stdout and "-q, --quiet" in top.stdout, top.stdout
    assert "<bool>" not in top.stdout, top.stdout
    # Every command's help, through the same click command tree the CLI runs.
    root = typer.main.get_command(app)
    runner = CliRunner()
    paths: list[list[str]] = []
    for name, command in root.commands.items():  # type: ignore[attr-defined]
        subcommands = getattr(command, "commands", None)
        paths += [[name, sub] for sub in subcommands] if subcommands else [[name]]
    assert len(paths) >= 20
    for path in paths:
        shown = runner.invoke(app, [*path, "--help"], prog_name="pkgc")
        assert shown.exit_code == 0, (path, shown.output)
        assert "<bool>" not in shown.output, (path, shown.output)
        assert "--help" in shown.output
    install = runner.invoke(app, ["install", "--help"], prog_name="pkgc").output
    assert "--wait / --background" in install and "--prefix <path>" in install, install


def test_quiet_and_verbose_anywhere_on_the_line(farm: FarmEnv, tmp_path: Path) -> None:
    prefix = ("--prefix", str(tmp_path / "p"))
    for argv in (("list", "-q", *prefix), ("list", *prefix, "--quiet"), ("-q", "list", *prefix)):
        listed = farm.pkgc(*argv)
        assert listed.returncode == 0, (argv, listed.stderr)
        assert "nothing installed" in listed.stdout and listed.stderr == ""
    for argv in (("install", "nosuch", "-v", *prefix), ("install", "nosuch", *prefix, "--verbose")):
        failed = farm.pkgc(*argv)
        assert failed.returncode == 3, (argv, failed.stderr)
        assert "Traceback (most recent call last)" in failed.stderr, (argv, failed.stderr)
    quiet_fail = farm.pkgc("remove", "nothing-here", *prefix, "-q")
    assert quiet_fail.returncode == 3 and quiet_fail.stderr.startswith("error: ")
    installed = farm.pkgc("install", "greet@1.0", *prefix, "-q")
    assert installed.returncode == 0, installed.stderr
    assert installed.stdout == "" and installed.stderr == ""
    # After `--`, a -v is an argument again, not a flag (a package name it is not: a usage error, not a traceback).
    literal = farm.pkgc("files", *prefix, "--", "-v")
    assert literal.returncode in (2, 3) and "Traceback" not in literal.stderr, literal.stderr
