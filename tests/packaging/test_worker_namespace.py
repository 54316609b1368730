"""The worker is installed as `pkgc.worker`, so another distribution's top-level `worker` cannot replace or delete it.

A distribution named `worker` exists on the package index; when pkgc shipped a top-level `worker/` package, installing
such a wheel overwrote pkgc's `worker/__main__.py` and uninstalling it deleted the file, so the farm's workers could
not start.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from wheelenv import ROOT, Venv, clean_env, run

pytestmark = pytest.mark.packaging

# Every file of the installed distribution still exists with the content its RECORD lists.
CHECK_RECORD = """
import base64, hashlib, importlib.metadata, sys
broken = []
for file in importlib.metadata.distribution("pkgc").files or []:
    if file.hash is None:
        continue
    path = file.locate()
    try:
        digest = hashlib.new(file.hash.mode, path.read_bytes()).digest()
    except FileNotFoundError:
        broken.append(f"missing {file}")
        continue
    if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != file.hash.value:
        broken.append(f"changed {file}")
print("\\n".join(broken))
sys.exit(1 if broken else 0)
"""


def test_the_wheel_ships_no_top_level_package_but_pkgc(pkgc_wheel: Path) -> None:
    with zipfile.ZipFile(pkgc_wheel) as wheel:
        tops = {name.split("/", 1)[0] for name in wheel.namelist()}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"pkgc"}
    with zipfile.ZipFile(pkgc_wheel) as wheel:
        assert "pkgc/worker/__main__.py" in wheel.namelist()


def test_another_worker_distribution_leaves_pkgc_intact(
    tmp_path: Path, pkgc_wheel: Path, dummy_worker_wheel: Path
) -> None:
    venv = Venv.create(tmp_path / "venv")
    venv.pip("install", "-q", str(pkgc_wheel), str(dummy_worker_wheel))
    venv.pip("uninstall", "-y", "-q", "worker")

    run([str(venv.python), "-c", CHECK_RECORD])
    usage = run([str(venv.python), "-m", "pkgc.worker", "--help"], cwd=tmp_path)
    assert "--home" in usage.stdout
    prefetch = run([str(venv.python), "-m", "pkgc.worker.prefetch", "--help"], cwd=tmp_path)
    assert "python -m pkgc.worker.prefetch" in prefetch.stdout


def test_installed_worker_runs_from_the_wheel(installed: Venv, tmp_path: Path) -> None:
    """`python -m pkgc.worker` in the installed environment imports only installed code (no checkout on the path)."""
    env = clean_env()
    probe = run([str(installed.python), "-c", "import pkgc.worker.loop as m; print(m.__file__)"], env=env,
                cwd=tmp_path)  # fmt: skip
    assert Path(probe.stdout.strip()).is_relative_to(installed.root)


def test_editable_install_has_the_same_names(tmp_path: Path) -> None:
    """`pip install -e .` (the README's quick start, .ci/run) resolves `pkgc.worker` to the checkout's worker/."""
    venv = Venv.create(tmp_path / "venv")
    venv.pip("install", "-q", "-e", str(ROOT))
    probe = run([str(venv.python), "-c", "import pkgc.worker.loop as m; print(m.__file__)"], cwd=tmp_path)
    assert Path(probe.stdout.strip()).resolve() == ROOT / "worker" / "loop.py"
    usage = run([str(venv.python), "-m", "pkgc.worker", "--help"], cwd=tmp_path)
    assert "python -m pkgc.worker" in usage.stdout
