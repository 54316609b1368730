"""Advisory file locks (flock) for the farm's home: who owns it, whether an update of the Debian catalog runs.

Standard library only, so `pkgc farm status` stays light. The kernel drops a flock when its process dies, however
it dies, so a lock never goes stale; files are opened close-on-exec, so no child inherits a lock unless it is
handed over on purpose (`pass_fds`).
"""

from __future__ import annotations

import fcntl
from pathlib import Path
from typing import IO


def try_exclusive(path: Path) -> IO[str] | None:
    """The open file holding an exclusive lock on `path` (created if absent), or None when another holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def is_locked(path: Path) -> bool:
    """Whether some process holds an exclusive lock on `path` (a probe: a shared lock taken and dropped at once)."""
    try:
        handle = path.open("r")
    except OSError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False
