"""`pkgc pin NAME [VERSION]` and `pkgc unpin NAME`: keep a package where it is through `upgrade --all`."""

from __future__ import annotations

from pathlib import Path

import typer

from pkgc.cli import AppContext, console


def pin(
    ctx: typer.Context,
    package: str = typer.Argument(..., help="The package to hold."),
    version: str | None = typer.Argument(None, help="The version to hold it at (default: the installed one)."),
    prefix: Path | None = typer.Option(None, "--prefix", help="Where to look for the installed version."),
) -> None:
    """Pin a package: upgrades leave it alone until it is unpinned."""
    from pkgc.client.config import set_value
    from pkgc.client.settings import config_path
    from pkgc.core.errors import NotFound
    from pkgc.core.names import validate_name

    app: AppContext = ctx.obj
    if prefix is not None:
        app.prefix_override = prefix
    validate_name(package)
    if version is None:
        installed = app.reading_store().get(package)
        if installed is None:
            raise NotFound(f"{package} is not installed in {app.prefix}", hint="give the version to pin")
        version = installed.version
    set_value(config_path(), f"pins.{package}", version)
    console().print(f"{package} pinned at {version}", markup=False)


def unpin(package: str = typer.Argument(..., help="A pinned package.")) -> None:
    """Let upgrades move a package again."""
    from pkgc.client.config import unset_value
    from pkgc.client.settings import config_path
    from pkgc.core.names import validate_name

    validate_name(package)
    unset_value(config_path(), f"pins.{package}")
    console().print(f"{package} unpinned", markup=False)
