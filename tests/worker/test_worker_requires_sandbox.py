"""`PKGC_REQUIRE_SANDBOX=1` (set by the tests' farm and CI): a worker without a working bubblewrap refuses to start,
so builds never run unsandboxed silently where the sandbox is part of what is being tested."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import subprocess_env


@pytest.mark.parametrize(
    "without",
    [{"PKGC_NO_SANDBOX": "1"}, {"PATH": "/nonexistent"}],
    ids=["sandbox-switched-off", "no-bwrap-on-the-path"],
)
def test_a_worker_that_must_sandbox_refuses_to_start_without_bubblewrap(
    tmp_path: Path, without: dict[str, str]
) -> None:
    env = subprocess_env({"PKGC_REQUIRE_SANDBOX": "1", **without})
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pkgc.worker", "--home", str(tmp_path / "farm"), "--id", "w1", "--max-jobs", "1"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,  # a worker that starts waits for a job: only a refusal ends it
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the worker started without a sandbox although PKGC_REQUIRE_SANDBOX=1")
    assert result.returncode != 0
    assert "refusing to build without a sandbox" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "farm" / "farm.db").exists(), "it refuses before touching the farm"


def test_the_test_session_fails_clearly_without_bubblewrap(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import require_bubblewrap

    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(pytest.fail.Exception, match="bubblewrap is required for the e2e tests"):
        require_bubblewrap()


def test_a_worker_refuses_to_start_when_its_host_lacks_a_toolchain_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its hermetic builds would see no such package: one line naming what to install, before touching the farm."""
    import os

    from pkgc.worker import __main__ as worker_main, buildroot
    from pkgc.worker.sandbox import bubblewrap_path

    if bubblewrap_path() is None:
        pytest.skip("bubblewrap cannot create namespaces here (the hermetic check runs only with a sandbox)")
    admin = tmp_path / "dpkg"
    admin.mkdir()
    (admin / "status").write_text("Package: gcc\nStatus: install ok installed\nArchitecture: amd64\nVersion: 12\n")
    monkeypatch.setattr(worker_main, "check_host", lambda definition: buildroot.check_host(definition, admin=admin))
    for name in ("PKGC_NO_SANDBOX", "PKGC_FARM_BACKEND", "PKGC_FARM_SUPERVISOR_PID"):
        monkeypatch.delenv(name, raising=False)
    umask = os.umask(0o022)
    try:
        with pytest.raises(SystemExit) as refused:
            worker_main.main(["--home", str(tmp_path / "farm"), "--id", "w1", "--max-jobs", "1"])
    finally:
        os.umask(umask)
    message = str(refused.value.code)
    assert message.startswith("worker w1: toolchain debian-12 declares packages this worker's host does not have")
    assert "g++" in message and "make" in message and "gcc," not in message and "\n" not in message
    assert not (tmp_path / "farm" / "farm.db").exists(), "it refuses before touching the farm"
