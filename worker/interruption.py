"""Spot interruption notices: a worker on a Spot instance stops cleanly when EC2 announces it will take it back.

EC2 posts the notice about two minutes ahead at `latest/meta-data/spot/instance-action` of the instance metadata
service (404 until then). The watch polls it (IMDSv2: a session token first, falling back to a plain GET where
tokens are not required) and sets the worker's stop event, which kills the build, gives the lease back and makes
the job visible to another worker at once, instead of after its visibility timeout.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections.abc import Callable

DEFAULT_IMDS_URL = "http://169.254.169.254"
INSTANCE_ACTION_PATH = "/latest/meta-data/spot/instance-action"
TOKEN_PATH = "/latest/api/token"
IMDS_URL_ENV = "PKGC_WORKER_IMDS_URL"


class InterruptionWatch:
    """Polls the metadata service every `interval` seconds until a notice comes (then sets `stop`) or `stop` is set."""

    def __init__(
        self,
        stop: threading.Event,
        *,
        base_url: str = DEFAULT_IMDS_URL,
        interval: float = 5.0,
        timeout: float = 2.0,
        report: Callable[[str], None] = lambda _message: None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"{IMDS_URL_ENV} must be an http(s) URL, not {base_url[:80]!r}")
        self.stop = stop
        self.base_url = base_url.rstrip("/")
        self.interval = interval
        self.timeout = timeout
        self.report = report
        self.notice: str | None = None
        # The metadata service is link-local: never through a proxy from the environment.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self._thread: threading.Thread | None = None

    def _token(self) -> str | None:
        request = urllib.request.Request(
            self.base_url + TOKEN_PATH, method="PUT", headers={"X-aws-ec2-metadata-token-ttl-seconds": "300"}
        )
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                return bytes(response.read(4096)).decode("ascii", "replace").strip() or None
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def check(self) -> str | None:
        """The interruption notice (its JSON text) if there is one now, else None (404, or the service is down)."""
        token = self._token()
        headers = {"X-aws-ec2-metadata-token": token} if token else {}
        request = urllib.request.Request(self.base_url + INSTANCE_ACTION_PATH, headers=headers)
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                if response.status == 200:
                    return bytes(response.read(4096)).decode("utf-8", "replace").strip() or "{}"
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                self.report(f"spot interruption check: the metadata service answered {exc.code}")
        except (urllib.error.URLError, OSError, ValueError) as exc:
            self.report(f"spot interruption check failed: {exc}")
        return None

    def watch(self) -> None:
        while not self.stop.is_set():
            notice = self.check()
            if notice is not None:
                self.notice = notice
                self.report(f"spot interruption notice ({notice[:200]}): stopping and giving the job back")
                self.stop.set()
                return
            self.stop.wait(self.interval)

    def start(self) -> InterruptionWatch:
        self._thread = threading.Thread(target=self.watch, name="spot-interruption", daemon=True)
        self._thread.start()
        return self
