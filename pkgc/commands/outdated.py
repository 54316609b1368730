"""`pkgc outdated`: what `upgrade --all` would change."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from pkgc.cli import AppContext, console


def outdated(
    ctx: typer.Context,
    prefix: Path | None = typer.Option(None, "--prefix", help="Look at this prefix instead of the configured one."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """List installed packages that have a newer version on the farm (pinned ones are marked)."""
    from pkgc.client.change import find_outdated

    app: AppContext = ctx.obj
    if prefix is not None:
        app.prefix_override = prefix
    found = find_outdated(app.farm(), app.reading_store(), app.settings.pins)
    if as_json:
        print(json.dumps([item.__dict__ for item in found]))
        return
    out = console()
    if not found:
        out.print("everything is up to date")
    for item in found:
        pinned = f" (pinned at {item.pinned})" if item.pinned else ""
        out.print(f"{item.name} {item.installed} -> {item.newest}{pinned}", markup=False)
