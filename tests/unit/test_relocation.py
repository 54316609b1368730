"""Prefix relocation of text files and binaries (pkgc.core.relocation), including a real ELF executable."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pkgc.core.errors import UsageError
from pkgc.core.relocation import (
    PLACEHOLDER,
    PLACEHOLDER_BYTES,
    PLACEHOLDER_COMPONENT,
    check_prefix_fits,
    kind_of,
    relocate,
    relocate_binary,
    relocate_text,
)

P = PLACEHOLDER_BYTES


def test_placeholder_shape() -> None:
    assert PLACEHOLDER.startswith("/")
    assert len(PLACEHOLDER_BYTES) >= 255
    assert all(len(part) < 255 for part in PLACEHOLDER.split("/"))
    assert PLACEHOLDER_COMPONENT in PLACEHOLDER


# --- check_prefix_fits ----------------------------------------------------------------------------


def test_prefix_exactly_as_long_as_placeholder_fits() -> None:
    prefix = "/" + "p" * (len(PLACEHOLDER_BYTES) - 1)
    assert len(prefix.encode()) == len(PLACEHOLDER_BYTES)
    check_prefix_fits(prefix)


def test_prefix_one_byte_longer_is_refused() -> None:
    prefix = "/" + "p" * len(PLACEHOLDER_BYTES)
    with pytest.raises(UsageError) as info:
        check_prefix_fits(prefix)
    assert str(len(PLACEHOLDER_BYTES)) in str(info.value)


def test_prefix_length_counts_bytes_not_characters() -> None:
    # 137 two-byte characters: fewer characters than the placeholder, more bytes.
    prefix = "/" + "é" * 137
    assert len(prefix) < len(PLACEHOLDER) < len(prefix.encode())
    with pytest.raises(UsageError):
        check_prefix_fits(prefix)


@pytest.mark.parametrize("prefix", ["relative/path", "", "./opt", "~/pkgc"])
def test_relative_prefix_is_refused(prefix: str) -> None:
    with pytest.raises(UsageError, match="absolute"):
        check_prefix_fits(prefix)


def test_prefix_containing_placeholder_is_refused() -> None:
    with pytest.raises(UsageError, match="placeholder"):
        check_prefix_fits(f"/opt/{PLACEHOLDER_COMPONENT}")


@pytest.mark.parametrize("prefix", ["/", "/opt/pkgc", "/home/user/.local/pkgc"])
def test_ordinary_prefixes_fit(prefix: str) -> None:
    check_prefix_fits(prefix)


# --- kind_of --------------------------------------------------------------------------------------


def test_kind_of() -> None:
    assert kind_of(b"") is None
    assert kind_of(b"no placeholder here\0\1\2") is None
    assert kind_of(P[:-1]) is None
    assert kind_of(b"prefix=" + P + b"\n") == "text"
    assert kind_of(b"\x7fELF\0\0" + P + b"/lib\0") == "binary"
    assert kind_of(P + b"\0") == "binary"


# --- relocate_text --------------------------------------------------------------------------------


def test_relocate_text_changes_length_freely() -> None:
    data = b"prefix=" + P + b"\nlibdir=" + P + b"/lib\n"
    out = relocate_text(data, "/opt/x")
    assert out == b"prefix=/opt/x\nlibdir=/opt/x/lib\n"
    assert len(out) < len(data)
    assert relocate(data, "text", "/opt/x") == out


def test_relocate_text_without_placeholder_is_identity() -> None:
    data = b"#!/bin/sh\necho hi\n"
    assert relocate_text(data, "/opt/x") == data


# --- relocate_binary ------------------------------------------------------------------------------


def test_relocate_binary_keeps_length_and_pads_with_nul() -> None:
    before, after = b"\x7fELF\x01\x02garbage\0", b"\0\xff\xfetrailer"
    data = before + P + b"/share/locale" + after
    out = relocate_binary(data, "/opt/x")
    assert len(out) == len(data)
    assert out.startswith(before)
    assert out.endswith(after)
    middle = out[len(before) : len(out) - len(after)]
    assert middle == b"/opt/x/share/locale" + b"\0" * (len(P) - len(b"/opt/x"))
    assert relocate(data, "binary", "/opt/x") == out


def test_relocate_binary_replaces_every_occurrence_in_one_string() -> None:
    string = P + b"/lib:" + P + b"/lib64"
    before, after = b"AAAA\0", b"\0BBBB"
    data = before + string + after
    out = relocate_binary(data, "/p")
    assert len(out) == len(data)
    assert out[: len(before)] == before
    assert out[len(out) - len(after) :] == after
    rewritten = out[len(before) : len(before) + len(string)]
    assert rewritten.split(b"\0", 1)[0] == b"/p/lib:/p/lib64"
    assert rewritten == b"/p/lib:/p/lib64" + b"\0" * (len(string) - len(b"/p/lib:/p/lib64"))
    assert P not in out


def test_relocate_binary_several_strings() -> None:
    data = b"\0" + P + b"/a\0xyz\0" + P + b"/b\0"
    out = relocate_binary(data, "/q")
    assert len(out) == len(data)
    assert out.split(b"\0") == [b"", b"/q/a"] + [b""] * (len(P) - 2) + [b"xyz", b"/q/b"] + [b""] * (len(P) - 2) + [b""]


def test_relocate_binary_placeholder_at_end_without_nul() -> None:
    data = b"head\0" + P
    out = relocate_binary(data, "/r")
    assert out == b"head\0/r" + b"\0" * (len(P) - 2)


def test_relocate_binary_into_equal_length_prefix() -> None:
    prefix = "/" + "z" * (len(P) - 1)
    data = b"x\0" + P + b"/lib\0y"
    assert relocate_binary(data, prefix) == b"x\0" + prefix.encode() + b"/lib\0y"


def test_relocate_binary_refuses_longer_prefix() -> None:
    with pytest.raises(UsageError):
        relocate_binary(b"\0" + P + b"\0", "/" + "z" * len(P))


def test_relocate_binary_without_placeholder_is_identity() -> None:
    data = bytes(range(256)) * 4
    assert relocate_binary(data, "/opt/x") == data


def test_relocate_unknown_kind() -> None:
    with pytest.raises(ValueError):
        relocate(b"", "elf", "/opt/x")


# --- a real ELF binary ----------------------------------------------------------------------------

C_SOURCE = r"""
#include <stdio.h>
const char *d = PREFIX "/share/data";
int main(void) {
    puts(d);
    return 0;
}
"""


@pytest.fixture(scope="module")
def placeholder_binary(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    gcc = shutil.which("gcc")
    assert gcc is not None, "gcc is needed for the ELF relocation test"
    work = tmp_path_factory.mktemp("elf")
    source = work / "prog.c"
    source.write_text(C_SOURCE)
    binary = work / "prog"
    subprocess.run(
        [
            gcc,
            "-O0",
            f'-DPREFIX="{PLACEHOLDER}"',
            f"-Wl,-rpath,{PLACEHOLDER}/lib",
            "-Wl,--enable-new-dtags",
            "-o",
            str(binary),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return binary.read_bytes()


def test_compiled_binary_holds_placeholder(placeholder_binary: bytes) -> None:
    assert placeholder_binary.startswith(b"\x7fELF")
    assert kind_of(placeholder_binary) == "binary"
    assert placeholder_binary.count(P + b"/share/data\0") == 1
    assert placeholder_binary.count(P + b"/lib\0") == 1


def test_relocated_elf_runs_and_has_relocated_runpath(placeholder_binary: bytes, tmp_path: Path) -> None:
    prefix = str(tmp_path / "prefix")
    check_prefix_fits(prefix)
    relocated = relocate_binary(placeholder_binary, prefix)
    assert len(relocated) == len(placeholder_binary)
    assert P not in relocated
    program = tmp_path / "prog"
    program.write_bytes(relocated)
    os.chmod(program, 0o755)

    result = subprocess.run([str(program)], capture_output=True, text=True, check=True, timeout=30)
    assert result.stdout == f"{prefix}/share/data\n"

    readelf = shutil.which("readelf")
    assert readelf is not None
    dynamic = subprocess.run([readelf, "-d", str(program)], capture_output=True, text=True, check=True).stdout
    runpath_lines = [line for line in dynamic.splitlines() if "(RUNPATH)" in line]
    assert len(runpath_lines) == 1, dynamic
    assert f"[{prefix}/lib]" in runpath_lines[0]
    assert PLACEHOLDER_COMPONENT not in dynamic


def test_placeholder_binary_runs_before_relocation(placeholder_binary: bytes, tmp_path: Path) -> None:
    program = tmp_path / "prog"
    program.write_bytes(placeholder_binary)
    os.chmod(program, 0o755)
    result = subprocess.run([str(program)], capture_output=True, text=True, check=True, timeout=30)
    assert result.stdout == f"{PLACEHOLDER}/share/data\n"
