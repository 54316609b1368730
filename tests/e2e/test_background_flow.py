"""End-to-end: `install --background` installs what is ready, leaves the rest compiling; `pending` finishes it."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import FarmEnv

pytestmark = pytest.mark.e2e


def test_background_install_then_pending_install(farm: FarmEnv, tmp_path: Path) -> None:
    config = tmp_path / "config"
    (config / "pkgc").mkdir(parents=True)
    (config / "pkgc" / "config.toml").write_text('install_mode = "background"\n')
    env = {**farm.env, "XDG_CONFIG_HOME": str(config)}
    prefix = tmp_path / "prefix"
    p = ("--prefix", str(prefix))

    def pkgc(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(farm.pkgc_argv(*args), env=env, capture_output=True, text=True, timeout=300)

    farm.pkgc("install", "greet@1.0", "--opt", "opt=O1", "--prefix", str(tmp_path / "warm"), check=True)  # ready
    started = time.monotonic()
    first = pkgc("install", "greet@1.0", "slowpoke", "--opt", "opt=O1", "--json", *p)  # mode from the config
    assert first.returncode == 0, first.stderr
    assert time.monotonic() - started < 60, "background mode does not wait for the compile"
    report = json.loads(first.stdout)
    assert report["pending"] == ["slowpoke"]
    assert [item["name"] for item in report["packages"] if item["action"] == "installed"] == ["greet"]
    assert (prefix / "bin/greet").exists() and not (prefix / "bin/slowpoke").exists()

    listed = json.loads(pkgc("pending", "--json", *p).stdout)
    assert "slowpoke" in {entry["spec"] for entry in listed}
    assert {entry["status"] for entry in listed} <= {"queued", "building", "ready"}

    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if all(entry["status"] == "ready" for entry in json.loads(pkgc("pending", "--json", *p).stdout)):
            break
        time.sleep(1)
    finished = json.loads(pkgc("pending", "--install", "--json", *p).stdout)
    assert "slowpoke" in finished["installed"] and finished["still_pending"] == []
    assert (
        subprocess.run([prefix / "bin/slowpoke"], capture_output=True, text=True, check=True).stdout.strip()
        == "slowpoke 1.0"
    )
    assert json.loads(pkgc("pending", "--json", *p).stdout) == []
    assert pkgc("verify", *p).returncode == 0


def test_background_installs_ready_packages_at_once(farm: FarmEnv, tmp_path: Path) -> None:
    farm.pkgc("install", "lz4", "--prefix", str(tmp_path / "warm"), check=True)
    prefix = tmp_path / "prefix"
    result = json.loads(
        farm.pkgc("install", "lz4", "--background", "--json", "--prefix", str(prefix), check=True).stdout
    )
    assert result["pending"] == [] and result["packages"][0]["action"] == "installed"
    assert (prefix / "bin/lz4").exists()
