"""What the wheel tells pip and the user: every library the code imports, the licence, one version."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import shutil
import sys
import zipfile
from email.message import Message
from email.parser import HeaderParser
from pathlib import Path

import pytest
from wheelenv import ROOT, Venv, build_wheel, clean_env, run

pytestmark = pytest.mark.packaging


def _metadata(wheel: Path) -> Message:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return HeaderParser().parsestr(archive.read(name).decode())


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imported_top_level_modules(wheel: Path) -> dict[str, list[str]]:
    """Every top-level module the wheel's code imports (at any depth, lazily or not), with the files that do."""
    found: dict[str, list[str]] = {}
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if not name.endswith(".py"):
                continue
            for node in ast.walk(ast.parse(archive.read(name), filename=name)):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    files = found.setdefault(module.split(".")[0], [])
                    if name not in files:
                        files.append(name)
    return found


# The AWS deployable's own modules: their libraries come with `pip install 'pkgc[aws]'`, not with the client.
AWS_ONLY = re.compile(r"pkgc/(farm/adapters/aws[a-z_]*|farm/aws_lambda|farm/deploy|commands/farm)\.py")


def test_the_wheel_declares_every_library_its_code_imports(pkgc_wheel: Path) -> None:
    metadata = _metadata(pkgc_wheel)
    requirements = metadata.get_all("Requires-Dist") or []

    def names(requirement_list: list[str]) -> set[str]:
        return {_normalise(re.split(r"[\s\[<>=!~;(]", r, maxsplit=1)[0]) for r in requirement_list}

    declared = names([r for r in requirements if "extra ==" not in r])
    for_aws = names([r for r in requirements if re.search(r"extra == ['\"]aws['\"]", r)])
    distributions = importlib.metadata.packages_distributions()
    undeclared = []
    for module, files in sorted(_imported_top_level_modules(pkgc_wheel).items()):
        if module in sys.stdlib_module_names or module in ("__future__", "pkgc"):
            continue
        where = files[0]
        provided_by = {_normalise(d) for d in distributions.get(module, [])}
        assert provided_by, f"{where} imports {module}, which no installed distribution provides"
        if provided_by & declared:
            continue
        if provided_by & for_aws and all(AWS_ONLY.fullmatch(f) for f in files):
            continue  # the aws extra's, imported only where the AWS farm is deployed or run
        undeclared.append(f"{module} ({', '.join(files)}; from {', '.join(sorted(provided_by))})")
    assert not undeclared, f"imported but not in the wheel's dependencies: {undeclared}"


def test_the_wheel_ships_the_mit_licence(pkgc_wheel: Path) -> None:
    metadata = _metadata(pkgc_wheel)
    assert metadata["License-Expression"] == "MIT"
    assert metadata.get_all("License-File") == ["LICENSE"]
    with zipfile.ZipFile(pkgc_wheel) as archive:
        licence = next((n for n in archive.namelist() if n.endswith(".dist-info/licenses/LICENSE")), None)
        assert licence, "no LICENSE in the wheel's .dist-info"
        text = archive.read(licence).decode()
    assert text.startswith("MIT License")
    assert "Copyright (c) 2026 the pkgc developers" in text
    assert 'THE SOFTWARE IS PROVIDED "AS IS"' in text


def test_the_version_is_written_once_in_pkgc_init(tmp_path: Path) -> None:
    """A release changes `pkgc.__version__` only; the wheel's metadata follows it."""
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, symlinks=True,
                    ignore=shutil.ignore_patterns(".git", "__pycache__", ".*_cache", "*.egg-info"))  # fmt: skip
    init = source / "pkgc" / "__init__.py"
    text = init.read_text()
    assert re.search(r'^__version__ = "[^"]+"$', text, flags=re.MULTILINE)
    init.write_text(re.sub(r'^__version__ = "[^"]+"$', '__version__ = "9.8.7"', text, flags=re.MULTILINE))
    assert _metadata(build_wheel(source, tmp_path / "dist"))["Version"] == "9.8.7"


def test_pkgc_version_is_the_installed_distributions(installed: Venv, tmp_path: Path) -> None:
    shown = run([str(installed.bin("pkgc")), "--version"], env=clean_env(HOME=str(tmp_path)), cwd=tmp_path)
    distribution = run([str(installed.python), "-c", "import importlib.metadata as m; print(m.version('pkgc'))"],
                       cwd=tmp_path)  # fmt: skip
    assert shown.stdout.strip() == f"pkgc {distribution.stdout.strip()}"
