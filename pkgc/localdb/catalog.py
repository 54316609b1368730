"""The client's offline copy of the farm's catalog, searched with SQLite full-text search.

This is a cache, not a record of the user's system, so it uses the standard library's sqlite3 directly: `pkgc search`
must answer faster than apt-cache, and SQLAlchemy's import alone would take most of that budget.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

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

    def etag(self, source: str) -> str | None:
        """The ETag of the cached catalog if it came from `source` (the configured farm); None means fetch it all."""
        if not self.exists():
            return None
        with self._connect() as connection:
            meta = dict(connection.execute("SELECT key, value FROM meta WHERE key IN ('etag', 'source')"))
        return meta.get("etag") if meta.get("source", "") == source else None

    def replace(self, entries: Iterable[CatalogEntry], etag: str | None, source: str) -> int:
        """Swap in a new catalog from `source` in one transaction; searches never see half of it."""
        rows = [(e.name, e.summary, e.latest) for e in entries]
        connection = self._connect()
        try:
            with connection:
                connection.execute("DELETE FROM packages")
                connection.executemany("INSERT INTO packages (name, summary, latest) VALUES (?, ?, ?)", rows)
                connection.execute("INSERT INTO packages_fts(packages_fts) VALUES ('rebuild')")
                connection.executemany(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", [("etag", etag or ""), ("source", source)]
                )
        finally:
            connection.close()
        return len(rows)

    def count(self) -> int:
        if not self.exists():
            return 0
        with self._connect() as connection:
            return int(connection.execute("SELECT count(*) FROM packages").fetchone()[0])

    def search(self, term: str, limit: int = 50) -> list[CatalogEntry]:
        """Exact name first, then names starting with the term, then full-text matches in names and summaries."""
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
            take(
                "SELECT name, summary, latest FROM packages WHERE name LIKE ? ESCAPE '\\' ORDER BY name LIMIT ?",
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
