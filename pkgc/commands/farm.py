"""`pkgc farm up|status|stop`: the embedded farm on this machine."""

from __future__ import annotations

import json

import typer

from pkgc.cli import console

app = typer.Typer(help="Run the embedded build farm on this machine.", no_args_is_help=True)


@app.command("up")
def up(workers: int = typer.Option(0, help="Worker processes (default: one per core).")) -> None:
    """Start the embedded farm in the background (if it is not running) and print its URL."""
    from pkgc.client.embedded import ensure_running, farm_home
    from pkgc.client.settings import load_settings

    url = ensure_running(farm_home(), workers or None, idle_timeout=load_settings().farm_idle_timeout)
    console().print(f"embedded farm running at {url}")


@app.command("status")
def status(as_json: bool = typer.Option(False, "--json", help="Print the result as JSON.")) -> None:
    """Say whether the embedded farm runs, where, with which workers, and whether they keep failing."""
    from pkgc.client.embedded import farm_home, health, read_state

    home = farm_home()
    state = read_state(home)
    answer = health(str(state["url"])) if state and "url" in state else None
    running = state is not None and answer is not None
    failing = running and answer is not None and answer.get("workers") == "failing"
    if as_json:
        shown = state if running and state else {}
        print(json.dumps({"running": running, "home": str(home), **shown, "workers_failing": failing}))
        return
    if not running or state is None:
        console().print(f"embedded farm is not running (home {home})")
        raise typer.Exit(4)  # the exit code of "the farm cannot be reached", so scripts can test for it
    line = f"embedded farm running at {state['url']}, pid {state['pid']}, workers {len(state.get('workers') or {})}"
    if failing:
        line += f"; workers failing: they keep exiting at start, see {home}/farm.log"
    console().print(line)


@app.command("stop")
def stop() -> None:
    """Stop the embedded farm and its workers (whichever pkgc version started it)."""
    from pkgc.client.embedded import farm_home
    from pkgc.client.embedded import stop as stop_farm

    stopped = stop_farm(farm_home())
    console().print("embedded farm stopped" if stopped else "embedded farm was not running")
