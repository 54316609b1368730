"""`pkgc` ends without the interpreter's teardown (pkgc.cli.run), and loses nothing by it.

Each case is a real process running pkgc.cli.run() as the console script does: the exit status is the command's,
everything written reaches the pipe, exit handlers and weakref finalizers still run, and a thread that is still
working is waited for (the usual exit).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pkgc.localdb.store import InstalledPackage, InstalledStore

ROOT = Path(__file__).resolve().parents[2]

PROGRAM = """
import atexit, sys, tempfile, threading, time, weakref
sys.path.insert(0, {root!r})
marker = {marker!r}
atexit.register(lambda: open(marker + ".atexit", "w").write("ran"))
class Holder:
    pass
holder = Holder()
weakref.finalize(holder, lambda: open(marker + ".finalizer", "w").write("ran"))
if {thread!r}:
    def late():
        time.sleep(0.5)
        open(marker + ".thread", "w").write("ran")
    threading.Thread(target=late).start()
sys.argv = ["pkgc", *{args!r}]
from pkgc.cli import run
run()
print("not reached", file=sys.stderr)
"""


def run_pkgc(tmp_path: Path, args: list[str], *, thread: bool = False) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PKGC_")}
    env.update(HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_DATA_HOME=str(tmp_path / "data"))
    program = PROGRAM.format(root=str(ROOT), marker=str(tmp_path / "m"), thread=thread, args=args)
    return subprocess.run(
        [sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )


def test_the_status_and_the_output_are_the_commands_and_the_exit_handlers_run(tmp_path: Path) -> None:
    done = run_pkgc(tmp_path, ["--version"])
    assert done.returncode == 0 and done.stdout.startswith("pkgc ")
    assert "not reached" not in done.stderr
    assert (tmp_path / "m.atexit").read_text() == "ran"
    assert (tmp_path / "m.finalizer").read_text() == "ran"

    refused = run_pkgc(tmp_path, ["info", "../x", "--prefix", str(tmp_path / "p")])
    assert refused.returncode == 2
    assert "invalid package name" in refused.stderr and "not reached" not in refused.stderr


def test_a_long_output_reaches_the_pipe_whole(tmp_path: Path) -> None:
    """More than a pipe holds (64 KiB) through a buffered stdout: all of it is flushed before the process ends."""
    prefix = tmp_path / "prefix"
    packages = [
        (InstalledPackage(f"pkg{n:04d}", "1.0", f"{n:064x}", {"opt": "O2"}, True, [], 0.0), []) for n in range(4000)
    ]
    InstalledStore(prefix).commit_transaction("tx", "install", [], packages)
    done = run_pkgc(tmp_path, ["list", "--prefix", str(prefix)])
    assert done.returncode == 0, done.stderr
    assert len(done.stdout) > 64 * 1024
    assert [line.split()[0] for line in done.stdout.splitlines()] == [f"pkg{n:04d}" for n in range(4000)]


def test_a_thread_still_running_is_waited_for(tmp_path: Path) -> None:
    done = run_pkgc(tmp_path, ["--version"], thread=True)
    assert done.returncode == 0
    assert (tmp_path / "m.thread").read_text() == "ran"
