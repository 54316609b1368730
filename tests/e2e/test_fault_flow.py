"""End-to-end: a network drop, a stalled download and a full disk in the middle of an install.

Each one must end with a one-line error and a non-zero exit, leave the prefix and its database exactly as they were,
and (for the network) keep the bytes already downloaded so that the next try resumes where it stopped. The network
faults come from a real HTTP proxy on loopback (`tests/faultproxy.py`); the full disk is a real small tmpfs that
bubblewrap mounts over the prefix (256 KiB) or over the download cache (16 KiB).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import FarmEnv
from tests.faultproxy import FaultProxy

pytestmark = pytest.mark.e2e


def snapshot(prefix: Path) -> dict[str, bytes | str]:
    """Every user-visible path of the prefix with its content (or link target): what 'nothing changed' means."""
    state: dict[str, bytes | str] = {}
    for path in sorted(prefix.rglob("*")):
        if ".pkgc" in path.relative_to(prefix).parts:
            continue
        key = path.relative_to(prefix).as_posix()
        if path.is_symlink():
            state[key] = "-> " + os.readlink(path)
        elif path.is_file():
            state[key] = path.read_bytes()
        else:
            state[key] = "dir"
    return state


def installed(farm: FarmEnv, prefix: Path) -> list[str]:
    listing = farm.pkgc("list", "--json", "--prefix", str(prefix), check=True).stdout
    return sorted(p["name"] for p in json.loads(listing))


@pytest.fixture
def proxy(farm: FarmEnv) -> Iterator[FaultProxy]:
    started = FaultProxy(farm.url).start()
    try:
        yield started
    finally:
        started.stop()


def error_lines(stderr: str) -> list[str]:
    """The error report: progress lines may come before it, but the error itself is one line."""
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def run_through(proxy: FaultProxy, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pkgc", *args],
        env={**env, "PKGC_FARM": proxy.url},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_dropped_connection_changes_nothing_and_the_next_try_resumes(
    farm: FarmEnv, proxy: FaultProxy, tmp_path: Path
) -> None:
    farm.pkgc("install", "hello", "--prefix", str(tmp_path / "warm"), check=True)  # the build exists on the farm
    prefix = tmp_path / "prefix"
    farm.pkgc("install", "greet@1.0", "--prefix", str(prefix), check=True)
    before = snapshot(prefix)
    env = {**farm.env, "XDG_CACHE_HOME": str(tmp_path / "cache")}

    proxy.mode, proxy.cut = "drop", 40_000
    broken = run_through(proxy, env, "install", "hello", "--prefix", str(prefix))
    assert broken.returncode == 4, broken.stderr
    [error] = error_lines(broken.stderr)
    assert error.startswith("error: download of ") and error.endswith("run the command again to resume")
    assert snapshot(prefix) == before
    assert installed(farm, prefix) == ["greet"]
    assert farm.pkgc("verify", "--prefix", str(prefix)).returncode == 0
    partials = list((tmp_path / "cache" / "pkgc" / "artifacts").glob("*.part"))
    assert [p.stat().st_size for p in partials] == [40_000], "the bytes that arrived are kept"

    proxy.mode = "pass"
    resumed = run_through(proxy, env, "install", "hello", "--prefix", str(prefix))
    assert resumed.returncode == 0, resumed.stderr
    assert proxy.artifact_requests == ["", "bytes=40000-"]
    assert installed(farm, prefix) == ["greet", "hello"]
    hello = subprocess.run([str(prefix / "bin" / "hello")], capture_output=True, text=True, check=True)
    assert hello.stdout.strip() == "Hello, world!"
    assert farm.pkgc("verify", "--prefix", str(prefix)).returncode == 0


def test_a_stalled_download_times_out_and_changes_nothing(farm: FarmEnv, proxy: FaultProxy, tmp_path: Path) -> None:
    farm.pkgc("install", "hello", "--prefix", str(tmp_path / "warm"), check=True)
    prefix = tmp_path / "prefix"
    farm.pkgc("install", "greet@1.0", "--prefix", str(prefix), check=True)
    before = snapshot(prefix)
    config = tmp_path / "config"
    (config / "pkgc").mkdir(parents=True)
    (config / "pkgc" / "config.toml").write_text("network_timeout = 2\n")
    env = {**farm.env, "XDG_CACHE_HOME": str(tmp_path / "cache"), "XDG_CONFIG_HOME": str(config)}

    proxy.mode, proxy.cut, proxy.stall_seconds = "stall", 30_000, 12.0
    stalled = run_through(proxy, env, "install", "hello", "--prefix", str(prefix))
    assert stalled.returncode == 4, stalled.stderr
    [error] = error_lines(stalled.stderr)
    assert "timed out" in error and error.endswith("run the command again to resume")
    assert snapshot(prefix) == before
    assert installed(farm, prefix) == ["greet"]
    assert farm.pkgc("verify", "--prefix", str(prefix)).returncode == 0


DRIVER = """
import json, subprocess, sys
from pathlib import Path

prefix, out = sys.argv[1], Path(sys.argv[2])
def pkgc(*args):
    done = subprocess.run([sys.executable, "-m", "pkgc", *args, "--prefix", prefix], capture_output=True, text=True)
    return {"code": done.returncode, "stdout": done.stdout, "stderr": done.stderr}

def files():
    root = Path(prefix)
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if ".pkgc" not in p.relative_to(root).parts)

steps = {"small": pkgc("install", "greet@1.0")}
steps["before"] = files()
steps["big"] = pkgc("install", "hello")
steps["after"] = files()
steps["list"] = pkgc("list", "--json")
steps["verify"] = pkgc("verify")
steps["greet"] = subprocess.run([prefix + "/bin/greet"], capture_output=True, text=True).stdout
out.write_text(json.dumps(steps))
"""


def test_a_full_disk_while_staging_is_a_clear_error_and_changes_nothing(farm: FarmEnv, tmp_path: Path) -> None:
    bwrap = shutil.which("bwrap")
    assert bwrap, "bubblewrap is needed to mount a small tmpfs (.ci/run installs it)"
    farm.pkgc("install", "hello", "--prefix", str(tmp_path / "warm"), check=True)
    farm.pkgc("install", "greet@1.0", "--prefix", str(tmp_path / "warm"), check=True)
    prefix = tmp_path / "small-disk"
    prefix.mkdir()
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent(DRIVER))
    out = tmp_path / "steps.json"
    # The prefix is a 256 KiB tmpfs, enough for greet and its database, not for hello and its translations.
    subprocess.run(
        [bwrap, "--dev-bind", "/", "/", "--size", str(256 * 1024), "--tmpfs", str(prefix), "--",
         sys.executable, str(driver), str(prefix), str(out)],
        env=farm.env,
        check=True,
        timeout=300,
    )  # fmt: skip
    steps = json.loads(out.read_text())
    assert steps["small"]["code"] == 0, steps["small"]["stderr"]
    big = steps["big"]
    assert big["code"] == 9, big["stderr"]
    [error] = error_lines(big["stderr"])
    assert error.startswith("error: no space left on device") and "nothing was changed" in error
    assert steps["after"] == steps["before"]
    assert [p["name"] for p in json.loads(steps["list"]["stdout"])] == ["greet"]
    assert steps["verify"]["code"] == 0, steps["verify"]["stdout"] + steps["verify"]["stderr"]
    assert steps["greet"].strip()


def test_a_full_download_cache_is_a_clear_error_and_changes_nothing(farm: FarmEnv, tmp_path: Path) -> None:
    bwrap = shutil.which("bwrap")
    assert bwrap, "bubblewrap is needed to mount a small tmpfs (.ci/run installs it)"
    farm.pkgc("install", "hello", "--prefix", str(tmp_path / "warm"), check=True)  # the build exists
    prefix = tmp_path / "prefix"
    farm.pkgc("install", "greet@1.0", "--prefix", str(prefix), check=True)
    before = snapshot(prefix)
    cache = tmp_path / "cache"
    cache.mkdir()
    # The artifact (about 54 KB) does not fit in a 16 KiB cache.
    result = subprocess.run(
        [bwrap, "--dev-bind", "/", "/", "--size", str(16 * 1024), "--tmpfs", str(cache), "--",
         sys.executable, "-m", "pkgc", "install", "hello", "--prefix", str(prefix)],
        env={**farm.env, "XDG_CACHE_HOME": str(cache)},
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 9, result.stderr
    [error] = error_lines(result.stderr)
    assert error.startswith("error: no space left on device") and "nothing was changed" in error
    assert snapshot(prefix) == before
    assert installed(farm, prefix) == ["greet"]
    assert farm.pkgc("verify", "--prefix", str(prefix)).returncode == 0
