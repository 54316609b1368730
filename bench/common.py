"""What both benchmarks share: they are run as scripts (`python bench/NAME.py`), so this directory is on sys.path."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def beside_python(command: str) -> str | None:
    """The console script installed beside this interpreter, so that no side pays for a version manager's shim
    (pyenv's are shell scripts that run `pyenv exec`); else the one on PATH."""
    beside = Path(sys.executable).parent / command
    return str(beside) if beside.is_file() else shutil.which(command)
