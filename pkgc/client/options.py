"""Which options a request gets, from the user's option levels.

The order, lowest first: the recipe's defaults (filled in by the farm), `[options]` in the config, the config's
`[packages.NAME.options]`, then `--opt` on the command line. `[options]` and `--opt` speak for the whole request,
so a package's dependencies are built with their global options (opt, cpu, debug, lto) too: a user who asks for
-O3 on x86-64-v3 wants the libraries that way. `[packages.NAME.options]` speaks for NAME only: its dependencies do
not inherit it (and it does not apply to NAME when NAME is only pulled in as another package's dependency).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field

from pkgc.client.settings import Settings
from pkgc.core.options import GLOBAL_OPTION_NAMES
from pkgc.core.record import record


@record
class OptionLevels:
    """The user's option levels above the recipe's defaults, lowest first."""

    configured: Mapping[str, str] = field(default_factory=dict)  # [options]
    per_package: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # [packages.NAME.options]
    command_line: Mapping[str, str] = field(default_factory=dict)  # --opt

    @classmethod
    def of(cls, settings: Settings, command_line: Mapping[str, str]) -> OptionLevels:
        return cls(settings.options, settings.package_options, command_line)

    def for_package(self, name: str) -> dict[str, str | bool]:
        """The options asked for NAME itself: each level overrides the ones below it."""
        return {**self.configured, **self.per_package.get(name, {}), **self.command_line}

    def for_dependencies(self) -> dict[str, str | bool]:
        """The global options NAME's dependencies are built with: the request's, without NAME's own level."""
        merged = {**self.configured, **self.command_line}
        return {key: value for key, value in merged.items() if key in GLOBAL_OPTION_NAMES}


def requested_options(settings: Settings, name: str, command_line: Mapping[str, str]) -> dict[str, str | bool]:
    """The options a request for NAME carries (the farm fills in the recipe's defaults for the rest)."""
    return OptionLevels.of(settings, command_line).for_package(name)
