"""`pkgc downgrade NAME [VERSION]`: the given or the previous version, same options."""

from __future__ import annotations

from pathlib import Path

import typer

from pkgc.cli import AppContext
from pkgc.commands.upgrade import change_versions, render_change


def downgrade(
    ctx: typer.Context,
    package: str = typer.Argument(..., help="An installed package."),
    version: str | None = typer.Argument(None, help="The version to go back to (default: the previous one)."),
    prefix: Path | None = typer.Option(None, "--prefix", help="Work on this prefix instead of the configured one."),
    no_wait: bool = typer.Option(False, "--no-wait", help="Fail at once if another pkgc is changing the prefix."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Go back to an older version of a package, built with the same options."""
    from pkgc.client.lock import prefix_lock

    app: AppContext = ctx.obj
    if prefix is not None:
        app.prefix_override = prefix
    with change_versions(app, quiet=as_json) as use_case, prefix_lock(app.prefix, wait=not no_wait):
        result = use_case.downgrade(package, version)
    render_change(result, as_json)
