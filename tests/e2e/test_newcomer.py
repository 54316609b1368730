"""End-to-end: what a newcomer met (issue 7), through the real CLI.

Help that reads like pip's and git's, `-q`/`-v` wherever a user puts them, settings shown with where they come from,
a catalog that syncs itself, and commands that answer from the local database without starting a farm.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from pkgc.cli import app
from tests.conftest import FarmEnv, processes_with_arguments

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
    assert "--opt KEY=VALUE" in install and "list[str]>  Build option" not in install, install


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
    return processes_with_arguments(str(home).encode())


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
        (("search", " "), 2),
        (("info", "../x"), 2),
        (("install", "../escape"), 2),
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


# -- 11: search, info and outdated sync the catalog themselves, and work offline from the last copy -----------------


def test_search_info_outdated_sync_the_catalog_themselves(farm: FarmEnv, tmp_path: Path) -> None:
    trace = tmp_path / "requests.log"
    env = {
        **farm.env,
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "PKGC_TRACE_HTTP": str(trace),
    }
    offline = {**env, "PKGC_FARM": "http://127.0.0.1:9"}
    catalog = tmp_path / "data" / "pkgc" / "catalog.sqlite"
    prefix = ("--prefix", str(tmp_path / "p"))

    def catalog_requests() -> int:
        return trace.read_text().splitlines().count("GET /v1/catalog") if trace.exists() else 0

    def meta() -> dict[str, str]:
        with sqlite3.connect(catalog) as connection:
            return dict(connection.execute("SELECT key, value FROM meta"))

    assert run(farm.pkgc_argv("install", "greet@1.0", *prefix), env).returncode == 0
    found = run(farm.pkgc_argv("search", "greet", "--json"), env)
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)[0]["name"] == "greet"
    assert catalog_requests() == 1
    first = meta()

    # Younger than catalog_max_age (default one hour): no request at all.
    assert run(farm.pkgc_argv("search", "gzip"), env).returncode == 0
    assert catalog_requests() == 1

    # Older: one conditional request; the farm's 304 keeps the copy (a marked row stays) and refreshes the time.
    with sqlite3.connect(catalog) as connection:
        connection.execute("UPDATE meta SET value = ? WHERE key = 'synced_at'", (str(time.time() - 7200),))
        connection.execute("UPDATE packages SET summary = 'marked' WHERE name = 'greet'")
    marked = run(farm.pkgc_argv("search", "greet", "--json"), env)
    assert json.loads(marked.stdout)[0]["summary"] == "marked", "a 304 does not download the catalog again"
    assert catalog_requests() == 2
    second = meta()
    assert second["etag"] == first["etag"] and float(second["synced_at"]) > time.time() - 600

    # A smaller configured age: the copy is out of date again after a second.
    assert run(farm.pkgc_argv("config", "set", "catalog_max_age", "1"), env).returncode == 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and time.time() - float(meta()["synced_at"]) <= 1:
        time.sleep(0.2)
    outdated = run(farm.pkgc_argv("outdated", "--json", *prefix), env)
    assert outdated.returncode == 0, outdated.stderr
    assert json.loads(outdated.stdout) == [{"name": "greet", "installed": "1.0", "newest": "2.0", "pinned": None}]
    assert catalog_requests() == 3
    for value in ("99999999", "soon", "1.5"):
        bad = run(farm.pkgc_argv("config", "set", "catalog_max_age", value), env)
        assert bad.returncode == 2 and "'catalog_max_age'" in bad.stderr and "0 (sync every time)" in bad.stderr

    # The farm cannot be reached: the last copy answers, with a one-line warning that it may be stale.
    for argv in (("search", "greet"), ("outdated", *prefix), ("info", "greet", *prefix)):
        result = run(farm.pkgc_argv(*argv), offline)
        assert result.returncode == 0, (argv, result.stderr)
        assert "greet" in result.stdout, (argv, result.stdout)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("warning: ") and "stale" in lines[0], (argv, result.stderr)
    offline_info = json.loads(run(farm.pkgc_argv("info", "greet", "--json", *prefix), offline).stdout)
    assert offline_info["latest"] == "2.0" and offline_info["installed"]["version"] == "1.0"

    # No copy and no farm: the one-line error.
    nothing = {**offline, "XDG_DATA_HOME": str(tmp_path / "empty-data")}
    for argv in (("search", "greet"), ("info", "greet")):
        result = run(farm.pkgc_argv(*argv), nothing)
        assert result.returncode == 4, (argv, result.stderr)
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "empty-data" / "pkgc" / "catalog.sqlite").exists()


# -- 12: the settings in effect, with where each comes from ---------------------------------------------------------


def test_config_show_and_get_give_effective_values_and_origins(farm: FarmEnv, tmp_path: Path) -> None:
    env = {**farm.env, "XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_DATA_HOME": str(tmp_path / "data")}
    config = tmp_path / "config" / "pkgc" / "config.toml"
    default_prefix = str(tmp_path / "data" / "pkgc" / "prefix")

    def pkgc(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return run(farm.pkgc_argv(*args), {**env, **extra})

    # A fresh user: every key, with its default.
    fresh = json.loads(pkgc("config", "show", "--json").stdout)
    assert fresh["prefix"] == {"value": default_prefix, "origin": "default", "where": "XDG_DATA_HOME"}
    assert fresh["farm"]["value"] == "embedded" and fresh["farm"]["origin"] == "default"
    for key in ("token", "install_mode", "parallel_downloads", "network_timeout", "catalog_max_age"):
        assert fresh[key]["origin"] == "default", key
    assert fresh["paths.farm_home"] == {
        "value": env["PKGC_FARM_HOME"],
        "origin": "environment",
        "where": "PKGC_FARM_HOME",
    }
    assert fresh["paths.config_file"]["value"] == str(config)
    text = pkgc("config", "show")
    assert text.returncode == 0 and f'prefix = "{default_prefix}"' in text.stdout and "(default" in text.stdout
    got = pkgc("config", "get", "prefix")
    assert (got.returncode, got.stdout.strip()) == (0, default_prefix)
    assert pkgc("config", "get", "parallel_downloads").stdout.strip() == "4"
    assert pkgc("config", "get", "prefix", "--origin").stdout.strip() == f"default\t{default_prefix}"

    # The file, then the environment, then the command line.
    assert pkgc("config", "set", "parallel_downloads", "8").returncode == 0
    assert pkgc("config", "set", "prefix", str(tmp_path / "from-file")).returncode == 0
    assert pkgc("config", "get", "prefix", "--origin").stdout.strip() == f"file:{config}\t{tmp_path / 'from-file'}"
    shown = json.loads(pkgc("config", "show", "--json", PKGC_PREFIX=str(tmp_path / "from-env")).stdout)
    assert shown["prefix"] == {"value": str(tmp_path / "from-env"), "origin": "environment", "where": "PKGC_PREFIX"}
    assert shown["parallel_downloads"] == {"value": 8, "origin": "file", "where": str(config)}
    timeout = pkgc("config", "get", "network_timeout", "--origin", PKGC_NETWORK_TIMEOUT="5")
    assert timeout.stdout.strip() == "env:PKGC_NETWORK_TIMEOUT\t5.0", timeout.stdout
    line = pkgc("config", "show", "--prefix", str(tmp_path / "from-cli"), PKGC_PREFIX=str(tmp_path / "from-env"))
    assert f'prefix = "{tmp_path / "from-cli"}"  (command line: --prefix)' in line.stdout, line.stdout
    listed = pkgc("list", PKGC_PARALLEL_DOWNLOADS="3")
    assert listed.returncode == 0 and str(tmp_path / "from-file") in listed.stdout
    bad = pkgc("list", PKGC_PARALLEL_DOWNLOADS="lots")
    assert bad.returncode == 2 and "PKGC_PARALLEL_DOWNLOADS" in bad.stderr and "1 to 16" in bad.stderr
    assert bad.stderr.count("\n") == 1

    # The token is masked in show, printed by get (which is asked for it by name).
    assert pkgc("config", "set", "token", "s3cret").returncode == 0
    assert "s3cret" not in pkgc("config", "show").stdout + pkgc("config", "show", "--json").stdout
    assert pkgc("config", "get", "token").stdout.strip() == "s3cret"
    assert pkgc("config", "get", "pins.nothing").returncode == 3
