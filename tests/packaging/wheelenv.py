"""Helpers of the packaging tests: clean environments, virtual environments, wheels built as pip builds them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment a user's shell would have: nothing that points Python or pkgc at this checkout."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PKGC_", "PYTHON", "XDG_", "PIP_REQUIRE_VIRTUALENV")) and k != "VIRTUAL_ENV"
    }
    env["PKGC_DEBIAN_CATALOG_AUTOLOAD"] = "0"  # the tests' farms never fetch Debian's catalog (off-loopback)
    env.update(extra)
    return env


def run(argv: list[str], env: Mapping[str, str] | None = None, cwd: Path | None = None,
        timeout: float = 600) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """Run a command, failing the test with its output if it exits non-zero."""
    result = subprocess.run(
        argv, env=dict(env or clean_env()), cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


@dataclass
class Venv:
    """A virtual environment made with the standard library's venv, as a user (or pipx) makes one."""

    root: Path

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    def bin(self, name: str) -> Path:
        return self.root / "bin" / name

    def pip(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run([str(self.python), "-m", "pip", "--disable-pip-version-check", *args])

    @classmethod
    def create(cls, root: Path) -> Venv:
        run([sys.executable, "-m", "venv", str(root)])
        return cls(root)


def build_wheel(source: Path, out: Path) -> Path:
    """Build one wheel of `source` (a directory with a pyproject.toml) the way pip does for a user."""
    out.mkdir(parents=True, exist_ok=True)
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--disable-pip-version-check", "-w", str(out),
         str(source)])  # fmt: skip
    wheels = sorted(out.glob("*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]
