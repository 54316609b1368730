"""The platform a binary is built for: part of every build key, because a binary only runs where it was made for."""

from __future__ import annotations

import platform as _stdlib_platform
from dataclasses import dataclass

_ARCH_ALIASES = {"amd64": "x86_64", "x86_64": "x86_64", "arm64": "aarch64", "aarch64": "aarch64"}


@dataclass(frozen=True, order=True)
class Platform:
    os: str
    arch: str
    libc: str

    def as_dict(self) -> dict[str, str]:
        return {"os": self.os, "arch": self.arch, "libc": self.libc}

    def __str__(self) -> str:
        return f"{self.os}-{self.arch}-{self.libc}"


def detect_platform() -> Platform:
    """This machine's platform; libc carries its version because a binary needs at least the glibc it was linked with."""
    machine = _stdlib_platform.machine().lower()
    arch = _ARCH_ALIASES.get(machine, machine)
    libc_name, libc_version = _stdlib_platform.libc_ver()
    libc = f"{libc_name or 'unknown'}{'.'.join(libc_version.split('.')[:2])}" if libc_version else "unknown"
    return Platform(os=_stdlib_platform.system().lower(), arch=arch, libc=libc)
