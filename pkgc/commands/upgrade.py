"""`pkgc upgrade NAME ... | --all`: newest versions, same options, one transaction."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from pkgc.cli import AppContext, console

if TYPE_CHECKING:
    from pkgc.client.change import ChangeResult, ChangeVersions


@contextmanager
def change_versions(app: AppContext, *, quiet: bool) -> Iterator[ChangeVersions]:
    """The use case behind upgrade, downgrade and rollback, with the live build table and download bars of install."""
    from pkgc.client.change import ChangeVersions
    from pkgc.commands.install import ConsoleReporter

    reporter = ConsoleReporter(quiet=quiet)
    try:
        yield ChangeVersions(
            farm=app.farm(),
            store=app.store(),
            cache_dir=app.cache_dir,
            reporter=reporter,
            pins=app.settings.pins,
            parallel_downloads=app.settings.parallel_downloads,
        )
    finally:
        reporter.close()


def render_change(result: ChangeResult, as_json: bool) -> None:
    if as_json:
        print(
            json.dumps(
                {
                    "prefix": result.prefix,
                    "operation": result.operation,
                    "changes": [c.__dict__ for c in result.changes],
                    "held": result.held,
                }
            )
        )
        return
    out = console()
    if not result.changes:
        out.print(f"{result.operation}: nothing to do")
    for change in result.changes:
        out.print(
            f"{change.name}: {change.old_version or '(none)'} -> {change.new_version or '(removed)'}", markup=False
        )
    for name in result.held:
        out.print(f"{name}: pinned, left as it is", markup=False)


def upgrade(
    ctx: typer.Context,
    packages: list[str] = typer.Argument(None, help="Installed packages to upgrade."),
    every: bool = typer.Option(False, "--all", help="Upgrade every package you installed, in one request."),
    prefix: Path | None = typer.Option(None, "--prefix", help="Work on this prefix instead of the configured one."),
    no_wait: bool = typer.Option(False, "--no-wait", help="Fail at once if another pkgc is changing the prefix."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Upgrade packages to their newest versions, keeping their options."""
    from pkgc.client.lock import prefix_lock

    app: AppContext = ctx.obj
    if prefix is not None:
        app.prefix_override = prefix
    with change_versions(app, quiet=as_json) as use_case, prefix_lock(app.prefix, wait=not no_wait):
        result = use_case.upgrade(packages or [], every=every)
    render_change(result, as_json)
