"""Running one build command: under bubblewrap with no network when it is there, always with a time limit that
kills the whole process tree, always with argument lists (never a shell string)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

_PR_SET_PDEATHSIG = 1
# Builds get the usual umask, not the farm's private one: the modes they install go into the artifact as they are.
BUILD_UMASK = 0o022


class CommandFailed(Exception):
    def __init__(self, argv: Sequence[str], returncode: int) -> None:
        super().__init__(f"command {argv[0]} exited with status {returncode}")
        self.returncode = returncode


class BuildTimedOut(Exception):
    pass


class BuildAborted(Exception):
    """The worker stopped the build (its lease was lost, or it is being stopped); every process of it was killed."""


def _die_with_parent() -> None:
    """In the child before exec: be killed when the worker dies, so a kill -9 of the worker leaves no build."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def bubblewrap_path() -> str | None:
    """bwrap if it is installed and can create namespaces here; None otherwise."""
    found = shutil.which("bwrap")
    if not found:
        return None
    probe = subprocess.run(
        [
            found,
            "--unshare-all",
            "--die-with-parent",
            "--ro-bind",
            "/",
            "/",
            "--dev",
            "/dev",
            "--proc",
            "/proc",
            "true",
        ],
        capture_output=True,
        timeout=30,
        check=False,
    )
    return found if probe.returncode == 0 else None


class Sandbox:
    """Runs commands with a writable work directory and, under bubblewrap, a read-only system and no network."""

    def __init__(
        self,
        workdir: Path,
        *,
        bwrap: str | None,
        deadline: float,
        abort: Callable[[], bool] = lambda: False,
        abort_check_interval: float = 0.2,
    ) -> None:
        self.workdir = workdir
        self.bwrap = bwrap
        self.deadline = deadline
        self.abort = abort  # asked between short waits: True kills the running command's whole process tree
        self.abort_check_interval = abort_check_interval

    def describe(self) -> str:
        if self.bwrap:
            return "sandbox: bubblewrap, read-only system, no network"
        return "sandbox: none (bubblewrap is not available): the build has network access and a writable system"

    def _wrap(self, argv: Sequence[str], cwd: Path) -> list[str]:
        if not self.bwrap:
            return list(argv)
        return [
            self.bwrap,
            "--unshare-all",
            "--die-with-parent",
            "--new-session",
            "--ro-bind", "/", "/",
            "--dev", "/dev",
            "--proc", "/proc",
            "--tmpfs", "/tmp",
            "--bind", str(self.workdir), str(self.workdir),
            "--chdir", str(cwd),
            "--",
            *argv,
        ]  # fmt: skip

    def run(self, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], log: BinaryIO) -> None:
        log.write(f"$ {' '.join(argv)}\n".encode())
        log.flush()
        if self.abort():
            raise BuildAborted("build aborted before the command started")
        if self.deadline - time.monotonic() <= 0:
            raise BuildTimedOut("build time limit reached")
        process = subprocess.Popen(
            self._wrap(argv, cwd),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
            umask=BUILD_UMASK,
        )
        returncode = self._wait(process)
        if returncode != 0:
            raise CommandFailed(argv, returncode)


    def _wait(self, process: subprocess.Popen[bytes]) -> int:
        """The command's exit status; kill its whole tree at the deadline or when `abort` says so."""
        while True:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                _kill_tree(process)
                raise BuildTimedOut("build time limit reached; every process of the build was killed")
            try:
                return process.wait(timeout=min(remaining, self.abort_check_interval))
            except subprocess.TimeoutExpired:
                pass
            if self.abort():
                _kill_tree(process)
                raise BuildAborted("build aborted; every process of the build was killed")


def _kill_tree(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
