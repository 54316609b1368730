"""The CLI's composition root and its one error boundary.

Commands live one per module in `pkgc.commands`; each parses its arguments, calls a use case with the adapters it
gets from `AppContext`, and renders the typed result. Use cases raise PkgcErrors that carry their exit code;
`main()` is the only place that turns them into a one-line message and an exit status (a traceback only with
--verbose).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import typer

import pkgc
from pkgc.core.errors import PkgcError

if TYPE_CHECKING:
    from rich.console import Console

    from pkgc.client.farm_client import FarmClient
    from pkgc.client.settings import Settings
    from pkgc.localdb.catalog import CatalogCache
    from pkgc.localdb.store import InstalledStore

# The CLI talks to the farm synchronously. httpcore imports trio whenever it is installed (about 150 ms on a short
# command) although only async clients use it; a None entry makes that import fail fast, as if trio were absent.
sys.modules.setdefault("trio", None)  # type: ignore[arg-type]

app = typer.Typer(
    name="pkgc",
    help="Packages compiled your way (optimisation, CPU target, features) on a build farm.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
    # Plain click help (`-v, --verbose  Show tracebacks`), as pip and git print it: typer's rich panels print a type
    # column for every option, flags included (`--verbose -v <bool>`), as if they took a value.
    rich_markup_mode=None,
)

# The flags every command takes, before or after the command's name (`pkgc install hello -q`, as with pip and apt).
GLOBAL_FLAGS = frozenset({"-q", "--quiet", "-v", "--verbose"})


@dataclass
class AppContext:
    """Builds the adapters a command needs, lazily, so that `pkgc --version` loads none of them."""

    verbose: bool = False
    prefix_override: Path | None = None
    _farm: FarmClient | None = field(default=None, init=False)

    @cached_property
    def settings(self) -> Settings:
        from pkgc.client.settings import load_settings

        settings = load_settings()
        for warning in settings.warnings:
            warn(warning)
        return settings

    @property
    def prefix(self) -> Path:
        return (self.prefix_override or self.settings.prefix).expanduser().absolute()

    def store(self) -> InstalledStore:
        from pkgc.localdb.store import InstalledStore

        return InstalledStore(self.prefix)

    def reading_store(self) -> InstalledStore:
        """The store for a read-only command, after repairing an interrupted transaction (readers see no half state)."""
        from pkgc.client.transaction import recover_if_idle

        store = self.store()
        recover_if_idle(store)
        return store

    def farm(self) -> FarmClient:
        """The farm client; the embedded farm is found or started at the first request, not here.

        So a command that can answer from the local database (nothing installed, nothing pending) starts no farm.
        """
        if self._farm is None:
            from pkgc.client.farm_client import FarmClient, http_client

            settings = self.settings
            http = http_client(token=settings.token, tls=not settings.embedded, timeout=settings.network_timeout)
            if settings.embedded:
                from pkgc.client.embedded import ensure_running, farm_home
                from pkgc.client.lazy_farm import StartOnFirstUse

                idle = settings.farm_idle_timeout
                self._farm = StartOnFirstUse(
                    lambda: ensure_running(farm_home(), http=http, idle_timeout=idle), client=http
                )
            else:
                self._farm = FarmClient(settings.farm, client=http)
        return self._farm

    def catalog(self) -> CatalogCache:
        from pkgc.client.settings import data_dir
        from pkgc.localdb.catalog import CatalogCache

        return CatalogCache(data_dir() / "catalog.sqlite")

    @property
    def cache_dir(self) -> Path:
        from pkgc.client.settings import cache_dir

        return cache_dir()


_QUIET = False


def quiet_mode() -> bool:
    return _QUIET


def warn(message: str) -> None:
    """One line on stderr that does not stop the command (a stale catalog, an unknown config key)."""
    print(f"warning: {message}", file=sys.stderr)


def no_color() -> bool:
    """NO_COLOR set to anything but the empty string (no-color.org): no colour, and no animation either."""
    return bool(os.environ.get("NO_COLOR"))


def console(stderr: bool = False) -> Console:
    """Rich output for people; `--quiet` silences it (data printed for scripts, and errors, are not affected)."""
    from rich.console import Console

    return Console(
        quiet=_QUIET,
        stderr=stderr,
        no_color=no_color() or None,
        highlight=False,
        soft_wrap=True,
    )


def _version(value: bool) -> None:
    if value:
        print(f"pkgc {pkgc.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Show tracebacks and more detail (also after the command)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only results and errors (also after the command)."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    global _QUIET
    _QUIET = quiet
    ctx.obj = AppContext(verbose=verbose)


def _register() -> None:
    from pkgc.commands import (
        autoremove,
        config,
        downgrade,
        farm,
        files,
        history,
        info,
        install,
        list_packages,
        outdated,
        pending,
        pin,
        remove,
        search,
        update,
        upgrade,
        verify,
    )

    app.command("update")(update.update)
    app.command("search")(search.search)
    app.command("info")(info.info)
    app.command("install")(install.install)
    app.command("remove")(remove.remove)
    app.command("autoremove")(autoremove.autoremove)
    app.command("upgrade")(upgrade.upgrade)
    app.command("downgrade")(downgrade.downgrade)
    app.command("history")(history.history)
    app.command("outdated")(outdated.outdated)
    app.command("pending")(pending.pending)
    app.command("pin")(pin.pin)
    app.command("unpin")(pin.unpin)
    app.command("rollback")(history.rollback)
    app.command("list")(list_packages.list_packages)
    app.command("files")(files.files)
    app.command("owner")(files.owner)
    app.command("verify")(verify.verify)
    for group in (farm.app, config.app):
        group.rich_markup_mode = None  # the same plain help as the top level
    app.add_typer(farm.app, name="farm")
    app.add_typer(config.app, name="config")


_register()


def _error_label() -> str:
    """`error:`, in bold red when a person reads stderr on a terminal that takes colour."""
    if sys.stderr.isatty() and not no_color() and os.environ.get("TERM", "dumb") != "dumb":
        return "\x1b[1;31merror:\x1b[0m"
    return "error:"


def _usage_error_exit(exc: Exception) -> int | None:
    """Report a command-line usage error of click's in one line and return its exit code; None for anything else.

    Recognised by shape, not class: recent typer releases carry their own copy of click, whose exceptions are not
    click's classes.
    """
    code = getattr(exc, "exit_code", None)
    format_message = getattr(exc, "format_message", None)
    if not isinstance(code, int) or not callable(format_message):
        return None
    if type(exc).__name__ == "NoArgsIsHelpError":
        print(format_message())  # a bare `pkgc` or `pkgc config`: the help is the answer
        return 0
    context = getattr(exc, "ctx", None)
    hint = f" (see '{context.command_path} --help')" if context is not None else ""
    print(f"{_error_label()} {format_message()}{hint}", file=sys.stderr)
    return code


def hoist_global_flags(args: list[str]) -> list[str]:
    """Move `-q/--quiet/-v/--verbose` found anywhere before a `--` to the front, where the root command parses them.

    Click only knows a group's options before the subcommand's name; users of pip and apt put them anywhere.
    """
    end = args.index("--") if "--" in args else len(args)
    flags = [arg for arg in args[:end] if arg in GLOBAL_FLAGS]
    rest = [arg for arg in args[:end] if arg not in GLOBAL_FLAGS]
    return [*flags, *rest, *args[end:]]


def main() -> None:
    try:
        try:
            _main()
        finally:
            sys.stdout.flush()  # here, not at the interpreter's exit, so that a closed pipe is caught below
    except BrokenPipeError:
        # The reader went away (`pkgc config | head -1`): stop quietly with status 1, as click does for the output
        # it writes itself. Point stdout at /dev/null first, so that the interpreter's last flush cannot raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)


def _main() -> None:
    args = hoist_global_flags(sys.argv[1:])
    verbose = bool({"--verbose", "-v"} & set(args[: args.index("--") if "--" in args else len(args)]))
    try:
        # Without standalone mode click returns (not raises) the code of a typer.Exit.
        status = app(args=args, standalone_mode=False, prog_name="pkgc")
        if isinstance(status, int) and status:
            sys.exit(status)
    except PkgcError as exc:
        if verbose:
            import traceback

            traceback.print_exc()
        from pkgc.core.text import visible

        # A build log's tail and an error that quotes a farm's reason may hold terminal escapes: show them, inert.
        if exc.details:
            print(visible(exc.details), file=sys.stderr)
        print(f"{_error_label()} {visible(str(exc))}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        print(f"{_error_label()} aborted", file=sys.stderr)
        sys.exit(130)
    except KeyboardInterrupt:
        print(f"{_error_label()} interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:
        raise
    except Exception as exc:  # click usage errors and real bugs
        status = _usage_error_exit(exc)
        if status is not None:
            sys.exit(status)
        if verbose:
            raise
        print(
            f"{_error_label()} unexpected {type(exc).__name__}: {exc} (rerun with --verbose for the traceback)",
            file=sys.stderr,
        )
        sys.exit(1)
