"""`pkgc remove NAME ... [--cascade]`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from pkgc.cli import AppContext, console

if TYPE_CHECKING:
    from pkgc.client.remove import RemoveResult


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
    render_removal(result, as_json)


def render_removal(result: RemoveResult, as_json: bool, *, dry_run: bool = False) -> None:
    """What remove and autoremove print: one line per package, then the packages nothing needs any more."""
    if as_json:
        print(
            json.dumps(
                {
                    "prefix": result.prefix,
                    "removed": [item.__dict__ for item in result.removed],
                    "no_longer_needed": result.no_longer_needed,
                    **({"dry_run": True} if dry_run else {}),
                }
            )
        )
        return
    out = console()
    verb = "would remove" if dry_run else "removed"
    for item in result.removed:
        out.print(f"{verb} {item.name} {item.version} ({item.files} files)", markup=False)
    if result.no_longer_needed:
        out.print(
            f"The following packages are no longer needed: {', '.join(result.no_longer_needed)}; "
            "use 'pkgc autoremove' to remove them",
            markup=False,
        )
