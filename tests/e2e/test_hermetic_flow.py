"""Hermetic builds through the session farm: a build sees its toolchain and its dependencies, nothing else of the
build host, and an artifact that needs a library a client would not have fails its build with the library named."""

from __future__ import annotations

import subprocess

import pytest

from pkgc.core.elf import read_dynamic_file
from tests.conftest import FarmEnv

pytestmark = pytest.mark.e2e


def test_a_binary_that_needs_a_host_library_fails_its_build_naming_it(farm: FarmEnv) -> None:
    prefix = farm.root / "hermetic-zstd"
    result = farm.pkgc("install", "linkszstd", "--prefix", str(prefix))
    assert result.returncode == 5, result.stderr
    assert "bin/linkszstd needs libzstd.so.1" in result.stderr, result.stderr
    assert "base library of toolchain debian-12" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (prefix / "bin").exists()


def test_a_build_cannot_link_the_hosts_readline(farm: FarmEnv) -> None:
    result = farm.pkgc("install", "wantsreadline", "--prefix", str(farm.root / "hermetic-readline"))
    assert result.returncode == 5, result.stderr
    assert "cannot find -lreadline" in result.stderr, result.stderr


def test_sqlite3_is_built_against_the_farms_own_readline(farm: FarmEnv) -> None:
    prefix = farm.root / "hermetic-sqlite3"
    farm.pkgc("install", "sqlite3", "--prefix", str(prefix), check=True, timeout=1800)
    shell = prefix / "bin" / "sqlite3"
    info = read_dynamic_file(shell)
    assert info is not None and "libreadline.so.8" in info.needed, info
    files = farm.pkgc("files", "readline", "--prefix", str(prefix), check=True).stdout
    assert "lib/libreadline.so.8" in files, "the library comes from the farm's readline package"
    resolved = subprocess.run(["ldd", str(shell)], capture_output=True, text=True, check=True).stdout
    readline_line = next(line for line in resolved.splitlines() if "libreadline.so.8" in line)
    assert str(prefix) in readline_line, f"the installed readline is the one loaded: {readline_line}"
    run = subprocess.run(
        [str(shell), ":memory:", "create table t(x); insert into t values (20), (22); select sum(x) from t;"],
        capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert run.returncode == 0 and run.stdout.strip() == "42", run.stdout + run.stderr
