"""A build platform's toolchain definition: the Debian packages a hermetic build sees, the tools a recipe may name,
and the base libraries an artifact may need at run time.

It is data (`pkgc/core/toolchains/NAME.toml`), versioned, and its name and version are part of every build key: a
farm that changes what its builds can see must not hand out binaries built before the change as if they were new.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Any

DEFAULT_TOOLCHAIN = "debian-12"
# The tool each standard build system implies, beyond the toolchain.
SYSTEM_TOOLS: dict[str, tuple[str, ...]] = {"cmake": ("cmake",), "meson": ("meson",)}


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


def load_toolchain(name: str = DEFAULT_TOOLCHAIN) -> ToolchainDefinition:
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
