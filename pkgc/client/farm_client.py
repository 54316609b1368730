"""The HTTP client of the farm API: protocol models in, protocol models out, httpx errors turned into PkgcErrors."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

import pkgc
from pkgc.client.hashing import sha256_file
from pkgc.core.errors import BuildFailed, FarmUnavailable, IntegrityError, NotFound, PkgcError, UsageError
from pkgc.core.protocol import (
    API_PREFIX,
    MAX_WAIT_SECONDS,
    BuildInfo,
    BuildsResponse,
    BuildStatus,
    CatalogResponse,
    PackageDetails,
    PackageRequestModel,
    ResolveRequest,
    ResolveResponse,
    WaitRequest,
    WaitResponse,
)

DEFAULT_NETWORK_TIMEOUT = 30.0

_ERRORS_BY_CODE: dict[str, type[PkgcError]] = {
    "not_found": NotFound,
    "invalid_request": UsageError,
    "invalid_recipe": UsageError,
    "build_failed": BuildFailed,
}


def http_client(*, token: str = "", tls: bool = True, timeout: float = DEFAULT_NETWORK_TIMEOUT) -> httpx.Client:
    """One client per command, shared by the embedded-farm health check and the farm API calls.

    `tls=False` (a loopback farm) skips loading the certificate store, a noticeable part of a short command's time.
    `timeout` bounds every wait for bytes from the farm (a stalled download fails after it); a long-poll gets its
    own wait on top.
    """
    headers = {"User-Agent": f"pkgc/{pkgc.__version__}"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    hooks: dict[str, list[Callable[[httpx.Request], None]]] = {}
    trace = os.environ.get("PKGC_TRACE_HTTP")
    if trace:
        # A debugging aid (and how the tests count round trips): one line per request, method and path.
        def log_request(request: httpx.Request) -> None:
            with open(trace, "a", encoding="utf-8") as handle:
                resume = request.headers.get("Range")
                handle.write(f"{request.method} {request.url.path}{' ' + resume if resume else ''}\n")

        hooks["request"] = [log_request]
    # Proxy variables are for the outside world: a farm on loopback (the embedded one always is) is reached directly,
    # or a proxy that is down or slow would break every command. Mounts beat the proxies httpx reads from the env.
    direct = httpx.HTTPTransport(verify=False)  # plain http only, so no certificate store is loaded
    return httpx.Client(
        headers=headers,
        timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        verify=tls,
        event_hooks=hooks,
        mounts={f"http://{host}": direct for host in ("127.0.0.1", "localhost", "[::1]")},
    )


class FarmClient:
    def __init__(self, base_url: str, *, token: str = "", client: httpx.Client | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = client or http_client(token=token)

    def _absolute(self, url: str) -> str:
        """Farm URLs may be relative to the farm (embedded) or absolute (a CDN)."""
        return url if url.startswith(("http://", "https://")) else f"{self.base_url}{url}"

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, self._absolute(path), **kwargs)
        except httpx.HTTPError as exc:
            raise FarmUnavailable(f"cannot reach the farm at {self.base_url}: {exc}") from None
        if response.status_code >= 400:
            try:
                body = response.json()
                code, reason = str(body.get("error", "")), str(body.get("reason", response.text))
            except ValueError:
                code, reason = "", response.text[:200]
            if response.status_code >= 500:
                raise FarmUnavailable(f"the farm answered {response.status_code}: {reason}")
            raise _ERRORS_BY_CODE.get(code, UsageError)(reason)
        return response

    def resolve(self, packages: list[PackageRequestModel], *, retry_failed: bool = False) -> ResolveResponse:
        body = ResolveRequest(packages=packages, retry_failed=retry_failed).model_dump(mode="json")
        return ResolveResponse.model_validate(self._request("POST", f"{API_PREFIX}/resolve", json=body).json())

    def wait(
        self, keys: list[str], timeout: float = MAX_WAIT_SECONDS, seen: dict[str, BuildStatus] | None = None
    ) -> WaitResponse:
        body = WaitRequest(keys=keys, timeout=timeout, seen=seen or {}).model_dump(mode="json")
        read = self._http.timeout.read or DEFAULT_NETWORK_TIMEOUT
        limits = httpx.Timeout(read + timeout, connect=self._http.timeout.connect)  # the farm may hold it `timeout`
        return WaitResponse.model_validate(
            self._request("POST", f"{API_PREFIX}/wait", json=body, timeout=limits).json()
        )

    def build(self, key: str) -> BuildInfo:
        return BuildInfo.model_validate(self._request("GET", f"{API_PREFIX}/builds/{key}").json())

    def details(self, name: str) -> PackageDetails:
        return PackageDetails.model_validate(self._request("GET", f"{API_PREFIX}/packages/{name}").json())

    def catalog(self, etag: str | None) -> tuple[CatalogResponse | None, str | None]:
        """The whole catalog, or (None, etag) when it has not changed since `etag`."""
        headers = {"If-None-Match": etag} if etag else {}
        response = self._request("GET", f"{API_PREFIX}/catalog", headers=headers)
        if response.status_code == 304:
            return None, etag
        return CatalogResponse.model_validate_json(response.content), response.headers.get("ETag")

    def builds_of(self, name: str) -> list[BuildInfo]:
        return BuildsResponse.model_validate(self._request("GET", f"{API_PREFIX}/packages/{name}/builds").json()).builds

    def build_log(self, key: str) -> str:
        return self._request("GET", f"{API_PREFIX}/builds/{key}/log").text

    def download(
        self, url: str, destination: Path, sha256: str, progress: Callable[[int, int], None] | None = None
    ) -> Path:
        """Download into `destination` unless it already holds these bytes; resume a partial download (Range)."""
        if destination.is_file() and sha256_file(destination) == sha256:
            return destination
        destination.parent.mkdir(parents=True, exist_ok=True)
        partial = destination.with_name(destination.name + ".part")
        offset = partial.stat().st_size if partial.is_file() else 0
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        try:
            with self._http.stream("GET", self._absolute(url), headers=headers) as response:
                if response.status_code >= 400:
                    raise FarmUnavailable(f"download of {url} failed with status {response.status_code}")
                if response.status_code != 206:
                    offset = 0
                total = offset + int(response.headers.get("Content-Length", 0))
                with partial.open("ab" if offset else "wb") as out:
                    done = offset
                    for chunk in response.iter_bytes():  # as they arrive: an interrupted download keeps them all
                        out.write(chunk)
                        done += len(chunk)
                        if progress:
                            progress(done, total)
        except httpx.HTTPError as exc:
            raise FarmUnavailable(f"download of {url} failed: {exc}; run the command again to resume") from None
        if sha256_file(partial) != sha256:
            partial.unlink()
            raise IntegrityError(f"download of {url} does not match its sha256; it was discarded")
        os.replace(partial, destination)
        return destination
