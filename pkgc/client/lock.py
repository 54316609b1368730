"""One writer per prefix: an exclusive lock on `<prefix>/.pkgc/lock` (never on the SQLite file itself)."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pkgc.core.errors import ConflictError
from pkgc.localdb.store import STATE_DIR


@contextmanager
def prefix_lock(prefix: Path, *, wait: bool = True) -> Iterator[None]:
    """Hold the prefix's write lock; with wait=False fail at once when another pkgc holds it."""
    state = prefix / STATE_DIR
    state.mkdir(parents=True, exist_ok=True)
    fd = os.open(state / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise ConflictError(
                f"another pkgc is changing {prefix}", hint="wait for it to finish, or drop --no-wait"
            ) from None
        yield
    finally:
        os.close(fd)
