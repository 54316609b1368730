"""Reading ELF dynamic sections (pkgc.core.elf) against real files the compiler makes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pkgc.core.elf import ElfError, read_dynamic, read_dynamic_file

CC = shutil.which("cc") or shutil.which("gcc")
needs_cc = pytest.mark.skipif(CC is None, reason="no C compiler")


def _compile(tmp_path: Path, name: str, source: str, *args: str) -> Path:
    assert CC is not None
    (tmp_path / f"{name}.c").write_text(source)
    out = tmp_path / name
    subprocess.run([CC, "-o", str(out), str(tmp_path / f"{name}.c"), *args], check=True, cwd=tmp_path)
    return out


@needs_cc
def test_a_shared_library_and_a_program_that_needs_it(tmp_path: Path) -> None:
    library = _compile(tmp_path, "libdemo.so.3", "int demo(void) { return 3; }\n", "-shared", "-fPIC",
                       "-Wl,-soname,libdemo.so.3")  # fmt: skip
    (tmp_path / "libdemo.so").symlink_to("libdemo.so.3")
    program = _compile(tmp_path, "prog", "int demo(void);\nint main(void) { return demo(); }\n", "-L.", "-ldemo", "-lm")
    lib_info = read_dynamic_file(library)
    assert lib_info is not None and lib_info.soname == "libdemo.so.3" and lib_info.is_dynamic
    prog_info = read_dynamic_file(program)
    assert prog_info is not None and prog_info.soname is None
    assert "libdemo.so.3" in prog_info.needed and "libc.so.6" in prog_info.needed


@needs_cc
def test_a_static_program_and_an_object_need_nothing(tmp_path: Path) -> None:
    static = tmp_path / "static"
    (tmp_path / "s.c").write_text("int main(void) { return 0; }\n")
    result = subprocess.run([CC or "cc", "-static", "-o", str(static), str(tmp_path / "s.c")], capture_output=True)
    if result.returncode != 0:
        pytest.skip("no static libc here")
    info = read_dynamic_file(static)
    assert info is not None and not info.is_dynamic and info.needed == ()
    subprocess.run([CC or "cc", "-c", "-o", str(tmp_path / "s.o"), str(tmp_path / "s.c")], check=True)
    obj = read_dynamic_file(tmp_path / "s.o")
    assert obj is not None and not obj.is_dynamic


def test_the_running_python_is_read() -> None:
    info = read_dynamic_file(Path(sys.executable).resolve())
    assert info is not None and info.is_dynamic
    assert any(name.startswith("libc.so") for name in info.needed) or any("python" in n for n in info.needed)


def test_not_elf_is_none_and_a_cut_elf_is_an_error(tmp_path: Path) -> None:
    assert read_dynamic(b"#!/bin/sh\necho hi\n") is None
    (tmp_path / "script").write_text("#!/bin/sh\n")
    assert read_dynamic_file(tmp_path / "script") is None
    with pytest.raises(ElfError):
        read_dynamic(b"\x7fELF\x02\x01\x01" + b"\0" * 9)
    whole = Path(sys.executable).resolve().read_bytes()
    with pytest.raises(ElfError):
        read_dynamic(whole[:200])  # the program headers are cut off
