"""`pkgc history` and `pkgc rollback [ENTRY]`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from pkgc.cli import AppContext, console
from pkgc.commands.upgrade import change_versions, render_change


def history(
    ctx: typer.Context,
    prefix: Path | None = typer.Option(None, "--prefix", help="Look at this prefix instead of the configured one."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Every install, upgrade, downgrade, remove and rollback, numbered."""
    app: AppContext = ctx.obj
    if prefix is not None:
        app.prefix_override = prefix
    entries = app.reading_store().history()
    if as_json:
        print(json.dumps(entries))
        return
    out = console()
    for entry in entries:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry["finished_at"]))
        before = {p["name"]: p["version"] for p in entry["before"]}
        after = {p["name"]: p["version"] for p in entry["after"]}
        parts = [f"{n} {before.get(n, '-')} -> {after.get(n, '-')}" for n in sorted({*before, *after})]
        out.print(f"{entry['id']:>4}  {when}  {entry['operation']:<9}  {', '.join(parts)}", markup=False)


def rollback(
    ctx: typer.Context,
    entry: int | None = typer.Argument(None, help="History entry to undo (default: the last one)."),
    prefix: Path | None = typer.Option(None, "--prefix", help="Work on this prefix instead of the configured one."),
    no_wait: bool = typer.Option(False, "--no-wait", help="Fail at once if another pkgc is changing the prefix."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Restore the packages as they were before a history entry (itself recorded as a new entry)."""
    from pkgc.client.lock import prefix_lock

    app: AppContext = ctx.obj
    if prefix is not None:
        app.prefix_override = prefix
    with change_versions(app, quiet=as_json) as use_case, prefix_lock(app.prefix, wait=not no_wait):
        result = use_case.rollback(entry)
    render_change(result, as_json)
