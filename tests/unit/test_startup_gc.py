"""The CLI raises the collector's first threshold before its imports; the farm's processes keep the default."""

from __future__ import annotations

import subprocess
import sys


def threshold_after(module: str) -> int:
    code = f"import gc, {module}; print(gc.get_threshold()[0])"
    return int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def test_the_cli_collects_less_often_and_the_farm_as_python_does() -> None:
    default = threshold_after("sys")
    assert threshold_after("pkgc.cli") == 50_000 > default
    assert threshold_after("pkgc.farm.api") == default
    assert threshold_after("pkgc.farm.bootstrap") == default
