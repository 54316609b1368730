"""The platform a binary is built for: part of every build key, because a binary only runs where it was made for.

A platform is an operating system, an architecture, a C library family and that library's version, each its own
field: a binary linked against glibc 2.31 runs on glibc 2.36 but not the other way round, so the version must be
comparable, not part of a name. The CPU levels a machine can run (x86-64-v3, ...) are not part of the platform: they
are values of the `cpu` build option, which the key already holds; a client states them next to its platform so the
farm never hands it a build its processor cannot execute.

The platform's string form (`linux-x86_64-glibc-2.36`) names a farm's queue and travels over the network, so `parse`
validates every field and `str` / `parse` round-trip exactly.
"""

from __future__ import annotations

import platform as _stdlib_platform
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from pkgc.core.errors import UsageError
from pkgc.core.options import CPU_TARGETS
from pkgc.core.record import record

_ARCH_ALIASES = {"amd64": "x86_64", "x86_64": "x86_64", "arm64": "aarch64", "aarch64": "aarch64"}

_OS = re.compile(r"[a-z][a-z0-9]{0,15}")
_ARCH = re.compile(r"[a-z0-9][a-z0-9_]{0,15}")
_LIBC = re.compile(r"[a-z][a-z0-9]{0,15}")
_LIBC_VERSION = re.compile(r"(0|[1-9][0-9]{0,3})(\.(0|[1-9][0-9]{0,3})){0,2}")
MAX_PLATFORM_LENGTH = 64
PLATFORM_FIELDS = ("os", "arch", "libc", "libc_version")

# x86-64 micro-architecture levels (the psABI's, as glibc-hwcaps uses them), each with the /proc/cpuinfo flags it
# needs beyond the level below. Linux spells SSE3 "pni" and LZCNT "abm"; it hides AVX flags when the kernel does
# not save the AVX state (XSAVE), so their presence means usable.
_X86_64_LEVELS: tuple[tuple[str, frozenset[str]], ...] = (
    ("x86-64", frozenset({"cmov", "cx8", "fpu", "fxsr", "mmx", "syscall", "sse", "sse2"})),
    ("x86-64-v2", frozenset({"cx16", "lahf_lm", "popcnt", "pni", "sse4_1", "sse4_2", "ssse3"})),
    ("x86-64-v3", frozenset({"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"})),
    ("x86-64-v4", frozenset({"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"})),
)


def _check(value: str, pattern: re.Pattern[str], what: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        shown = repr(value)[:40]
        raise UsageError(f"invalid platform {what} {shown}", hint="a platform is like linux-x86_64-glibc-2.36")
    return value


def libc_version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


@record(order=True)
class Platform:
    """os, architecture, C library family and version; construction validates every field."""

    os: str
    arch: str
    libc: str
    libc_version: str

    def __post_init__(self) -> None:
        _check(self.os, _OS, "os")
        _check(self.arch, _ARCH, "architecture")
        _check(self.libc, _LIBC, "libc")
        _check(self.libc_version, _LIBC_VERSION, "libc version")

    def as_dict(self) -> dict[str, str]:
        """The form hashed into build keys and written into artifact manifests (KEY_SCHEMA changes with it)."""
        return {"os": self.os, "arch": self.arch, "libc": self.libc, "libc_version": self.libc_version}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Platform:
        """A platform from a manifest or a job payload: exactly the four fields, each a valid string."""
        if not isinstance(data, Mapping) or sorted(data) != sorted(PLATFORM_FIELDS):
            raise UsageError(f"invalid platform {str(data)[:120]!r}", hint=f"fields: {', '.join(PLATFORM_FIELDS)}")
        values = {name: data[name] for name in PLATFORM_FIELDS}
        if not all(isinstance(v, str) for v in values.values()):
            raise UsageError(f"invalid platform {str(data)[:120]!r}", hint="every field is a string")
        return cls(**values)  # type: ignore[arg-type]

    @classmethod
    def parse(cls, text: str) -> Platform:
        """The inverse of `str`: `linux-x86_64-glibc-2.36`."""
        if not isinstance(text, str) or len(text) > MAX_PLATFORM_LENGTH:
            raise UsageError(f"invalid platform {str(text)[:80]!r}", hint="a platform is like linux-x86_64-glibc-2.36")
        parts = text.split("-")
        if len(parts) != 4:
            raise UsageError(f"invalid platform {text!r}", hint="a platform is like linux-x86_64-glibc-2.36")
        return cls(*parts)

    def __str__(self) -> str:
        return f"{self.os}-{self.arch}-{self.libc}-{self.libc_version}"

    @property
    def libc_tuple(self) -> tuple[int, ...]:
        return libc_version_tuple(self.libc_version)

    def can_run(self, build: Platform) -> bool:
        """Whether a binary built on `build` runs here: same os, architecture and C library, and a C library at
        least as new as the one it was linked against (glibc and musl keep old symbols working, not new ones)."""
        return (self.os, self.arch, self.libc) == (
            build.os,
            build.arch,
            build.libc,
        ) and build.libc_tuple <= self.libc_tuple


def choose_build_platform(client: Platform, served: Iterable[Platform]) -> Platform | None:
    """The newest served build platform whose binaries run on `client`, or None: newest, because a build linked
    against a newer C library may use what the older lacks, and the client runs it."""
    runnable = [p for p in served if client.can_run(p)]
    return max(runnable, key=lambda p: p.libc_tuple) if runnable else None


def parse_platforms(text: str) -> tuple[Platform, ...]:
    """A configured list of build platforms, comma-separated (`linux-x86_64-glibc-2.36,linux-aarch64-glibc-2.36`)."""
    found = tuple(dict.fromkeys(Platform.parse(part.strip()) for part in text.split(",") if part.strip()))
    if not found:
        raise UsageError("no build platform configured", hint="for example linux-x86_64-glibc-2.36")
    return found


def _detect_libc(arch: str) -> tuple[str, str]:
    name, version = _stdlib_platform.libc_ver()
    if name == "glibc" and version:
        return "glibc", ".".join(version.split(".")[:2])
    # musl has no libc_ver() answer; its dynamic loader is the C library, named after the architecture.
    if Path(f"/lib/ld-musl-{arch}.so.1").exists():
        return "musl", _musl_version(arch)
    return "unknown", "0"


def _musl_version(arch: str) -> str:
    """musl's version as its loader prints it ("Version 1.2.4" on stderr when run with no arguments)."""
    import subprocess

    try:
        done = subprocess.run([f"/lib/ld-musl-{arch}.so.1"], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return "0"
    found = re.search(r"Version (\d+\.\d+(?:\.\d+)?)", done.stderr)
    return found.group(1) if found else "0"


def detect_platform() -> Platform:
    """This machine's platform: what a client states in every resolve and what the embedded farm builds for."""
    machine = _stdlib_platform.machine().lower()
    arch = _ARCH_ALIASES.get(machine, machine)
    libc, version = _detect_libc(arch)
    return Platform(os=_stdlib_platform.system().lower() or "unknown", arch=arch, libc=libc, libc_version=version)


def cpu_levels_from_flags(arch: str, flags: Iterable[str]) -> tuple[str, ...]:
    """The `cpu` option values a processor with these /proc/cpuinfo flags can run, lowest first.

    x86-64: each psABI level whose flags (and every lower level's) are all present. aarch64: its baseline only,
    armv8-a; the later profiles are bundles of optional features that cpuinfo does not name one to one, and a
    wrong "yes" means SIGILL, so this machine states only what every aarch64 processor runs.
    """
    if arch == "x86_64":
        present = set(flags)
        levels: list[str] = []
        for level, needed in _X86_64_LEVELS:
            if not needed <= present:
                break
            levels.append(level)
        return tuple(levels) or ("x86-64",)  # every x86_64 processor runs the baseline, whatever cpuinfo says
    baseline = CPU_TARGETS.get(arch)
    return (baseline[0],) if baseline else ()


def detect_cpu_levels(arch: str | None = None, cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str, ...]:
    """The CPU levels this machine can run, from the first processor's flags in /proc/cpuinfo."""
    arch = arch or detect_platform().arch
    flags: list[str] = []
    try:
        with cpuinfo.open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                label, _, value = line.partition(":")
                if label.strip() in ("flags", "Features"):
                    flags = value.split()
                    break
    except OSError:
        pass
    return cpu_levels_from_flags(arch, flags)
