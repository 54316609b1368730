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
from collections.abc import Mapping, Sequence
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

    def __init__(self, workdir: Path, *, bwrap: str | None, deadline: float) -> None:
        self.workdir = workdir
        self.bwrap = bwrap
        self.deadline = deadline

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
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
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
        try:
            returncode = process.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            _kill_tree(process)
            raise BuildTimedOut("build time limit reached; every process of the build was killed") from None
        if returncode != 0:
            raise CommandFailed(argv, returncode)


def _kill_tree(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
