"""`pkgc config show|get KEY|set KEY VALUE|unset KEY|edit|path`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from pkgc.cli import console

if TYPE_CHECKING:
    from pkgc.client.settings import Effective

app = typer.Typer(
    help="Show the settings in effect and where they come from; change ~/.config/pkgc/config.toml.",
    no_args_is_help=True,
)


@app.command("path")
def path() -> None:
    """Print where the config file is."""
    from pkgc.client.settings import config_path

    print(config_path())


def _paths() -> dict[str, Effective]:
    """The directories pkgc uses, with the environment variables that move them (read-only: not config keys)."""
    from pkgc.client.embedded import farm_home
    from pkgc.client.settings import Effective, cache_dir, config_path, data_dir

    def item(key: str, value: Path, variable: str) -> Effective:
        if os.environ.get(variable):
            return Effective(key, str(value), "environment", variable)
        return Effective(key, str(value), "default")

    return {
        "paths.config_file": item("paths.config_file", config_path(), "XDG_CONFIG_HOME"),
        "paths.data": item("paths.data", data_dir(), "XDG_DATA_HOME"),
        "paths.cache": item("paths.cache", cache_dir(), "XDG_CACHE_HOME"),
        "paths.farm_home": item("paths.farm_home", farm_home(), "PKGC_FARM_HOME"),
    }


def _effective(prefix: Path | None) -> dict[str, Effective]:
    """Every setting in effect (as a command given the same --prefix would see it), then the paths."""
    from pkgc.client.settings import effective_settings

    command_line = {"prefix": str(prefix.expanduser().absolute())} if prefix is not None else None
    values, warnings = effective_settings(command_line)
    err = console(stderr=True)
    for warning in warnings:
        err.print(f"warning: {warning}", markup=False)
    return {**values, **_paths()}


def _shown(item: Effective) -> Any:
    """The value as `show` prints it: the token is a secret (`config get token` prints it when asked by name)."""
    return "********" if item.key == "token" and item.value else item.value


_PREFIX_HELP = "Show the prefix as a command given this --prefix would use it."


@app.command("show")
def show(
    prefix: Path | None = typer.Option(None, "--prefix", help=_PREFIX_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Print every setting in effect with where it comes from: default, file, environment, command line."""
    values = _effective(prefix)
    if as_json:
        print(json.dumps({k: {"value": _shown(v), "origin": v.origin, "where": v.where} for k, v in values.items()}))
        return
    for key, item in values.items():
        where = f": {item.where}" if item.where else ""
        print(f"{key} = {json.dumps(_shown(item))}  ({item.origin}{where})")


@app.command("get")
def get(
    key: str = typer.Argument(..., help="A dotted key, e.g. farm or options.opt."),
    origin: bool = typer.Option(False, "--origin", help="Print where the value comes from first, then a tab."),
    prefix: Path | None = typer.Option(None, "--prefix", help=_PREFIX_HELP),
) -> None:
    """Print one setting's value in effect (its default when nothing sets it)."""
    from pkgc.client.config import get_value
    from pkgc.client.settings import Effective, config_path

    values = _effective(prefix)
    item = values.get(key) or Effective(key, get_value(config_path(), key), "file", str(config_path()))
    text = item.value if isinstance(item.value, str) else json.dumps(item.value)
    print(f"{item.label}\t{text}" if origin else text)


@app.command("set")
def set_(
    key: str = typer.Argument(..., help="A dotted key, e.g. options.opt."),
    value: str = typer.Argument(..., help="The new value."),
) -> None:
    """Set a key after checking its value."""
    from pkgc.client.config import set_value
    from pkgc.client.settings import config_path

    stored = set_value(config_path(), key, value)
    console().print(f"{key} = {json.dumps(stored)}", markup=False)


@app.command("unset")
def unset(key: str = typer.Argument(..., help="A dotted key.")) -> None:
    """Remove a key (the default applies again)."""
    from pkgc.client.config import unset_value
    from pkgc.client.settings import config_path

    unset_value(config_path(), key)


@app.command("edit")
def edit() -> None:
    """Open the config in $VISUAL or $EDITOR; it is saved only if it is valid."""
    from pkgc.client.config import edit as edit_config
    from pkgc.client.settings import config_path

    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    for warning in edit_config(config_path(), editor):
        console(stderr=True).print(f"warning: {warning}", markup=False)
