"""`pkgc verify [NAME ...]`: compare the files on disk with what was installed."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from pkgc.cli import AppContext, console

EXIT_PROBLEMS = 6


def verify(
    ctx: typer.Context,
    packages: list[str] = typer.Argument(None, help="Packages to check (default: all installed)."),
    prefix: Path | None = typer.Option(None, "--prefix", help="Check this prefix instead of the configured one."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Report missing, modified and mode-changed files; exit 6 when there is any."""
    from pkgc.client.query import verify as verify_prefix

    app: AppContext = ctx.obj
    if prefix is not None:
        app.prefix_override = prefix
    problems = verify_prefix(app.reading_store(), packages or None)
    if as_json:
        print(json.dumps([p.__dict__ for p in problems]))
    else:
        out = console()
        for problem in problems:
            detail = f" ({problem.detail})" if problem.detail else ""
            out.print(f"{problem.package}: {problem.path}: {problem.kind}{detail}", markup=False)
        if not problems:
            out.print("all installed files match")
    if problems:
        raise typer.Exit(EXIT_PROBLEMS)
