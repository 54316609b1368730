"""`pkgc pending [--install]`: what `install --background` left compiling, and finishing it."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from pkgc.cli import AppContext, console
from pkgc.core.text import visible


def pending(
    ctx: typer.Context,
    install: bool = typer.Option(False, "--install", help="Install what has finished compiling."),
    prefix: Path | None = typer.Option(None, "--prefix", help="Work on this prefix instead of the configured one."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Show pending background installs with their build status, or install those that finished."""
    from pkgc.client.install import InstallPackages
    from pkgc.client.lock import prefix_lock
    from pkgc.client.pending import install_finished, pending_status

    app: AppContext = ctx.obj
    if prefix is not None:
        app.prefix_override = prefix
    if install:
        store = app.store()
        use_case = InstallPackages(farm=app.farm(), store=store, cache_dir=app.cache_dir)
        with prefix_lock(store.prefix):
            result = install_finished(app.farm(), store, use_case)
        if as_json:
            print(json.dumps(result.__dict__))
            return
        out = console()
        for spec in result.installed:
            out.print(f"installed {spec}", markup=False)
        for spec in result.failed:
            out.print(f"build of {spec} failed; see 'pkgc info' and the build log", markup=False)
        for spec in result.still_pending:
            out.print(f"{spec} is still compiling", markup=False)
        if result.failed:
            raise typer.Exit(5)
        return
    statuses = pending_status(app.farm(), app.prefix)
    if as_json:
        print(
            json.dumps(
                [
                    {
                        "spec": s.request.spec,
                        "key": s.build.key,
                        "status": s.build.status.value,
                        "last_line": s.build.last_line,
                    }
                    for s in statuses
                ]
            )
        )
        return
    out = console()
    if not statuses:
        out.print("nothing pending")
    for status in statuses:
        latest = f"  {visible(status.build.last_line[-80:])}" if status.build.last_line else ""
        out.print(f"{status.request.spec}: {status.build.status.value}{latest}", markup=False)
