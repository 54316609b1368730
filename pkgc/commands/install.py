"""`pkgc install NAME[@VERSION] ... [--opt KEY=VALUE ...] [--prefix DIR] --wait`."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from pkgc.cli import AppContext, console, no_color, quiet_mode, rich_console
from pkgc.core.options import parse_option_assignments
from pkgc.core.text import visible

if TYPE_CHECKING:
    from rich.console import Console

    from pkgc.core.wire import BuildInfo


class ConsoleReporter:
    """A live table of builds on a terminal; one plain line per change when stderr is not a terminal."""

    def __init__(self, quiet: bool) -> None:
        self.err = console(stderr=True)
        self.quiet = quiet or quiet_mode()
        # Redrawing in place is for people at a terminal who did not ask for plain output (NO_COLOR, TERM=dumb).
        self.animated = not self.quiet and self.err.is_terminal and not self.err.is_dumb_terminal and not no_color()
        self.started = time.monotonic()
        self.last: dict[str, str] = {}
        self.since: dict[str, float] = {}
        self.ready_at_start: set[str] = set()  # builds there is nothing to follow about: never shown
        self.live: Any = None
        self.progress: Any = None
        self.tasks: dict[str, Any] = {}
        self.lock = threading.Lock()
        # Refresh the table's log column every few seconds; plain output only needs to hear of status changes.
        self.poll_seconds = 3.0 if self.animated else 20.0

    def _rich(self) -> Console:
        """The live displays' console: the reporter's own, which is rich's whenever the display is animated."""
        from rich.console import Console

        return self.err if isinstance(self.err, Console) else rich_console(stderr=True)

    def _table(self, builds: list[BuildInfo]) -> Any:
        from rich.table import Table

        table = Table(box=None, pad_edge=False)
        for column in ("package", "version", "status", "elapsed", "log"):
            table.add_column(column)
        now = time.monotonic()
        for build in builds:
            table.add_row(
                build.name,
                build.version,
                build.status.value,
                f"{now - self.since[build.key]:.0f}s",
                visible(build.last_line[-60:]),  # a log line: its terminal escapes are shown, inert
            )
        return table

    def builds_changed(self, builds: list[BuildInfo]) -> None:
        """Status news of the builds being compiled; a build that was ready when first heard of is not news."""
        if self.quiet:
            return
        followed = []
        for build in builds:
            if build.key not in self.since:
                self.since[build.key] = time.monotonic()
                if build.status.value == "ready":
                    self.ready_at_start.add(build.key)
            if build.key in self.ready_at_start:
                continue
            followed.append(build)
            if self.last.get(build.key) != build.status.value:
                self.last[build.key] = build.status.value
                if not self.animated:
                    elapsed = time.monotonic() - self.started
                    self.err.print(f"  {build.name}@{build.version}: {build.status.value} ({elapsed:.0f}s)")
        if not self.animated or not followed:
            return
        with self.lock:
            if self.progress is not None:
                return  # download bars own the terminal until the packages are in
            if self.live is None:  # started on the first news, so that an early error prints nothing before it
                from rich.live import Live

                self.live = Live(console=self._rich(), transient=False, refresh_per_second=4)
                self.live.start()
            self.live.update(self._table(followed))

    def download_progress(self, name: str, done: int, total: int) -> None:
        """Progress bars on a terminal (called from the download threads); nothing otherwise."""
        if not self.animated:
            return
        with self.lock:
            if self.live is not None:
                self.live.stop()
                self.live = None
            if self.progress is None:
                from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

                self.progress = Progress(
                    TextColumn("{task.description}"), BarColumn(), DownloadColumn(), console=self._rich()
                )
                self.progress.start()
            if name not in self.tasks:
                self.tasks[name] = self.progress.add_task(name, total=total or None)
            self.progress.update(self.tasks[name], completed=done, total=total or None)

    def installed(self, name: str, version: str) -> None:
        """The live display ends here; the command's summary says what was installed (once, on stdout)."""
        self.close()

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def install(
    ctx: typer.Context,
    packages: list[str] = typer.Argument(..., help="NAME or NAME@VERSION, one or more."),
    opt: list[str] = typer.Option(
        [], "--opt", "-o", metavar="KEY=VALUE", help="Build option KEY=VALUE, e.g. opt=O3, cpu=x86-64-v3."
    ),
    prefix: Path | None = typer.Option(
        None, "--prefix", help="Install into this prefix instead of the configured one."
    ),
    wait: bool | None = typer.Option(
        None,
        "--wait/--background",
        help="Wait for builds in progress, or install what is ready and leave the rest compiling "
        "(default: install_mode in the config, else --wait).",
    ),
    retry_failed: bool = typer.Option(
        False, "--retry-failed", help="Build again what failed before (the farm keeps failures otherwise)."
    ),
    no_wait: bool = typer.Option(False, "--no-wait", help="Fail at once if another pkgc is changing the prefix."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Install packages built with your options; builds that do not exist yet are compiled on the farm."""
    from pkgc.client.install import InstallPackages
    from pkgc.client.lock import prefix_lock
    from pkgc.client.options import OptionLevels
    from pkgc.core.relocation import check_prefix_fits

    app: AppContext = ctx.obj
    if prefix is not None:
        app.prefix_override = prefix
    settings = app.settings
    levels = OptionLevels.of(settings, parse_option_assignments(opt))
    store = app.store()
    check_prefix_fits(str(store.prefix))  # before the farm starts or the lock creates anything in the prefix
    farm = app.farm()
    reporter = ConsoleReporter(quiet=as_json)
    use_case = InstallPackages(
        farm=farm,
        store=store,
        cache_dir=app.cache_dir,
        reporter=reporter,
        parallel_downloads=settings.parallel_downloads,
    )
    try:
        with prefix_lock(store.prefix, wait=not no_wait):
            result = use_case(
                packages,
                levels,
                wait=settings.install_mode == "wait" if wait is None else wait,
                retry_failed=retry_failed,
            )
            if result.pending:
                from pkgc.client.pending import add_pending

                add_pending(store.prefix, result.pending)
    finally:
        reporter.close()
    if as_json:
        print(
            json.dumps(
                {
                    "prefix": result.prefix,
                    "seconds": round(result.seconds, 3),
                    "packages": [item.__dict__ for item in result.items],
                    "pending": [p.spec for p in result.pending],
                }
            )
        )
        return
    out = console()
    for item in result.items:
        out.print(f"{item.name} {item.version}: {item.action}")
    for request in result.pending:
        out.print(f"{request.spec}: still compiling on the farm", markup=False)
    if result.pending:
        out.print("run 'pkgc pending' to follow the builds and 'pkgc pending --install' to finish")
    out.print(f"prefix: {result.prefix} ({result.seconds:.1f}s)")
