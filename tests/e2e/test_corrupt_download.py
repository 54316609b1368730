"""End-to-end: a download that arrives whole but with wrong bytes is refused by its sha256, and not kept.

HTTP cannot tell: the real loopback proxy (`tests/faultproxy.py`, mode "corrupt") serves the farm's artifact at its
full length with some bytes in the middle inverted. Only the client's sha256 check of the download stands between
these bytes and the prefix, so removing that check must make this test fail.
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import FarmEnv
from tests.e2e.test_fault_flow import error_lines, installed, run_through, snapshot
from tests.faultproxy import FaultProxy

pytestmark = pytest.mark.e2e

INTEGRITY_EXIT = 6


@pytest.fixture
def corrupting_proxy(farm: FarmEnv) -> Iterator[FaultProxy]:
    started = FaultProxy(farm.url, mode="corrupt", flip=64).start()
    try:
        yield started
    finally:
        started.stop()


def digest_of_hello(farm: FarmEnv) -> str:
    with farm.api() as api:
        answer = api.post("/v1/resolve", json={"packages": [{"name": "hello"}]}).json()
    [hello] = [b for b in answer["builds"] if b["name"] == "hello"]
    assert hello["status"] == "ready" and hello["sha256"]
    return str(hello["sha256"])


def test_a_corrupt_download_is_refused_not_kept_and_changes_nothing(
    farm: FarmEnv, corrupting_proxy: FaultProxy, tmp_path: Path
) -> None:
    farm.pkgc("install", "hello", "--prefix", str(tmp_path / "warm"), check=True)  # the build exists on the farm
    prefix = tmp_path / "prefix"
    farm.pkgc("install", "greet@1.0", "--prefix", str(prefix), check=True)
    before = snapshot(prefix)
    cache = tmp_path / "cache"
    env = {**farm.env, "XDG_CACHE_HOME": str(cache)}
    good = digest_of_hello(farm)

    result = run_through(corrupting_proxy, env, "install", "hello", "--prefix", str(prefix))

    assert corrupting_proxy.artifact_requests == [""], "the artifact was served, whole and corrupted"
    assert result.returncode == INTEGRITY_EXIT, result.stderr
    [error] = error_lines(result.stderr)
    assert error.startswith("error: download of ") and "does not match its sha256" in error, error
    artifacts = cache / "pkgc" / "artifacts"
    kept = sorted(p.name for p in artifacts.iterdir()) if artifacts.exists() else []
    assert kept == [], f"the corrupt download was kept: {kept}"
    named_good = artifacts / f"{good}.tar.zst"
    assert not named_good.exists() or hashlib.sha256(named_good.read_bytes()).hexdigest() == good
    assert snapshot(prefix) == before
    assert installed(farm, prefix) == ["greet"]
    assert farm.pkgc("verify", "--prefix", str(prefix)).returncode == 0

    corrupting_proxy.mode = "pass"
    fixed = run_through(corrupting_proxy, env, "install", "hello", "--prefix", str(prefix))
    assert fixed.returncode == 0, fixed.stderr
    assert corrupting_proxy.artifact_requests == ["", ""], "the next try downloads the whole artifact again"
    assert hashlib.sha256(named_good.read_bytes()).hexdigest() == good
    hello = subprocess.run([str(prefix / "bin" / "hello")], capture_output=True, text=True, check=True)
    assert hello.stdout.strip() == "Hello, world!"
