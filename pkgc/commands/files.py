"""`pkgc files NAME` and `pkgc owner PATH`."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from pkgc.cli import AppContext, console


def files(
    ctx: typer.Context,
    package: str = typer.Argument(..., help="An installed package."),
    prefix: Path | None = typer.Option(None, "--prefix", help="Look in this prefix instead of the configured one."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """List the files an installed package owns."""
    from pkgc.client.query import package_files

    app: AppContext = ctx.obj
    if prefix is not None:
        app.prefix_override = prefix
    owned = package_files(app.reading_store(), package)
    if as_json:
        print(json.dumps([f.__dict__ for f in owned]))
        return
    out = console()
    for file in owned:
        out.print(str(app.prefix / file.path), markup=False)


def owner(
    ctx: typer.Context,
    path: str = typer.Argument(..., help="A path in the prefix, absolute or relative to the prefix."),
    prefix: Path | None = typer.Option(None, "--prefix", help="Look in this prefix instead of the configured one."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Say which installed package owns a file."""
    from pkgc.client.query import owner_of

    app: AppContext = ctx.obj
    if prefix is not None:
        app.prefix_override = prefix
    package, relative = owner_of(app.reading_store(), path)
    if as_json:
        print(json.dumps({"path": relative, "package": package}))
        return
    console().print(f"{relative} is owned by {package}", markup=False)
