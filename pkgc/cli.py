"""The CLI's composition root and its one error boundary.

Commands live one per module in `pkgc.commands`; each parses its arguments, calls a use case with the adapters it
gets from `AppContext`, and renders the typed result. Use cases raise PkgcErrors that carry their exit code;
`main()` is the only place that turns them into a one-line message and an exit status (a traceback only with
--verbose).
"""

from __future__ import annotations

import gc

# A command's start-up allocates tens of thousands of objects that live until it exits (modules, classes, functions)
# and frees few: at the default first threshold (700) the collector runs a hundred times during the imports for
# nothing, about 6 ms of a 0.15 s install. It still collects, seventy times less often. Set before the imports it
# is for; the farm's processes, which do not import this module, keep the default.
gc.set_threshold(50_000, 10, 10)

import importlib  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable  # noqa: E402
from functools import cached_property  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import TYPE_CHECKING, Any  # noqa: E402

import typer  # noqa: E402

import pkgc  # noqa: E402
from pkgc.core.errors import PkgcError  # noqa: E402

if TYPE_CHECKING:
    from rich.console import Console

    from pkgc.client.farm_client import FarmClient
    from pkgc.client.settings import Settings
    from pkgc.localdb.catalog import CatalogCache
    from pkgc.localdb.store import InstalledStore

# The CLI talks to the farm synchronously. httpcore imports trio whenever it is installed (about 150 ms on a short
# command) although only async clients use it; a None entry makes that import fail fast, as if trio were absent.
sys.modules.setdefault("trio", None)  # type: ignore[arg-type]
# httpx's package imports its command-line client (`httpx._main`: click, rich's console, pygments; about 40 ms) when
# those are installed, only to offer `httpx` as a command; pkgc never runs it. A None entry makes httpx take its
# fallback, as if its CLI extras were absent.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
# pydantic hands every validator it builds to the plugins of any installed distribution that declares one (an entry
# point), after scanning the metadata of every installed distribution for them (about 5 ms on a short command). How
# pkgc validates the farm's answers must not depend on what else happens to be installed beside it, so plugins are
# off for pkgc and the farm processes it starts, unless the user sets pydantic's own switch otherwise.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

_app = typer.Typer(
    name="pkgc",
    help="Packages compiled your way (optimisation, CPU target, features) on a build farm.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
    # Plain click help (`-v, --verbose  Show tracebacks`), as pip and git print it: typer's rich panels print a type
    # column for every option, flags included (`--verbose -v <bool>`), as if they took a value.
    rich_markup_mode=None,
)

# -- typer's value coercion, without pydantic for the plain cases ---------------------------------------------------
#
# typer (0.29) converts every parameter's value through a pydantic TypeAdapter that it builds at run time, flags
# included: importing pydantic and typer's adapters and building them costs a short command such as `pkgc list` or
# `pkgc search` about 0.1 s, more than the command's own work. pkgc's parameters are plain: bool, str, list[str], an
# int with bounds, a Path without checks. For those, a value that is already right is converted here, exactly as
# typer would (tests/unit/test_cli_coercion.py compares the two); anything else, and every value that would be an
# error, goes to typer's own coercion, so its messages are unchanged. With another typer, nothing is replaced.

_DELEGATE = object()  # "let typer convert this value"
_INT = re.compile(r"-?(0|[1-9][0-9]*)")
_PLAIN_PATH = {
    "exists": False,
    "file_okay": True,
    "dir_okay": True,
    "writable": False,
    "readable": True,
    "resolve_path": False,
    "allow_dash": False,
    "path_type": None,
}


def _as_bool(value: Any) -> Any:
    return value if isinstance(value, bool) else _DELEGATE


def _as_str(value: Any) -> Any:
    return value if isinstance(value, str) else _DELEGATE


def _as_str_list(value: Any) -> Any:
    if isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
        return list(value)
    return _DELEGATE


def _as_plain_path(value: Any) -> Any:
    """typer's path check with its default options: any path, refused only when it exists and cannot be read."""
    if not isinstance(value, str) or not value:
        return _DELEGATE
    try:
        os.stat(value)
    except OSError:
        return Path(value)
    except Exception:  # a NUL byte and the like: typer reports it
        return _DELEGATE
    return Path(value) if os.access(value, os.R_OK) else _DELEGATE


def _int_within(low: float | None, high: float | None) -> Any:
    def convert(value: Any) -> Any:
        if type(value) is int:  # a default
            number = value
        elif isinstance(value, str) and _INT.fullmatch(value):
            number = int(value)
        else:
            return _DELEGATE
        if (low is not None and number < low) or (high is not None and number > high):
            return _DELEGATE
        return number

    return convert


def _plain_converter(descriptor: Any) -> Any:
    """The converter for a parameter typer would send through pydantic, if it is one of the plain cases; else None."""
    info = descriptor.parameter_info
    if descriptor.file_annotation is not None or getattr(info, "parser", None) is not None:
        return None
    if getattr(info, "click_type", None) is not None:
        return None
    annotation = descriptor.annotation
    if annotation is bool:
        return _as_bool
    if annotation is str:
        return _as_str
    if annotation == list[str]:
        return _as_str_list
    if annotation is int and not getattr(info, "clamp", False):
        return _int_within(getattr(info, "min", None), getattr(info, "max", None))
    if annotation is Path and all(getattr(info, k, None) == v for k, v in _PLAIN_PATH.items()):
        return _as_plain_path
    return None


def _install_plain_coercion() -> None:
    """Replace typer.core.build_runtime_param with one that handles the plain cases itself (see above)."""
    try:
        from typer import _coercion, core as typer_core
    except ImportError:  # another typer: it coerces as it does
        return
    build = getattr(typer_core, "build_runtime_param", None)
    base = getattr(_coercion, "RuntimeParam", None)
    if build is None or base is None or getattr(build, "pkgc_plain", False):
        return
    typer_build: Callable[[Any], Any] = build

    class PlainRuntimeParam(base):  # type: ignore[misc, valid-type]
        # A subclass of typer's frozen dataclass, but not a dataclass itself: typer only calls `coerce`, and making a
        # dataclass costs every command about 0.5 ms.
        def __init__(self, descriptor: Any, convert: Callable[[Any], Any]) -> None:
            super().__init__(parameter_info=descriptor.parameter_info, annotation=descriptor.annotation)
            object.__setattr__(self, "convert", convert)
            object.__setattr__(self, "descriptor", descriptor)

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            convert: Any = self.convert
            result = convert(value)
            if result is _DELEGATE:
                return typer_build(self.descriptor)._coerce_value(value, param=param, ctx=ctx)
            return result

    def build_plain(descriptor: Any) -> Any:
        convert = _plain_converter(descriptor)
        if convert is None:
            return typer_build(descriptor)
        return PlainRuntimeParam(descriptor, convert)

    build_plain.pkgc_plain = True  # type: ignore[attr-defined]
    build_plain.typer_build = typer_build  # type: ignore[attr-defined]  # for the tests
    setattr(typer_core, "build_runtime_param", build_plain)  # noqa: B010 (not a public attribute of typer.core)


_install_plain_coercion()

# The flags every command takes, before or after the command's name (`pkgc install hello -q`, as with pip and apt).
GLOBAL_FLAGS = frozenset({"-q", "--quiet", "-v", "--verbose"})


class AppContext:
    """Builds the adapters a command needs, lazily, so that `pkgc --version` loads none of them."""

    def __init__(self, verbose: bool = False, prefix_override: Path | None = None) -> None:
        self.verbose = verbose
        self.prefix_override = prefix_override
        self._farm: FarmClient | None = None

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
            http = http_client(tls=not settings.embedded, timeout=settings.network_timeout)
            if settings.embedded:
                from pkgc.client.embedded import ensure_running, farm_home
                from pkgc.client.lazy_farm import StartOnFirstUse

                idle = settings.farm_idle_timeout
                self._farm = StartOnFirstUse(
                    lambda: ensure_running(farm_home(), http=http, idle_timeout=idle), client=http, token=settings.token
                )
            else:
                self._farm = FarmClient(settings.farm, client=http, token=settings.token)
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


def console(stderr: bool = False) -> Console | PlainConsole:
    """Rich output for people; `--quiet` silences it (data printed for scripts, and errors, are not affected).

    Rich (about 30 ms to import) only when the stream is a terminal, or an environment variable that rich reads
    could make it treat the stream as one; otherwise a PlainConsole, which prints the same lines.
    """
    stream = sys.stderr if stderr else sys.stdout
    if not _rich_needed(stream):
        return PlainConsole(stderr=stderr, quiet=_QUIET)
    return rich_console(stderr)


def rich_console(stderr: bool) -> Console:
    from rich.console import Console

    return Console(
        quiet=_QUIET,
        stderr=stderr,
        no_color=no_color() or None,
        highlight=False,
        soft_wrap=True,
    )


# Environment variables with which rich may treat a pipe as a terminal (colour, animation, width).
_RICH_TERMINAL_ENV = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "JUPYTER_COLUMNS", "JUPYTER_LINES")


def _rich_needed(stream: Any) -> bool:
    try:
        terminal = bool(stream.isatty())
    except (AttributeError, ValueError):
        terminal = False
    return terminal or any(os.environ.get(name) for name in _RICH_TERMINAL_ENV)


# What rich could render differently from the text itself: markup (`[`), emoji codes (`:name:`, names drawn from
# these characters, as in rich._emoji_codes), tabs (expanded) and control characters (removed).
_RICH_MARKUP = re.compile(r"\[")
_RICH_ALTERS = re.compile(r":[-!#&()*+.0-9_a-zA-Z\u00c0-\u00ff\u2019]+:|[\x00-\x09\x0b-\x1f\x7f]")


class PlainConsole:
    """The part of rich's Console the commands use, for output that is not a terminal: the same lines, no import.

    Rich on a pipe prints a string as it is (soft wrap, no colour, no highlighting) and flushes; this does the same,
    and hands anything else (markup, emoji codes, tabs, control characters, or a renderable) to a real Console.
    """

    is_terminal = False
    is_dumb_terminal = False

    def __init__(self, *, stderr: bool, quiet: bool) -> None:
        self.stderr = stderr
        self.quiet = quiet

    def print(self, *objects: Any, markup: bool | None = None, highlight: bool | None = None) -> None:
        if self.quiet:
            return
        plain = all(isinstance(o, str) for o in objects)
        text = " ".join(objects) if plain else ""
        if not plain or _RICH_ALTERS.search(text) or (markup is not False and _RICH_MARKUP.search(text)):
            rich_console(self.stderr).print(*objects, markup=markup, highlight=highlight)
            return
        print(text, file=sys.stderr if self.stderr else sys.stdout, flush=True)


def _version(value: bool) -> None:
    if value:
        print(f"pkgc {pkgc.__version__}")
        raise typer.Exit()


@_app.callback()
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


# Each command's name, module in pkgc.commands and function, in the order `pkgc --help` lists them. A command's
# module is imported only when that command runs (or for help): importing all of them, and letting typer build every
# command's parameters, costs a short command about 30 ms.
_COMMANDS: dict[str, tuple[str, str]] = {
    "update": ("update", "update"),
    "search": ("search", "search"),
    "info": ("info", "info"),
    "install": ("install", "install"),
    "remove": ("remove", "remove"),
    "autoremove": ("autoremove", "autoremove"),
    "upgrade": ("upgrade", "upgrade"),
    "downgrade": ("downgrade", "downgrade"),
    "history": ("history", "history"),
    "outdated": ("outdated", "outdated"),
    "pending": ("pending", "pending"),
    "pin": ("pin", "pin"),
    "unpin": ("pin", "unpin"),
    "rollback": ("history", "rollback"),
    "list": ("list_packages", "list_packages"),
    "files": ("files", "files"),
    "owner": ("files", "owner"),
    "verify": ("verify", "verify"),
}
_GROUPS = ("farm", "config")  # sub-apps: pkgc.commands.<name>.app
_registered: set[str] = set()


def _register(only: str | None = None) -> None:
    """Add the commands to the app: all of them, or only the one named `only` (a name of _COMMANDS or _GROUPS)."""
    for name, (module, function) in _COMMANDS.items():
        if name not in _registered and only in (None, name):
            _app.command(name)(getattr(importlib.import_module(f"pkgc.commands.{module}"), function))
            _registered.add(name)
    for name in _GROUPS:
        if name not in _registered and only in (None, name):
            group: typer.Typer = importlib.import_module(f"pkgc.commands.{name}").app
            group.rich_markup_mode = None  # the same plain help as the top level
            _app.add_typer(group, name=name)
            _registered.add(name)


def __getattr__(name: str) -> Any:
    """`pkgc.cli.app`: the whole CLI with every command (for tests and tools that inspect it); main() adds less."""
    if name == "app":
        _register()
        return _app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _commands_for(args: list[str]) -> str | None:
    """The one command that `args` (global flags hoisted) runs, or None when all must be known.

    The first argument that is not an option names the command: the root's options are all flags. Help of the
    root (also `pkgc --help install`), a mistyped command and shell completion (which takes its words from the
    environment) need every command.
    """
    if any(key.endswith("_COMPLETE") or key.startswith("_TYPER_COMPLETE") for key in os.environ):
        return None
    for arg in args:
        if arg.startswith("-") and arg not in GLOBAL_FLAGS:
            return None  # `--help` (or another root option) before the command: the root's help lists them all
        if not arg.startswith("-"):
            return arg if arg in _COMMANDS or arg in _GROUPS else None
    return None


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


def run() -> None:
    """The `pkgc` program (its console script and `python -m pkgc`): main(), then an exit without the interpreter's
    teardown.

    Tearing down the interpreter (clearing some 330 modules and freeing some 30,000 objects) takes 20 to 30 ms, an
    eighth of a cache-hit install, and does nothing a finished command needs: its files are closed, its database
    commits are durable. So once main() has returned or exited, and only the main thread is left, the exit handlers
    run (atexit, weakref finalizers: temporary directories), stdout and stderr are flushed, and the process ends
    with os._exit. Anything else (an unexpected exception, another thread still running) exits the usual way.
    """
    try:
        main()
        status: int = 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            status = exc.code or 0
        else:  # a message, as sys.exit("...") means it: printed, status 1
            print(exc.code, file=sys.stderr)
            status = 1
    import threading

    if threading.active_count() > 1:
        sys.exit(status)
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):  # the reader went away (main() handled stdout's), or it is closed
            status = status or 1
    os._exit(status)


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
    if args != ["--version"]:  # the version needs no command
        _register(_commands_for(args))
    try:
        # Without standalone mode click returns (not raises) the code of a typer.Exit.
        status = _app(args=args, standalone_mode=False, prog_name="pkgc")
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
