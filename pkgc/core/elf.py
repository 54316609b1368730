"""Reading an ELF file's dynamic section: the libraries it needs (DT_NEEDED), its own soname (DT_SONAME) and where
it looks for them (DT_RUNPATH, DT_RPATH).

The worker checks every ELF file of an artifact after packing: each library it needs must come from the artifact,
its runtime dependencies or the build platform's base libraries, or the binary would only run where the build
host's libraries happen to be. The project has no ELF library, and this needs only the program headers and the
dynamic section, so it is read here with `struct`: PT_DYNAMIC gives the dynamic entries, DT_STRTAB's address is
turned into a file offset through the PT_LOAD segments (section headers may be stripped; the loader ignores them).

A file that is not ELF gives None; a file that starts like ELF but is cut short or inconsistent raises ElfError.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

ELF_MAGIC = b"\x7fELF"
_PT_LOAD, _PT_DYNAMIC = 1, 2
_DT_NULL, _DT_NEEDED, _DT_STRTAB, _DT_STRSZ, _DT_SONAME, _DT_RPATH, _DT_RUNPATH = 0, 1, 5, 10, 14, 15, 29
_MAX_DYNAMIC_ENTRIES = 1 << 16


class ElfError(ValueError):
    """The file says it is ELF but its headers cannot be read."""


@dataclass(frozen=True)
class DynamicInfo:
    needed: tuple[str, ...]
    soname: str | None
    is_dynamic: bool  # False: a static executable or an object file (nothing to check)
    search_path: tuple[str, ...] = ()  # the DT_RUNPATH and DT_RPATH entries, in order


def _read_string(table: bytes, offset: int) -> str:
    if offset < 0 or offset >= len(table):
        raise ElfError(f"string offset {offset} is outside the string table")
    end = table.find(b"\0", offset)
    return table[offset : end if end != -1 else len(table)].decode("utf-8", errors="replace")


def read_dynamic(data: bytes) -> DynamicInfo | None:
    """The dynamic entries of the ELF image `data`; None when `data` is not ELF."""
    if not data.startswith(ELF_MAGIC):
        return None
    if len(data) < 52:
        raise ElfError("truncated ELF header")
    elf_class, encoding = data[4], data[5]
    if elf_class not in (1, 2) or encoding not in (1, 2):
        raise ElfError(f"unknown ELF class {elf_class} or data encoding {encoding}")
    end = "<" if encoding == 1 else ">"
    wide = elf_class == 2
    try:
        if wide:
            phoff, = struct.unpack_from(end + "Q", data, 0x20)
            phentsize, phnum = struct.unpack_from(end + "HH", data, 0x36)
        else:
            phoff, = struct.unpack_from(end + "I", data, 0x1C)
            phentsize, phnum = struct.unpack_from(end + "HH", data, 0x2A)
        loads: list[tuple[int, int, int]] = []  # (vaddr, file offset, file size)
        dynamic: tuple[int, int] | None = None
        for index in range(phnum):
            base = phoff + index * phentsize
            if wide:
                p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz = struct.unpack_from(end + "IIQQQQ", data, base)
            else:
                p_type, p_offset, p_vaddr, _paddr, p_filesz = struct.unpack_from(end + "IIIII", data, base)
            if p_type == _PT_LOAD:
                loads.append((p_vaddr, p_offset, p_filesz))
            elif p_type == _PT_DYNAMIC:
                dynamic = (p_offset, p_filesz)
        if dynamic is None:
            return DynamicInfo((), None, False)
        entry_size = 16 if wide else 8
        entry_format = end + ("qQ" if wide else "iI")
        offset, size = dynamic
        entries: list[tuple[int, int]] = []
        for index in range(min(size // entry_size, _MAX_DYNAMIC_ENTRIES)):
            tag, value = struct.unpack_from(entry_format, data, offset + index * entry_size)
            if tag == _DT_NULL:
                break
            entries.append((tag, value))
    except struct.error as exc:
        raise ElfError(f"truncated ELF headers: {exc}") from None
    strtab_addr = next((v for t, v in entries if t == _DT_STRTAB), None)
    strsz = next((v for t, v in entries if t == _DT_STRSZ), None)
    if strtab_addr is None or strsz is None:
        raise ElfError("dynamic section without a string table")
    strtab_offset = next((off + strtab_addr - va for va, off, fsz in loads if va <= strtab_addr < va + fsz), None)
    if strtab_offset is None:
        raise ElfError("the dynamic string table is outside every loaded segment")
    table = data[strtab_offset : strtab_offset + strsz]
    needed = tuple(_read_string(table, v) for t, v in entries if t == _DT_NEEDED)
    soname_offset = next((v for t, v in entries if t == _DT_SONAME), None)
    soname = _read_string(table, soname_offset) if soname_offset is not None else None
    search_path = tuple(
        entry
        for t, v in entries
        if t in (_DT_RUNPATH, _DT_RPATH)
        for entry in _read_string(table, v).split(":")
        if entry
    )
    return DynamicInfo(needed, soname, True, search_path)


def read_dynamic_file(path: Path) -> DynamicInfo | None:
    """`read_dynamic` of a file, reading only its first four bytes when it is not ELF."""
    with path.open("rb") as handle:
        if handle.read(4) != ELF_MAGIC:
            return None
        handle.seek(0)
        return read_dynamic(handle.read())
