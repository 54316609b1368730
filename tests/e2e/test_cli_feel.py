"""End-to-end: what the CLI feels like. Colour and animation only on a terminal without NO_COLOR, one-line errors
(a traceback only with --verbose), --quiet, --version and shell completion, through the real CLI."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

import pkgc
from tests.conftest import FarmEnv

pytestmark = pytest.mark.e2e

ESCAPE = "\x1b["
COLOUR = re.compile(r"\x1b\[[0-9;]*m")
CURSOR = re.compile(r"\x1b\[\?25[lh]|\x1b\[[0-9]*[AK]")  # hide/show the cursor, move up, erase: a live display


def on_terminal(env: dict[str, str], *args: str, timeout: float = 300) -> tuple[int, str]:
    """Run pkgc with stdout and stderr on a pseudo-terminal, the way a user at a shell runs it."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "pkgc", *args],
        env={**env, "TERM": "xterm-256color", "COLUMNS": "120"},
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        close_fds=True,
    )
    os.close(follower)
    output = bytearray()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the last writer closed the terminal
                break
            if not chunk:
                break
            output += chunk
        elif process.poll() is not None:
            break
    os.close(leader)
    code = process.wait(timeout=30)
    return code, output.decode(errors="replace")


def test_a_terminal_gets_colour_and_a_live_table(farm: FarmEnv, tmp_path: Path) -> None:
    env = {k: v for k, v in farm.env.items() if k != "NO_COLOR"}
    # Options of its own: a build that is not ready yet (builds ready from the start are not shown).
    fresh = ("--opt", "opt=O1", "--opt", "debug=true")
    code, output = on_terminal(env, "install", "greet@1.0", *fresh, "--prefix", str(tmp_path / "tty"))
    assert code == 0, output
    assert CURSOR.search(output), "a live display redraws in place on a terminal"
    code, output = on_terminal(env, "install", "../escape", "--prefix", str(tmp_path / "tty"))
    assert code == 2 and COLOUR.search(output), "errors are coloured on a terminal"
    assert output.startswith("\x1b[1;31merror:"), "nothing is drawn before an early error"


def test_no_color_on_a_terminal_means_plain_lines(farm: FarmEnv, tmp_path: Path) -> None:
    env = {**farm.env, "NO_COLOR": "1"}
    code, output = on_terminal(env, "install", "greet@1.0", "--prefix", str(tmp_path / "plain"))
    assert code == 0, output
    assert ESCAPE not in output, output
    assert "greet 1.0: installed" in output


def test_a_pipe_gets_no_escape_codes(farm: FarmEnv, tmp_path: Path) -> None:
    env = {k: v for k, v in farm.env.items() if k != "NO_COLOR"}
    result = subprocess.run(
        farm.pkgc_argv("install", "greet@1.0", "--prefix", str(tmp_path / "pipe")), env=env, capture_output=True
    )
    assert result.returncode == 0
    assert b"\x1b" not in result.stdout + result.stderr


def test_errors_are_one_line_and_verbose_adds_the_traceback(farm: FarmEnv, tmp_path: Path) -> None:
    plain = farm.pkgc("install", "../escape", "--prefix", str(tmp_path / "p"))
    assert plain.returncode == 2
    assert plain.stderr.count("\n") == 1 and plain.stderr.startswith("error: ")
    assert "Traceback" not in plain.stderr
    verbose = farm.pkgc("--verbose", "install", "../escape", "--prefix", str(tmp_path / "p"))
    assert verbose.returncode == 2
    assert "Traceback (most recent call last)" in verbose.stderr
    assert verbose.stderr.strip().splitlines()[-1] == plain.stderr.strip()


def test_quiet_prints_only_results_and_errors(farm: FarmEnv, tmp_path: Path) -> None:
    prefix = str(tmp_path / "quiet")
    installed = farm.pkgc("--quiet", "install", "greet@1.0", "--prefix", prefix)
    assert installed.returncode == 0
    assert installed.stdout == "" and installed.stderr == ""
    listed = farm.pkgc("--quiet", "list", "--prefix", prefix)
    assert listed.returncode == 0 and "greet" in listed.stdout
    failed = farm.pkgc("--quiet", "remove", "nothing-here", "--prefix", prefix)
    assert failed.returncode == 3 and failed.stderr.startswith("error: ")


def test_usage_errors_are_one_line_with_exit_2(farm: FarmEnv) -> None:
    for argv, message in [
        (("install", "--bogus"), "error: No such option: --bogus (see 'pkgc install --help')"),
        (("frobnicate",), "error: No such command 'frobnicate'. (see 'pkgc --help')"),
        (("install",), "error: Missing argument 'packages'. (see 'pkgc install --help')"),
    ]:
        result = farm.pkgc(*argv)
        assert (result.returncode, result.stderr.strip()) == (2, message)
    bare = farm.pkgc()
    assert bare.returncode == 0 and "Usage: pkgc" in bare.stdout


def test_version(farm: FarmEnv) -> None:
    result = farm.pkgc("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"pkgc {pkgc.__version__}"


def test_shell_completion_completes_commands_and_options(farm: FarmEnv) -> None:
    def complete(words: str) -> list[str]:
        """What bash's completion function asks pkgc for when the user presses Tab after `words`."""
        position = str(len(words.split()) - 1)
        env = {**farm.env, "_PKGC_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": position}
        result = subprocess.run(farm.pkgc_argv(), env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout.split()

    assert complete("pkgc inst") == ["install"]
    assert complete("pkgc down") == ["downgrade"]
    assert complete("pkgc install --pr") == ["--prefix"]
    script = farm.pkgc("--show-completion", "bash")
    assert script.returncode == 0 and "_PKGC_COMPLETE" in script.stdout


def test_the_other_commands_report_errors_in_one_line(farm: FarmEnv, tmp_path: Path) -> None:
    empty = ("--prefix", str(tmp_path / "empty"))
    offline = {
        **farm.env,
        "PKGC_FARM": "http://127.0.0.1:9",
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_DATA_HOME": str(tmp_path / "data"),  # no catalog copy to answer `outdated` from
    }
    nowhere = {**farm.env, "PKGC_FARM_HOME": str(tmp_path / "no-farm")}
    cases: list[tuple[tuple[str, ...], dict[str, str], int, str]] = [
        (("pin", "greet", *empty), farm.env, 3, "greet is not installed"),
        (("pin", "greet", "0..1"), offline, 2, "key 'pins.greet' has a bad value '0..1'"),
        (("unpin", "../x"), offline, 2, "invalid package name"),
        (("search", " "), farm.env, 2, "give a search term"),
        (("update",), offline, 4, "cannot reach the farm at http://127.0.0.1:9"),
        (("outdated", "--prefix", str(tmp_path / "has-greet")), offline, 4, "cannot reach the farm"),
        (("verify", "greet", *empty), farm.env, 3, "greet is not installed"),
        (("config", "get", "pins.greet"), offline, 3, "'pins.greet' is not set"),
        (("info", "../x"), farm.env, 2, "invalid package name '../x'"),
        (("farm", "status"), nowhere, 4, "embedded farm is not running"),
    ]
    farm.pkgc("install", "greet@1.0", "--prefix", str(tmp_path / "has-greet"), check=True)
    for argv, env, code, message in cases:
        result = subprocess.run(farm.pkgc_argv(*argv), env=env, capture_output=True, text=True, timeout=120)
        report = result.stderr.strip() or result.stdout.strip()
        assert result.returncode == code, (argv, result.stderr)
        assert message in report and "\n" not in report and "Traceback" not in report, (argv, report)
    assert not (tmp_path / "config" / "pkgc" / "config.toml").exists(), "a refused pin writes nothing"
