"""Where the embedded farm keeps its state; a module of its own so that workers need not import the API."""

from __future__ import annotations

from pathlib import Path

from pkgc.core.record import record


@record
class FarmPaths:
    home: Path

    @property
    def database(self) -> Path:
        return self.home / "farm.db"

    @property
    def blobs(self) -> Path:
        return self.home / "blobs"

    @property
    def sources(self) -> Path:
        return self.home / "sources"

    @property
    def work(self) -> Path:
        return self.home / "work"

    @property
    def roots(self) -> Path:
        """The workers' hermetic build roots (pkgc/worker/buildroot.py), made once and shared by the workers."""
        return self.home / "roots"

    @property
    def state(self) -> Path:
        return self.home / "state.json"

    @property
    def log(self) -> Path:
        return self.home / "farm.log"

    @property
    def start_error(self) -> Path:
        """Why the supervisor refused to start, as JSON {"time", "error"}, for the client that launched it."""
        return self.home / "start-error.json"

    @property
    def events(self) -> Path:
        return self.home / "events.jsonl"
