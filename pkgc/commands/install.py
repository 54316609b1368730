"""`pkgc install NAME[@VERSION] ... [--opt KEY=VALUE ...] [--prefix DIR] --wait`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from pkgc.cli import AppContext, console
from pkgc.core.options import parse_option_assignments
from pkgc.core.protocol import BuildInfo, BuildStatus


class ConsoleReporter:
    """Live build status on a terminal; one plain line per change when output is not a terminal."""

    def __init__(self, quiet: bool) -> None:
        self.err = console(stderr=True)
        self.quiet = quiet
        self.started = time.monotonic()
        self.last: dict[str, BuildStatus] = {}

    def builds_changed(self, builds: list[BuildInfo]) -> None:
        if self.quiet:
            return
        for build in builds:
            if self.last.get(build.key) != build.status:
                self.last[build.key] = build.status
                elapsed = time.monotonic() - self.started
                self.err.print(f"  {build.name}@{build.version}: {build.status.value} ({elapsed:.0f}s)")

    def download_progress(self, name: str, done: int, total: int) -> None:
        pass

    def installed(self, name: str, version: str) -> None:
        if not self.quiet:
            self.err.print(f"  installed {name} {version}")


def install(
    ctx: typer.Context,
    packages: list[str] = typer.Argument(..., help="NAME or NAME@VERSION, one or more."),
    opt: list[str] = typer.Option([], "--opt", "-o", help="Build option KEY=VALUE, e.g. opt=O3, cpu=x86-64-v3."),
    prefix: Path | None = typer.Option(
        None, "--prefix", help="Install into this prefix instead of the configured one."
    ),
    wait: bool = typer.Option(True, "--wait", help="Wait for builds in progress, then install (the default)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Install packages built with your options; builds that do not exist yet are compiled on the farm."""
    from pkgc.client.install import InstallPackages

    app: AppContext = ctx.obj
    if prefix is not None:
        app.prefix_override = prefix
    options = {**app.settings.options, **parse_option_assignments(opt)}
    use_case = InstallPackages(
        farm=app.farm(), store=app.store(), cache_dir=app.cache_dir, reporter=ConsoleReporter(quiet=as_json)
    )
    result = use_case(packages, options)
    if as_json:
        print(
            json.dumps(
                {
                    "prefix": result.prefix,
                    "seconds": round(result.seconds, 3),
                    "packages": [item.__dict__ for item in result.items],
                }
            )
        )
        return
    out = console()
    for item in result.items:
        out.print(f"{item.name} {item.version}: {item.action}")
    out.print(f"prefix: {result.prefix} ({result.seconds:.1f}s)")
