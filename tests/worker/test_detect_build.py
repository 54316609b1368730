"""`system = "auto"`: the worker detects the build system in the unpacked tree and builds with it (a plain
Makefile gets the install prefix on its command line), or fails saying no build system was detected."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pkgc.core.buildspec import PackageRequest, plan_builds
from pkgc.core.platform import detect_platform
from pkgc.core.recipe import BuildInstructions, Recipe, SourceVersion
from pkgc.worker.builder import BuildError, run_build
from pkgc.worker.sandbox import Sandbox, bubblewrap_path
from tests.conftest import make_tarball

MAKEFILE = (
    "PREFIX ?= /usr/local\n"
    "hi:\n\tprintf '#!/bin/sh\\necho hi from auto\\n' > hi\n"
    "install: hi\n\tinstall -D -m 755 hi $(DESTDIR)$(PREFIX)/bin/hi\n"
)


def _tarball(path: Path, files: dict[str, str]) -> Path:
    make_tarball(path, "demo-1.0", {name: text.encode() for name, text in files.items()})
    return path


def _spec(sha: str) -> object:
    recipe = Recipe(
        "demo", "", "", "", (SourceVersion("1.0", sha, ("https://example.org/demo.tar.gz",)),),
        BuildInstructions("auto"), origin="generated",
    )  # fmt: skip
    specs, _ = plan_builds([PackageRequest("demo")], lambda _name: recipe, detect_platform())
    return specs[0]


def test_auto_detects_a_plain_makefile_and_installs_into_the_prefix(tmp_path: Path) -> None:
    bwrap = bubblewrap_path()
    archive = _tarball(tmp_path / "demo.tar.gz", {"Makefile": MAKEFILE})
    workdir = tmp_path / "work"
    workdir.mkdir()
    with (tmp_path / "build.log").open("wb") as log:
        staged = run_build(
            _spec("a" * 64),  # type: ignore[arg-type]
            workdir=workdir, source_archive=archive, depsdir=None,
            sandbox=Sandbox(workdir, bwrap=bwrap, deadline=time.monotonic() + 60), jobs=1, log=log,
        )  # fmt: skip
    assert (staged / "bin" / "hi").is_file(), "PREFIX=<the placeholder> reached the Makefile, not /usr/local"
    assert b"pkgc: build system make (found Makefile)" in (tmp_path / "build.log").read_bytes()


def test_auto_without_a_build_system_fails_saying_so(tmp_path: Path) -> None:
    archive = _tarball(tmp_path / "demo.tar.gz", {"README": "nothing to build\n"})
    workdir = tmp_path / "work"
    workdir.mkdir()
    with (tmp_path / "build.log").open("wb") as log, pytest.raises(BuildError, match="no build system detected"):
        run_build(
            _spec("b" * 64),  # type: ignore[arg-type]
            workdir=workdir, source_archive=archive, depsdir=None,
            sandbox=Sandbox(workdir, bwrap=bubblewrap_path(), deadline=time.monotonic() + 60), jobs=1, log=log,
        )  # fmt: skip
