"""`pkgc outdated`: what `upgrade --all` would change, from the catalog (synced first when it is stale)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from pkgc.cli import AppContext, console, warn


def outdated(
    ctx: typer.Context,
    prefix: Path | None = typer.Option(None, "--prefix", help="Look at this prefix instead of the configured one."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """List installed packages that have a newer version on the farm (pinned ones are marked)."""
    from pkgc.client.catalog import find_outdated

    app: AppContext = ctx.obj
    if prefix is not None:
        app.prefix_override = prefix
    settings = app.settings
    result = find_outdated(
        app.farm,
        app.catalog(),
        app.reading_store(),
        settings.pins,
        source=settings.farm,
        max_age=settings.catalog_max_age,
    )
    if result.warning:
        warn(result.warning)
    if as_json:
        print(json.dumps([item.__dict__ for item in result.packages]))
        return
    out = console()
    if not result.packages:
        out.print("everything is up to date")
    for item in result.packages:
        pinned = f" (pinned at {item.pinned})" if item.pinned else ""
        out.print(f"{item.name} {item.installed} -> {item.newest}{pinned}", markup=False)
