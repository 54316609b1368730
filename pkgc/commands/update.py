"""`pkgc update`: sync the catalog from the farm (only when it changed)."""

from __future__ import annotations

import json

import typer

from pkgc.cli import AppContext, console


def update(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print the result as JSON.")) -> None:
    """Download the farm's catalog for offline search; nothing is downloaded when it has not changed."""
    from pkgc.client.catalog import update_catalog

    app: AppContext = ctx.obj
    result = update_catalog(app.farm(), app.catalog(), app.settings.farm)
    if as_json:
        print(json.dumps(result.__dict__))
        return
    state = "updated" if result.changed else "already up to date"
    console().print(f"catalog {state}: {result.packages} packages")
