"""A cache-hit install into a fresh prefix, as users run it, imports neither SQLAlchemy nor anything on the deny-list.

The unit budget (tests/unit/test_import_budget.py) stops at the farm request; this one goes through the download,
the unpacking, the new prefix's database and the commit, against the session's real embedded farm.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FarmEnv
from tests.unit.test_import_budget import HEADROOM, HOOK, NEVER

pytestmark = pytest.mark.e2e

# Modules beyond a bare interpreter's (see test_import_budget.py); 521 before the change, SQLAlchemy and click among them.
INSTALL_BUDGET = 290


def _modules(farm: FarmEnv, out: Path, args: list[str] | None) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", HOOK.format(out=str(out), args=args)],
        env=farm.env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(out.read_text()))


def test_a_cache_hit_install_imports_no_sqlalchemy(farm: FarmEnv, tmp_path: Path) -> None:
    farm.pkgc("install", "greet", "--prefix", str(tmp_path / "warm"), check=True)  # the build exists from here on
    imported = _modules(farm, tmp_path / "install.json", ["install", "greet", "--prefix", str(tmp_path / "fresh")])
    assert (tmp_path / "fresh" / "bin" / "greet").is_file()
    assert (tmp_path / "fresh" / ".pkgc" / "installed.sqlite").is_file()
    found = sorted(m for m in imported if any(m == d or m.startswith(d + ".") for d in NEVER))
    assert not found, f"install imports {found[:5]}"
    count = len(imported - _modules(farm, tmp_path / "bare.json", None))
    assert count <= INSTALL_BUDGET * HEADROOM, f"install imports {count} modules, budget {INSTALL_BUDGET} (+15 %)"
