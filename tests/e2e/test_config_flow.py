"""End-to-end: `pkgc config`, per-package options from the config, pins and outdated, through the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FarmEnv

pytestmark = pytest.mark.e2e


class User:
    """The session farm, seen by a user with a config directory of their own."""

    def __init__(self, farm: FarmEnv, home: Path) -> None:
        self.farm = farm
        self.env = {**farm.env, "XDG_CONFIG_HOME": str(home / "config")}
        self.config = home / "config" / "pkgc" / "config.toml"

    def pkgc(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.farm.pkgc_argv(*args), env={**self.env, **(env or {})}, capture_output=True, text=True, timeout=300
        )


def test_config_set_get_unset_and_validation(farm: FarmEnv, tmp_path: Path) -> None:
    user = User(farm, tmp_path)
    assert user.pkgc("config", "path").stdout.strip() == str(user.config)
    assert user.pkgc("config", "set", "options.opt", "O3").returncode == 0
    assert user.pkgc("config", "get", "options.opt").stdout.strip() == "O3"
    assert user.pkgc("config", "set", "parallel_downloads", "8").returncode == 0
    saved = user.config.read_text()

    for key, value, allowed in [
        ("options.opt", "O9", "O0, O1, O2, O3, Os"),
        ("farm", "ftp://example", "http"),
        ("parallel_downloads", "0", "1 to 16"),
        ("network_timeout", "0", "1 to 600"),
        ("network_timeout", "soon", "1 to 600"),
        ("install_mode", "later", "'wait' or 'background'"),
        ("prefix", "relative/dir", "absolute path"),
    ]:
        bad = user.pkgc("config", "set", key, value)
        assert bad.returncode == 2, (key, bad.stderr)
        line = bad.stderr.strip()
        assert str(user.config) in line and f"'{key}'" in line and allowed in line and "\n" not in line
    assert user.pkgc("config", "set", "colour", "blue").returncode == 2
    assert user.config.read_text() == saved, "a refused value changes nothing"

    assert user.pkgc("config", "unset", "options.opt").returncode == 0
    assert user.pkgc("config", "get", "options.opt").returncode == 3
    shown = json.loads(user.pkgc("config", "show", "--json").stdout)
    assert shown["parallel_downloads"] == {"value": 8, "origin": "file", "where": str(user.config)}
    assert "options.opt" not in shown and shown["install_mode"]["origin"] == "default"

    user.config.write_text(user.config.read_text() + 'flavour = "vanilla"\n')
    listed = user.pkgc("list", env={"PKGC_PREFIX": str(tmp_path / "empty")})
    assert listed.returncode == 0 and "unknown key 'flavour'" in listed.stderr


def test_config_edit_saves_only_valid_files(farm: FarmEnv, tmp_path: Path) -> None:
    user = User(farm, tmp_path)

    def edit_with(line: str) -> subprocess.CompletedProcess[str]:
        script = tmp_path / "append.py"
        script.write_text(f"import sys\nopen(sys.argv[1], 'a').write({line!r})\n")
        return user.pkgc("config", "edit", env={"EDITOR": f"{sys.executable} {script}", "VISUAL": ""})

    assert edit_with('install_mode = "background"\n').returncode == 0
    assert user.pkgc("config", "get", "install_mode").stdout.strip() == "background"
    before = user.config.read_text()
    refused = edit_with("parallel_downloads = 99\n")
    assert refused.returncode == 2 and "parallel_downloads" in refused.stderr
    assert user.config.read_text() == before
    assert edit_with("not toml at all ===\n").returncode == 2
    assert user.config.read_text() == before


def test_per_package_options_pins_and_outdated(farm: FarmEnv, tmp_path: Path) -> None:
    user = User(farm, tmp_path)
    prefix = tmp_path / "prefix"
    p = ("--prefix", str(prefix))
    assert user.pkgc("config", "set", "packages.greet.options.opt", "O1").returncode == 0
    assert user.pkgc("install", "greet@1.0", *p).returncode == 0
    listed = json.loads(user.pkgc("list", "--json", *p).stdout)
    assert listed[0]["options"]["opt"] == "O1"

    assert user.pkgc("pin", "greet", *p).returncode == 0
    assert user.pkgc("config", "get", "pins.greet").stdout.strip() == "1.0"
    outdated = json.loads(user.pkgc("outdated", "--json", *p).stdout)
    assert outdated == [{"name": "greet", "installed": "1.0", "newest": "2.0", "pinned": "1.0"}]
    held = json.loads(user.pkgc("upgrade", "--all", "--json", *p).stdout)
    assert held["changes"] == [] and held["held"] == ["greet"]
    refused = user.pkgc("upgrade", "greet", *p)
    assert refused.returncode == 2 and "pinned at 1.0" in refused.stderr

    assert user.pkgc("unpin", "greet").returncode == 0
    moved = json.loads(user.pkgc("upgrade", "--all", "--json", *p).stdout)
    assert moved["changes"] == [{"name": "greet", "old_version": "1.0", "new_version": "2.0"}]
    assert json.loads(user.pkgc("outdated", "--json", *p).stdout) == []
