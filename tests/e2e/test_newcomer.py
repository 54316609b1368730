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


# -- 15: commands that need no farm do not start one -----------------------------------------------------------------


def farm_processes(home: Path) -> list[int]:
    """Live processes whose command line names this farm home (the farm's API process and its workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(home).encode() in argv:
            found.append(int(entry.name))
    return found


def test_local_commands_start_no_farm(farm: FarmEnv, tmp_path: Path) -> None:
    has_greet = tmp_path / "has-greet"
    farm.pkgc("install", "greet@1.0", "--prefix", str(has_greet), check=True)
    home = tmp_path / "no-farm"
    env = {
        **farm.env,
        "PKGC_FARM_HOME": str(home),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "PKGC_PREFIX": str(tmp_path / "empty"),
    }
    greet_binary = str(has_greet / "bin" / "greet")
    cases: list[tuple[tuple[str, ...], int]] = [
        (("list",), 0),
        (("list", "--prefix", str(has_greet)), 0),
        (("files", "greet", "--prefix", str(has_greet)), 0),
        (("owner", greet_binary, "--prefix", str(has_greet)), 0),
        (("verify", "--prefix", str(has_greet)), 0),
        (("history", "--prefix", str(has_greet)), 0),
        (("config", "show"), 0),
        (("config", "path"), 0),
        (("pending",), 0),
        (("pending", "--install"), 0),
        (("upgrade", "--all"), 0),
        (("upgrade", "nosuch"), 3),
        (("outdated",), 0),
        (("downgrade", "no-such-package"), 3),
        (("downgrade", "greet", "0.1"), 3),
        (("rollback",), 2),
        (("pin", "no-such-package"), 3),
        (("unpin", "no-such-package"), 3),
        (("remove", "no-such-package"), 3),
        (("remove", "greet", "--prefix", str(has_greet)), 0),
        (("farm", "status"), 4),
    ]
    try:
        for argv, code in cases:
            result = run(farm.pkgc_argv(*argv), env)
            assert result.returncode == code, (argv, result.stdout, result.stderr)
            assert "Traceback" not in result.stderr, (argv, result.stderr)
            assert not (home / "state.json").exists(), f"pkgc {' '.join(argv)} started the embedded farm"
            assert farm_processes(home) == [], f"pkgc {' '.join(argv)} left farm processes"
    finally:
        run(farm.pkgc_argv("farm", "stop"), env, timeout=120)
