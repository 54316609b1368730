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
