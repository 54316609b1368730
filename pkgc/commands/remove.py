"""`pkgc remove NAME ... [--cascade]`."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from pkgc.cli import AppContext, console


def remove(
    ctx: typer.Context,
    packages: list[str] = typer.Argument(..., help="Installed packages to remove."),
    cascade: bool = typer.Option(False, "--cascade", help="Also remove the installed packages that need them."),
    prefix: Path | None = typer.Option(None, "--prefix", help="Remove from this prefix instead of the configured one."),
    no_wait: bool = typer.Option(False, "--no-wait", help="Fail at once if another pkgc is changing the prefix."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Remove packages: exactly the files they own, and the directories that become empty."""
    from pkgc.client.lock import prefix_lock
    from pkgc.client.remove import remove_packages

    app: AppContext = ctx.obj
    if prefix is not None:
        app.prefix_override = prefix
    store = app.store()
    with prefix_lock(store.prefix, wait=not no_wait):
        result = remove_packages(store, packages, cascade=cascade)
    if as_json:
        print(json.dumps({"prefix": result.prefix, "removed": [item.__dict__ for item in result.removed]}))
        return
    out = console()
    for item in result.removed:
        out.print(f"removed {item.name} {item.version} ({item.files} files)")
