"""`pkgc config show|get KEY|set KEY VALUE|unset KEY|edit|path`."""

from __future__ import annotations

import json
import os

import typer

from pkgc.cli import console

app = typer.Typer(help="Read and change ~/.config/pkgc/config.toml.", no_args_is_help=True)


@app.command("path")
def path() -> None:
    """Print where the config file is."""
    from pkgc.client.settings import config_path

    print(config_path())


@app.command("show")
def show(as_json: bool = typer.Option(False, "--json", help="Print the result as JSON.")) -> None:
    """Print every key that is set, and warn about unknown ones."""
    from pkgc.client.settings import config_path, flatten, read_document, validate_document

    document = read_document(config_path())
    _values, warnings = validate_document(document, config_path())
    err = console(stderr=True)
    for warning in warnings:
        err.print(f"warning: {warning}", markup=False)
    if as_json:
        print(json.dumps(document))
        return
    for key, value in flatten(document).items():
        print(f"{key} = {json.dumps(value)}")


@app.command("get")
def get(key: str = typer.Argument(..., help="A dotted key, e.g. farm or options.opt.")) -> None:
    """Print one key's value."""
    from pkgc.client.config import get_value
    from pkgc.client.settings import config_path

    value = get_value(config_path(), key)
    print(value if isinstance(value, str) else json.dumps(value))


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
