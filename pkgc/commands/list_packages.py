"""`pkgc list`: what is installed in the prefix."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from pkgc.cli import AppContext


def list_packages(
    ctx: typer.Context,
    prefix: Path | None = typer.Option(None, "--prefix", help="List this prefix instead of the configured one."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """List installed packages with their versions and options."""
    app: AppContext = ctx.obj
    if prefix is not None:
        app.prefix_override = prefix
    packages = app.reading_store().packages()
    if as_json:
        print(json.dumps([p.as_json() for p in packages]))
        return
    if not packages:
        print(f"nothing installed in {app.prefix}")
        return
    lines = []
    for package in packages:
        options = ",".join(f"{k}={v}" for k, v in sorted(package.options.items()))
        marker = "" if package.requested else " (dependency)"
        lines.append(f"{package.name} {package.version} [{options}]{marker}")
    print("\n".join(lines))  # plain text: a table of hundreds of rows through rich costs more than the query
