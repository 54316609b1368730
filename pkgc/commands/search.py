"""`pkgc search TERM`: on the local catalog copy, synced first when it is missing or older than catalog_max_age."""

from __future__ import annotations

import json

import typer

from pkgc.cli import AppContext, warn


def search(
    ctx: typer.Context,
    term: str = typer.Argument(..., help="A name or words of a summary."),
    limit: int = typer.Option(50, "--limit", min=1, max=100000, help="At most this many results."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Search package names and summaries: exact name, then name prefix, then name substring, then summary words.

    With --json, a JSON array of {name, summary, latest} (best first). Nothing found: exit 3, one line on stderr
    saying so (and whether the farm's Debian catalog is still loading or how to load it); --json prints [] too."""
    from pkgc.client.catalog import check_term, no_match, search_catalog, sync_if_stale

    app: AppContext = ctx.obj
    check_term(term)
    cache = app.catalog()
    freshness = sync_if_stale(app.farm, cache, app.settings.farm, app.settings.catalog_max_age)
    if freshness.warning:
        warn(freshness.warning)
    found = search_catalog(cache, term, limit)
    if as_json:
        print(json.dumps([entry.__dict__ for entry in found]))
    elif found:
        # Plain print: results can be many, and rich's rendering would cost more than the search.
        print("\n".join(f"{entry.name} {entry.latest} - {entry.summary}" for entry in found))
    if not found:
        raise no_match(term, cache)
