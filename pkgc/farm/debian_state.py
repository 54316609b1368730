"""Where the embedded farm's Debian catalog is: absent, loading, loaded or failed, read from the farm's home.

Standard library only (no validation models, no database library), so that `pkgc farm status` can say it as cheaply
as it says the rest; the farm wraps the same answer in the protocol's `DebianCatalogState` for `/v1/catalog`.

The files (under `<home>/debian/`): `index.sqlite`, the catalog itself; `update.lock`, held (flock) for an update's
whole life, so "loading" is the lock being held and a killed update never reads as loading; `update.json`, the last
update's record (loading since T, loaded, or failed with one line of why); `update.log`, the background update's
output.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from pkgc.core.text import visible
from pkgc.farm.filelock import is_locked

MAX_ERROR = 200  # the protocol's short text
INTERRUPTED = "the last update stopped before it finished"


def debian_dir(home: Path) -> Path:
    return home / "debian"


def index_file(home: Path) -> Path:
    return debian_dir(home) / "index.sqlite"


def lock_path(home: Path) -> Path:
    return debian_dir(home) / "update.lock"


def state_path(home: Path) -> Path:
    return debian_dir(home) / "update.json"


def log_path(home: Path) -> Path:
    return debian_dir(home) / "update.log"


def one_line(text: str, limit: int = MAX_ERROR) -> str:
    """`text` as one line a terminal shows inertly, at most `limit` characters."""
    line = visible(" ".join(text.split()))
    return line if len(line) <= limit else line[: limit - 3] + "..."


def update_running(home: Path) -> bool:
    """Whether an update holds the lock."""
    return is_locked(lock_path(home))


def read_record(home: Path) -> dict[str, Any]:
    """The last update's record; {} when there is none or it cannot be read."""
    try:
        data = json.loads(state_path(home).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _moment(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and 0 <= value < 1e11 else None


_counts: dict[tuple[str, int, int], int] = {}


def _loaded(index: Path) -> tuple[int, float] | None:
    """(source packages, when written) of the index, counted once per index file (an update replaces it)."""
    try:
        info = index.stat()
    except OSError:
        return None
    key = (str(index), info.st_ino, info.st_mtime_ns)
    if key not in _counts:
        try:
            connection = sqlite3.connect(f"file:{index}?mode=ro", uri=True)
            try:
                count = int(connection.execute("SELECT count(*) FROM sources").fetchone()[0])
            finally:
                connection.close()
        except sqlite3.Error:
            return None
        _counts.clear()
        _counts[key] = count
    return _counts[key], info.st_mtime


def read_state(home: Path) -> dict[str, Any]:
    """{"state": "absent" | "loading" | "loaded" | "failed", "since": T, "packages": N, "error": one line}, the
    keys that apply only. Loading while an update holds the lock; loaded while an index exists; failed when the last
    update said why, or was killed before it finished; else absent. Read live, never staler than the files."""
    record = read_record(home)
    if update_running(home):
        since = _moment(record.get("since")) if record.get("state") == "loading" else None
        return {"state": "loading", "since": since if since is not None else time.time()}
    loaded = _loaded(index_file(home))
    if loaded is not None:
        return {"state": "loaded", "since": loaded[1], "packages": loaded[0]}
    if record.get("state") == "failed":
        state: dict[str, Any] = {"state": "failed", "error": one_line(str(record.get("error") or "unknown"))}
        moment = _moment(record.get("at"))
    elif record.get("state") == "loading":  # its lock is free: the process died
        state = {"state": "failed", "error": one_line(f"{INTERRUPTED} (see {log_path(home)})")}
        moment = _moment(record.get("since"))
    else:
        return {"state": "absent"}
    if moment is not None:
        state["since"] = moment
    return state


def describe(state: dict[str, Any]) -> str:
    """The state as `pkgc farm status` says it, in one line."""
    kind = state.get("state")
    since = state.get("since")
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(since)) if isinstance(since, int | float) else "?"
    if kind == "loading":
        return f"Debian catalog: loading since {when}"
    if kind == "loaded":
        return f"Debian catalog: {state.get('packages', 0)} source packages (loaded {when})"
    if kind == "failed":
        return f"Debian catalog: loading failed at {when}: {state.get('error')} ('pkgc farm catalog update' tries again)"
    return "Debian catalog: not loaded ('pkgc farm catalog update' loads it)"
