"""Output into a pipe whose reader has gone (`pkgc config | head -1`): a quiet stop, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("args", [["config"], ["config", "show"], ["--help"], ["list"], ["--version"]])
def test_a_closed_pipe_stops_the_command_quietly(tmp_path: Path, args: list[str]) -> None:
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "PKGC_FARM_HOME": str(tmp_path / "farm"),
    }
    reader, writer = os.pipe()
    os.close(reader)  # the reader is gone before pkgc writes a byte
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pkgc", *args], stdout=writer, stderr=subprocess.PIPE, text=True, env=env, timeout=60
        )
    finally:
        os.close(writer)
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, result.stderr
    assert result.stderr == ""
    assert result.returncode == 1  # what click does for the output it writes itself
    assert not (tmp_path / "farm" / "state.json").exists()
