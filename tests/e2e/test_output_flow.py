"""End-to-end: what install and upgrade print through a pipe, line for line (each thing said once)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import FarmEnv

pytestmark = pytest.mark.e2e


def test_an_install_says_each_package_once_and_no_status_of_ready_builds(farm: FarmEnv, tmp_path: Path) -> None:
    farm.pkgc("install", "usesgen", "--prefix", str(tmp_path / "warm"), check=True)  # every build is ready now
    prefix = tmp_path / "prefix"
    result = farm.pkgc("install", "usesgen", "--prefix", str(prefix), check=True)
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[:-1] == ["greet 2.0: installed", "usesgen 1.0: installed"]
    assert re.fullmatch(rf"prefix: {re.escape(str(prefix))} \(\d+\.\ds\)", lines[-1]), lines[-1]


def test_upgrade_all_with_nothing_to_do_says_only_that(farm: FarmEnv, tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    farm.pkgc("install", "usesgen", "--prefix", str(prefix), check=True)
    result = farm.pkgc("upgrade", "--all", "--prefix", str(prefix), check=True)
    assert (result.stdout, result.stderr) == ("upgrade: nothing to do\n", "")
