"""A farm client that finds or starts the embedded farm at its first request, not when a command is set up.

Many commands can answer from the local database alone (`downgrade` of a package that is not installed, `upgrade
--all` with nothing installed, `pending` with nothing pending, `outdated` on an empty prefix). They get a farm client
like every command, but starting the embedded farm (a supervisor and its workers) just to say "not installed" costs
seconds and leaves processes behind; so the farm starts only when the first request is about to be sent.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from pkgc.client.farm_client import FarmClient


class StartOnFirstUse(FarmClient):
    """A FarmClient whose base URL comes from `start()` (e.g. `ensure_running`), called once, before the first request."""

    def __init__(self, start: Callable[[], str], *, client: httpx.Client, token: str = "") -> None:
        super().__init__("", client=client, token=token)
        self._start: Callable[[], str] | None = start

    @property
    def started(self) -> bool:
        return self._start is None

    def _absolute(self, url: str) -> str:
        if self._start is not None:
            self.base_url = self._start().rstrip("/")
            self._start = None
        return super()._absolute(url)
