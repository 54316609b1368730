"""`pkgc autoremove [--dry-run]`: remove the packages installed as dependencies that nothing needs any more."""

from __future__ import annotations

from pathlib import Path

import typer

from pkgc.cli import AppContext, console
from pkgc.commands.remove import render_removal


def autoremove(
    ctx: typer.Context,
    dry_run: bool = typer.Option(False, "--dry-run", help="Only say what would be removed."),
    prefix: Path | None = typer.Option(None, "--prefix", help="Work on this prefix instead of the configured one."),
    no_wait: bool = typer.Option(False, "--no-wait", help="Fail at once if another pkgc is changing the prefix."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Remove every package that came in as a dependency and that no package you asked for needs any more."""
    from pkgc.client.lock import prefix_lock
    from pkgc.client.remove import autoremove as remove_unused

    app: AppContext = ctx.obj
    if prefix is not None:
        app.prefix_override = prefix
    store = app.store()
    with prefix_lock(store.prefix, wait=not no_wait):
        result = remove_unused(store, dry_run=dry_run)
    if not result.removed and not as_json:
        console().print("autoremove: nothing to do")
        return
    render_removal(result, as_json, dry_run=dry_run)
