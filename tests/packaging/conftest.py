"""Fixtures for the packaging tests: pkgc as a user gets it, a wheel installed into a fresh virtual environment.

Building the wheel and installing it with its dependencies takes a while (tens of seconds), so one wheel and one
environment are shared by the whole session; tests that change the environment (installing another distribution)
make their own from the same wheel. Each test module carries the `packaging` mark (`-m "not packaging"` leaves them out).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from wheelenv import ROOT, Venv, build_wheel


@pytest.fixture(scope="session")
def pkgc_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of this checkout, built once per session."""
    return build_wheel(ROOT, tmp_path_factory.mktemp("pkgc-wheel"))


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory, pkgc_wheel: Path) -> Venv:
    """A fresh virtual environment with pkgc installed from its wheel (dependencies from the package index)."""
    venv = Venv.create(tmp_path_factory.mktemp("pkgc-venv") / "venv")
    venv.pip("install", "-q", str(pkgc_wheel))
    return venv


@pytest.fixture(scope="session")
def dummy_worker_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel of a distribution named `worker` that ships a top-level `worker/` package, as the one of that name on
    the package index does (built here, never downloaded)."""
    source = tmp_path_factory.mktemp("dummy-worker")
    (source / "pyproject.toml").write_text(
        textwrap.dedent(
            """\
            [build-system]
            requires = ["hatchling"]
            build-backend = "hatchling.build"

            [project]
            name = "worker"
            version = "9.9.9"

            [tool.hatch.build.targets.wheel]
            packages = ["worker"]
            """
        )
    )
    (source / "worker").mkdir()
    (source / "worker" / "__init__.py").write_text('"""Someone else\'s worker."""\n')
    (source / "worker" / "__main__.py").write_text('raise SystemExit("this is not pkgc\'s worker")\n')
    return build_wheel(source, tmp_path_factory.mktemp("dummy-worker-wheel"))
