"""`pipx install <wheel>`, the README's way to install pkgc without a checkout, gives a working pkgc and farm."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from wheelenv import clean_env, run

pytestmark = pytest.mark.packaging


def test_pipx_install_of_the_wheel_runs_pkgc_and_its_farm(tmp_path: Path, pkgc_wheel: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = clean_env(
        HOME=str(home),
        PIPX_HOME=str(tmp_path / "pipx"),
        PIPX_BIN_DIR=str(tmp_path / "bin"),
        PIPX_MAN_DIR=str(tmp_path / "man"),
        NO_COLOR="1",
    )
    run([sys.executable, "-m", "pipx", "install", str(pkgc_wheel)], env=env, cwd=home)
    pkgc = str(tmp_path / "bin" / "pkgc")
    version = pkgc_wheel.name.split("-")[1]
    assert run([pkgc, "--version"], env=env, cwd=home).stdout.strip() == f"pkgc {version}"

    farm_home = home / ".local" / "share" / "pkgc" / "farm"  # platformdirs' data directory on Linux
    try:
        run([pkgc, "farm", "up", "--workers", "1"], env=env, cwd=home)
        status = run([pkgc, "farm", "status"], env=env, cwd=home)
        assert "running" in status.stdout
        pid = json.loads((farm_home / "state.json").read_text())["pid"]
        interpreter = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
        assert Path(interpreter).is_relative_to(tmp_path / "pipx"), "the farm runs pipx's environment's Python"
    finally:
        stopped = run([pkgc, "farm", "stop"], env=env, cwd=home)
    assert "stopped" in stopped.stdout
    assert not (farm_home / "state.json").exists()
