"""The client's offline copy of the farm's catalog, searched with SQLite full-text search.

This is a cache, not a record of the user's system, so it uses the standard library's sqlite3 directly: `pkgc search`
must answer faster than apt-cache, and SQLAlchemy's import alone would take most of that budget.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS packages (name TEXT PRIMARY KEY, summary TEXT NOT NULL, latest TEXT NOT NULL);
CREATE VIRTUAL TABLE IF NOT EXISTS packages_fts USING fts5(name, summary, content='packages', content_rowid='rowid');
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_WORD = re.compile(r"[A-Za-z0-9]+")


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    summary: str
    latest: str


class CatalogCache:
    def __init__(self, path: Path) -> None:
        self.path = path

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=30)
        connection.executescript(_SCHEMA)
        return connection

    def exists(self) -> bool:
        return self.path.is_file()

    def _meta(self) -> dict[str, str]:
        """The bookkeeping rows (etag, source, synced_at); empty when there is no copy (the file is not created)."""
        if not self.exists():
            return {}
        with self._connect() as connection:
            return dict(connection.execute("SELECT key, value FROM meta"))

    def has_copy(self) -> bool:
        """Whether a catalog was ever stored here (from any farm): something to answer from when offline."""
        return "source" in self._meta()

    def synced_at(self, source: str) -> float | None:
        """When the copy from `source` was last confirmed current (downloaded, or a 304); None if it is not `source`'s."""
        meta = self._meta()
        if meta.get("source") != source or "synced_at" not in meta:
            return None
        try:
            return float(meta["synced_at"])
        except ValueError:
            return None

    def last_synced(self) -> float | None:
        """When the copy, from whichever farm, was last confirmed current."""
        try:
            return float(self._meta()["synced_at"])
        except (KeyError, ValueError):
            return None

    def touch(self, source: str, when: float | None = None) -> None:
        """Record that `source` confirmed the copy is current (its answer was 304 Not Modified)."""
        connection = self._connect()
        try:
            with connection:
                connection.executemany(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                    [("source", source), ("synced_at", repr(time.time() if when is None else when))],
                )
        finally:
            connection.close()

    def get(self, name: str) -> CatalogEntry | None:
        if not self.exists():
            return None
        with self._connect() as connection:
            row = connection.execute("SELECT name, summary, latest FROM packages WHERE name = ?", (name,)).fetchone()
        return CatalogEntry(*row) if row else None

    def latest_versions(self) -> dict[str, str]:
        """Every package's newest version, in one query (`outdated` compares each installed package with it)."""
        if not self.exists():
            return {}
        with self._connect() as connection:
            return dict(connection.execute("SELECT name, latest FROM packages"))

    def etag(self, source: str) -> str | None:
        """The ETag of the cached catalog if it came from `source` (the configured farm); None means fetch it all."""
        if not self.exists():
            return None
        with self._connect() as connection:
            meta = dict(connection.execute("SELECT key, value FROM meta WHERE key IN ('etag', 'source')"))
        return meta.get("etag") if meta.get("source", "") == source else None

    def replace(
        self, entries: Iterable[CatalogEntry], etag: str | None, source: str, debian: dict[str, Any] | None = None
    ) -> int:
        """Swap in a new catalog from `source` in one transaction; searches never see half of it. `debian` is the
        farm's Debian catalog state sent with it (None: the farm reports none)."""
        rows = [(e.name, e.summary, e.latest) for e in entries]
        connection = self._connect()
        try:
            with connection:
                connection.execute("DELETE FROM packages")
                connection.executemany("INSERT INTO packages (name, summary, latest) VALUES (?, ?, ?)", rows)
                connection.execute("INSERT INTO packages_fts(packages_fts) VALUES ('rebuild')")
                connection.executemany(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                    [("etag", etag or ""), ("source", source), ("synced_at", repr(time.time()))],
                )
                if debian is None:
                    connection.execute("DELETE FROM meta WHERE key = 'debian'")
                else:
                    connection.execute(
                        "INSERT OR REPLACE INTO meta (key, value) VALUES ('debian', ?)", (json.dumps(debian),)
                    )
        finally:
            connection.close()
        return len(rows)

    def debian_state(self) -> dict[str, Any] | None:
        """The farm's Debian catalog state as the copy was last synced ({"state", "since", "packages", "error"},
        validated by the protocol when it arrived), or None when the farm reported none."""
        text = self._meta().get("debian")
        if text is None:
            return None
        try:
            value = json.loads(text)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def count(self) -> int:
        if not self.exists():
            return 0
        with self._connect() as connection:
            return int(connection.execute("SELECT count(*) FROM packages").fetchone()[0])

    def search(self, term: str, limit: int = 50) -> list[CatalogEntry]:
        """Ranked: the exact name, names starting with the term, names containing it ("cbor" finds libcbor), each
        name tier in name order, then full-text matches of words in names and summaries (BM25). A substring scan of
        34,000 names costs a few milliseconds; the summary tier is FTS."""
        needle = term.strip().lower()
        found: dict[str, CatalogEntry] = {}
        connection = self._connect()
        try:

            def take(sql: str, *args: object) -> None:
                for name, summary, latest in connection.execute(sql, args):
                    if len(found) < limit:
                        found.setdefault(name, CatalogEntry(name, summary, latest))

            take("SELECT name, summary, latest FROM packages WHERE name = ?", needle)
            escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            # Prefixes, then other substrings, in one scan of the names (LIKE cannot use an index here anyway).
            take(
                "SELECT name, summary, latest FROM packages WHERE name LIKE ? ESCAPE '\\' "
                "ORDER BY name LIKE ? ESCAPE '\\' DESC, name LIMIT ?",
                "%" + escaped + "%",
                escaped + "%",
                limit,
            )
            words = _WORD.findall(needle)
            if words and len(found) < limit:
                query = " ".join(f'"{word}"*' for word in words)
                take(
                    "SELECT p.name, p.summary, p.latest FROM packages_fts f JOIN packages p ON p.rowid = f.rowid "
                    "WHERE packages_fts MATCH ? ORDER BY bm25(packages_fts, 10.0, 1.0) LIMIT ?",
                    query,
                    limit,
                )
        finally:
            connection.close()
        return list(found.values())
