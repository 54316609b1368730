"""`pkgc info NAME`: versions, options, dependencies, builds on the farm, what is installed."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from pkgc.cli import AppContext, console, warn


def info(
    ctx: typer.Context,
    package: str = typer.Argument(..., help="A package name."),
    prefix: Path | None = typer.Option(None, "--prefix", help="Say what is installed in this prefix."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Show a package's versions, options with their defaults, dependencies, builds and installed state."""
    from pkgc.client.catalog import describe_package

    app: AppContext = ctx.obj
    if prefix is not None:
        app.prefix_override = prefix
    settings = app.settings
    result = describe_package(
        app.farm,
        app.catalog(),
        app.reading_store(),
        package,
        source=settings.farm,
        max_age=settings.catalog_max_age,
    )
    if result.warning:
        warn(result.warning)
    details = result.details
    if as_json:
        print(json.dumps(details))
        return
    out = console()
    if result.offline:
        installed = details["installed"]
        for line in (
            f"{details['name']}: {details['summary']}",
            f"latest version: {details['latest']} (from the local catalog)",
            f"installed: {installed['version']} ({app.prefix})" if installed else "installed: no",
        ):
            out.print(line, markup=False)
        return
    lines = [
        f"{details['name']}: {details['summary']}",
        f"homepage: {details['homepage']}   license: {details['license']}",
        "recipe: generated from the Debian source catalog (no one has curated it)"
        if details.get("origin") == "generated"
        else "recipe: curated",
        f"versions: {', '.join(details['versions'])}",
        "options: "
        + "; ".join(
            f"{o['name']} (default {o['default']}; {'/'.join(o['values'])})"
            for o in details["variants"] + details["global_options"]
        ),
        f"depends on: {', '.join(details['runtime_dependencies']) or 'nothing'}"
        + (f"; builds with: {', '.join(details['build_dependencies'])}" if details["build_dependencies"] else ""),
        f"builds on the farm: {len(details['builds'])}",
    ]
    for build in details["builds"][:10]:
        options = ",".join(f"{k}={v}" for k, v in sorted(build["options"].items()))
        lines.append(f"  {build['version']} {build['status']} [{options}]")
    installed = details["installed"]
    lines.append(f"installed: {installed['version']} ({app.prefix})" if installed else "installed: no")
    for line in lines:
        out.print(line, markup=False)
