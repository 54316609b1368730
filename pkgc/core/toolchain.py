"""A build platform's toolchain definition: the Debian packages a hermetic build sees, the tools a recipe may name,
and the base libraries an artifact may need at run time.

It is data (`pkgc/core/toolchains/NAME.toml`), versioned, and its name and version are part of every build key: a
farm that changes what its builds can see must not hand out binaries built before the change as if they were new.
"""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pkgc.core.platform import Platform

DEFAULT_TOOLCHAIN = "debian-12"
# The tool each standard build system implies, beyond the toolchain.
# A generated recipe's system ("auto") is detected from the unpacked tree, after the build root is made: its root
# holds every standard system's tools (autoreconf for a tree without configure, cmake, meson).
SYSTEM_TOOLS: dict[str, tuple[str, ...]] = {
    "cmake": ("cmake",),
    "meson": ("meson",),
    "auto": ("autotools", "cmake", "meson"),
}


@dataclass(frozen=True)
class ToolchainDefinition:
    name: str
    version: int
    toolchain: tuple[str, ...]  # Debian packages every build sees
    tools: dict[str, tuple[str, ...]]  # tool name -> Debian packages
    base_sonames: frozenset[str]

    def identity(self) -> dict[str, Any]:
        """What of the definition goes into a build key."""
        return {"name": self.name, "version": self.version}


    def packages_for(self, tools: tuple[str, ...] | list[str], system: str) -> tuple[str, ...]:
        """The Debian packages a build with these recipe `tools` and build `system` sees (before their Depends):
        the toolchain's, the named tools' and the tool the build system implies."""
        names = {*tools, *SYSTEM_TOOLS.get(system, ())}
        unknown = sorted(names - set(self.tools))
        if unknown:
            raise ValueError(f"toolchain {self.name} has no tool {unknown[0]!r}")
        packages = dict.fromkeys(self.toolchain)
        for tool in sorted(names):
            packages.update(dict.fromkeys(self.tools[tool]))
        return tuple(packages)

    def all_packages(self) -> tuple[str, ...]:
        """Every Debian package the definition names: a worker's host must have them all installed."""
        packages = dict.fromkeys(self.toolchain)
        for tool in sorted(self.tools):
            packages.update(dict.fromkeys(self.tools[tool]))
        return tuple(packages)


def toolchain_for_platform(platform: Platform) -> ToolchainDefinition:
    """The toolchain a build platform's workers build with. Every platform the farm builds for today is a Debian 12
    machine (glibc 2.36); a farm with other build hosts maps their platforms to their own definitions here."""
    del platform  # one definition for now; the parameter is where the mapping goes
    return load_toolchain(DEFAULT_TOOLCHAIN)


@functools.cache
def load_toolchain(name: str = DEFAULT_TOOLCHAIN) -> ToolchainDefinition:
    """The definition `pkgc/core/toolchains/NAME.toml`, read once per process (it is package data)."""
    if not name.replace("-", "").isalnum():
        raise ValueError(f"invalid toolchain name {name!r}")
    text = resources.files("pkgc.core").joinpath("toolchains", f"{name}.toml").read_text(encoding="utf-8")
    data = tomllib.loads(text)
    return ToolchainDefinition(
        name=data["name"],
        version=int(data["version"]),
        toolchain=tuple(data["toolchain"]),
        tools={tool: tuple(packages) for tool, packages in data["tools"].items()},
        base_sonames=frozenset(data["base_libraries"]["sonames"]),
    )


TOOL_NAMES = frozenset(load_toolchain().tools)
