"""The NEEDED check (pkgc.worker.needed) on trees of real ELF files made by the compiler."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from pkgc.core.toolchain import load_toolchain
from pkgc.worker.needed import UnsatisfiedLibrary, check_needed

CC = shutil.which("cc") or shutil.which("gcc")
pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler")
BASE = load_toolchain().base_sonames


def _cc(*args: str, cwd: Path) -> None:
    subprocess.run([CC or "cc", *args], check=True, cwd=cwd, capture_output=True)


def _library(tree: Path, soname: str) -> None:
    (tree / "lib").mkdir(parents=True, exist_ok=True)
    (tree / "lib.c").write_text("int helper(void) { return 7; }\n")
    _cc("-shared", "-fPIC", f"-Wl,-soname,{soname}", "-o", f"lib/{soname}.0", "lib.c", cwd=tree)
    (tree / "lib.c").unlink()
    (tree / "lib" / soname).symlink_to(f"{soname}.0")
    (tree / "lib" / soname.split(".so")[0]).with_suffix(".so").symlink_to(soname)


def _program(tree: Path, *link: str) -> None:
    (tree / "bin").mkdir(parents=True, exist_ok=True)
    (tree / "main.c").write_text("int helper(void);\nint main(void) { return helper() == 7 ? 0 : 1; }\n")
    _cc("-o", "bin/tool", "main.c", *link, cwd=tree)
    (tree / "main.c").unlink()


def test_a_library_of_the_artifact_itself_satisfies_its_program(tmp_path: Path) -> None:
    _library(tmp_path, "libhelper.so.1")
    _program(tmp_path, "-Llib", "-lhelper")
    (tmp_path / "share").mkdir()
    (tmp_path / "share" / "notes.txt").write_text("not ELF\n")
    assert check_needed(tmp_path, base_sonames=BASE, runtime_trees=[], toolchain="debian-12") == 2


def test_a_library_of_a_runtime_dependency_satisfies_it(tmp_path: Path) -> None:
    dependency, staged = tmp_path / "dep", tmp_path / "staged"
    _library(dependency, "libhelper.so.1")
    _program(staged, f"-L{dependency}/lib", "-lhelper")
    assert check_needed(staged, base_sonames=BASE, runtime_trees=[dependency], toolchain="debian-12") == 1
    with pytest.raises(UnsatisfiedLibrary) as missing:
        check_needed(staged, base_sonames=BASE, runtime_trees=[], toolchain="debian-12")
    assert str(missing.value).startswith("bin/tool needs libhelper.so.1, which is neither in the artifact")


def test_a_host_library_outside_the_base_list_is_named(tmp_path: Path) -> None:
    zstd = next(Path("/usr/lib").rglob("libzstd.so.1"), None) if Path("/usr/lib").is_dir() else None
    if zstd is None:
        pytest.skip("no libzstd.so.1 on this host")
    (tmp_path / "bin").mkdir()
    (tmp_path / "z.c").write_text("unsigned ZSTD_versionNumber(void);\nint main(void) { return !ZSTD_versionNumber(); }\n")
    _cc("-o", "bin/z", "z.c", "-l:libzstd.so.1", cwd=tmp_path)
    (tmp_path / "z.c").unlink()
    with pytest.raises(UnsatisfiedLibrary, match=r"^bin/z needs libzstd\.so\.1, .* toolchain debian-12$"):
        check_needed(tmp_path, base_sonames=BASE, runtime_trees=[], toolchain="debian-12")


def test_a_runpath_outside_the_prefix_is_named(tmp_path: Path) -> None:
    """A dependency's libtool file used to put the farm's throwaway dependency directory into a RUNPATH."""
    from pkgc.core.relocation import PLACEHOLDER

    _library(tmp_path, "libhelper.so.1")
    _program(tmp_path, "-Llib", "-lhelper", f"-Wl,-rpath,{PLACEHOLDER}/lib:$ORIGIN/../lib")
    assert check_needed(tmp_path, base_sonames=BASE, runtime_trees=[], toolchain="debian-12") == 2
    _program(tmp_path, "-Llib", "-lhelper", f"-Wl,-rpath,{PLACEHOLDER}/lib:/var/tmp/farm-work/deps/lib")
    with pytest.raises(UnsatisfiedLibrary, match=r"^bin/tool looks for libraries in /var/tmp/farm-work/deps/lib, outside"):
        check_needed(tmp_path, base_sonames=BASE, runtime_trees=[], toolchain="debian-12")
