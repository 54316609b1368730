"""`pkgc search TERM`: offline, on the catalog copy that `pkgc update` keeps."""

from __future__ import annotations

import json

import typer

from pkgc.cli import AppContext


def search(
    ctx: typer.Context,
    term: str = typer.Argument(..., help="A name or words of a summary."),
    limit: int = typer.Option(50, "--limit", min=1, max=100000, help="At most this many results."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Search package names and summaries: exact name first, then name prefix, then summary words."""
    from pkgc.client.catalog import search_catalog

    app: AppContext = ctx.obj
    found = search_catalog(app.catalog(), term, limit)
    if as_json:
        print(json.dumps([entry.__dict__ for entry in found]))
        return
    # Plain print: results can be many, and rich's rendering would cost more than the search.
    print("\n".join(f"{entry.name} {entry.latest} - {entry.summary}" for entry in found))
