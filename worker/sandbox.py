"""Running one build command: under bubblewrap with no network when it is there, always with a time limit that
kills the whole process tree, always with argument lists (never a shell string).

Given a build root (pkgc/worker/buildroot.py: the toolchain definition's packages), bubblewrap shows that root as
the whole system instead of the host's `/`: the build sees its toolchain, its work directory (with its
dependencies' prefixes in it) and nothing else of the host.
"""

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


def root_mounts(root: Path, destinations: tuple[str, ...] = ()) -> list[str]:
    """bubblewrap arguments that show `root` as the system, read-only: each top-level directory bound at its own
    name, each symlink (the merged-/usr `/bin` -> `usr/bin`, ...) made again. The new root itself is bubblewrap's
    tmpfs, so the mount points of later binds (`destinations`: the work directory, ...) can be made in it; a
    directory of the root that has a destination inside (the AWS worker's /var/lib/pkgc-worker under /var) is
    made as a directory and its entries bound one by one, down to the destination. The caller remounts `/`
    read-only at the end."""
    return [argument for entry in sorted(root.iterdir()) for argument in _mounts(entry, f"/{entry.name}", destinations)]


def _mounts(source: Path, target: str, destinations: tuple[str, ...]) -> list[str]:
    if source.is_symlink():
        return ["--symlink", os.readlink(source), target]
    if not source.is_dir():
        return ["--ro-bind", str(source), target] if source.is_file() and target.count("/") > 1 else []
    if target in destinations or not any(d.startswith(target + "/") for d in destinations):
        return [] if target in destinations else ["--ro-bind", str(source), target]
    arguments = ["--dir", target]
    for entry in sorted(source.iterdir()):
        arguments += _mounts(entry, f"{target}/{entry.name}", destinations)
    return arguments


class Sandbox:
    """Runs commands with a writable work directory and, under bubblewrap, a read-only system and no network.

    With `root`, the system is that directory (a hermetic build); without it, the host's `/` read-only.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        bwrap: str | None,
        deadline: float,
        root: Path | None = None,
        extra_ro: tuple[Path, ...] = (),
        abort: Callable[[], bool] = lambda: False,
        abort_check_interval: float = 0.2,
    ) -> None:
        self.workdir = workdir
        self.bwrap = bwrap
        self.root = root if bwrap else None
        self.extra_ro = extra_ro  # host directories shown read-only at their own path (PKGC_SANDBOX_EXTRA_RO)
        self.deadline = deadline
        self.abort = abort  # asked between short waits: True kills the running command's whole process tree
        self.abort_check_interval = abort_check_interval
        self.writable: list[tuple[Path, str]] = []  # (host directory, path in the sandbox), see bind_writable

    def bind_writable(self, host: Path, target: str) -> bool:
        """Show the host directory `host` writable at `target` inside the sandbox; False when this sandbox cannot
        (only a hermetic root is bubblewrap's own tmpfs, where a new mount point can be made; the host's `/` is
        read-only, and without bubblewrap there is no separate view at all)."""
        if not (self.bwrap and self.root is not None) or not target.startswith("/") or ".." in target.split("/"):
            return False
        self.writable.append((host, target))
        return True

    def describe(self) -> str:
        if self.bwrap and self.root is not None:
            return f"sandbox: bubblewrap, hermetic: the build sees only the build root {self.root.name}, no network"
        if self.bwrap:
            return "sandbox: bubblewrap, read-only host system (not hermetic: the host's libraries are visible), no network"
        return (
            "sandbox: none (bubblewrap is not available): the build is not hermetic (it sees the host's tools and "
            "libraries), has network access and a writable system"
        )

    def _wrap(self, argv: Sequence[str], cwd: Path) -> list[str]:
        if not self.bwrap:
            return list(argv)
        return [
            self.bwrap,
            "--unshare-all",
            "--die-with-parent",
            "--new-session",
            *(self._root_arguments() if self.root is not None else ["--ro-bind", "/", "/"]),
            "--dev", "/dev",
            "--proc", "/proc",
            "--tmpfs", "/tmp",
            *(arg for path in self.extra_ro for arg in ("--ro-bind", str(path), str(path))),
            "--bind", str(self.workdir), str(self.workdir),
            *(arg for host, target in self.writable for arg in ("--bind", str(host), target)),
            *(["--remount-ro", "/"] if self.root is not None else []),
            "--chdir", str(cwd),
            "--",
            *argv,
        ]  # fmt: skip

    def _root_arguments(self) -> list[str]:
        assert self.root is not None
        destinations = tuple(str(path) for path in (*self.extra_ro, self.workdir))
        return root_mounts(self.root, destinations)

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
