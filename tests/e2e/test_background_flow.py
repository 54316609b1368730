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


def test_wait_installs_each_package_as_soon_as_its_build_finishes(farm: FarmEnv, tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    p = ("--prefix", str(prefix))
    # Fresh option sets: greet builds in about a second, slowpoke sleeps 8 s in its build first.
    farm.pkgc("install", "slowpoke", "greet@1.1", "--opt", "opt=Os", "--wait", *p, check=True)
    history = json.loads(farm.pkgc("history", "--json", *p, check=True).stdout)
    assert [[pkg["name"] for pkg in entry["after"]] for entry in history] == [["greet"], ["slowpoke"]]
    assert history[0]["finished_at"] < history[1]["finished_at"]


def test_a_failed_build_stops_the_rest_but_keeps_what_was_installed(farm: FarmEnv, tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    farm.pkgc("install", "lz4", "--prefix", str(tmp_path / "warm"), check=True)
    result = farm.pkgc("install", "lz4", "broken", "--prefix", str(prefix))
    assert result.returncode == 5 and "build of broken@1.0 failed" in result.stderr
    names = [p["name"] for p in json.loads(farm.pkgc("list", "--json", "--prefix", str(prefix)).stdout)]
    assert names == ["lz4"], "lz4 was ready and went in on its own; broken left nothing behind"
    assert farm.pkgc("verify", "--prefix", str(prefix)).returncode == 0


def test_pending_install_reports_a_failed_build(farm: FarmEnv, tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    p = ("--prefix", str(prefix))
    queued = json.loads(farm.pkgc("install", "broken", "--opt", "opt=O3", "--background", "--json", *p).stdout)
    assert queued["pending"] == ["broken"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if json.loads(farm.pkgc("pending", "--json", *p).stdout)[0]["status"] == "failed":
            break
        time.sleep(1)
    finished = farm.pkgc("pending", "--install", *p)
    assert finished.returncode == 5 and "build of broken failed" in finished.stdout
    assert json.loads(farm.pkgc("pending", "--json", *p).stdout) == []
