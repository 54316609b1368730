"""The HTTP client of the farm API: wire models in, wire models out, httpx errors turned into PkgcErrors.

Every answer is parsed by the wire models (pkgc.core.wire, generated from the protocol's pydantic models, without
pydantic: a command a user waits on does not import it), which validate each field (names, versions, keys, digests, URLs,
sizes, lengths), and then checked against the question (the build asked for, the keys waited on), before anything
uses it: an answer that fails is a BadFarmAnswer naming the field, and nothing has been written yet.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

import pkgc
from pkgc.client.hashing import sha256_file
from pkgc.core.errors import (
    BadFarmAnswer,
    BuildFailed,
    FarmUnavailable,
    Forbidden,
    IntegrityError,
    NotFound,
    PkgcError,
    RateLimited,
    Unauthorized,
    UsageError,
)
from pkgc.core.platform import detect_cpu_levels, detect_platform
from pkgc.core.protocol_rules import API_PREFIX, MAX_WAIT_SECONDS, BuildStatus, platform_of
from pkgc.core.wire import (
    BuildInfo,
    BuildsResponse,
    CatalogResponse,
    ClientPlatform,
    PackageDetails,
    PackageRequestModel,
    PublishRequest,
    PublishResponse,
    RecipeFile,
    ResolveRequest,
    ResolveResponse,
    WaitRequest,
    WaitResponse,
)
from pkgc.core.wire_schema import Invalid, decode_json, dumps, encode

DEFAULT_NETWORK_TIMEOUT = 30.0
MAX_ANSWER_BYTES = 64 << 20  # the whole catalog of every Debian source package is about 5 MiB
MAX_REASON_LENGTH = 500

_Answer = TypeVar("_Answer")

_ERRORS_BY_CODE: dict[str, type[PkgcError]] = {
    "not_found": NotFound,
    "invalid_request": UsageError,
    "invalid_recipe": UsageError,
    "build_failed": BuildFailed,
    "unauthorized": Unauthorized,
    "forbidden": Forbidden,
}
MAX_RETRY_AFTER = 7 * 24 * 3600


def retry_after_seconds(value: str | None) -> int:
    """A 429's Retry-After in seconds (the farm sends a number; anything else, or nothing, reads as a minute)."""
    text = (value or "").strip()
    return min(int(text), MAX_RETRY_AFTER) if text.isascii() and text.isdigit() else 60


def _wait_phrase(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{round(seconds / 60)} min"
    return f"{round(seconds / 3600)} h"


class PlainHTTPTransport(httpx.HTTPTransport):
    """httpx's transport for plain http (a farm on loopback), without the TLS context httpx makes for every transport.

    httpx.HTTPTransport builds an SSL context whatever URLs it will carry, and a process's first one costs about 2 ms
    of OpenSSL set-up, more than a cache-hit install's resolve. httpcore's connection pool, which does the work, makes
    a context only when it connects to an https URL, and then a verified one (certifi's store). So this is httpx's
    transport, with httpcore's pool made without a context; requests, errors and responses go through httpx's own code.
    """

    def __init__(self) -> None:  # not super().__init__(): that is what builds the context
        import httpcore

        # httpx's default limits (httpx.Limits(max_connections=100, max_keepalive_connections=20), 5 s keep-alive).
        self._pool = httpcore.ConnectionPool(max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0)


def _direct_transport() -> httpx.BaseTransport:
    """A PlainHTTPTransport where this httpx keeps its pool as `_pool` (it has since 0.18), else httpx's own."""
    if "_pool" in httpx.HTTPTransport.handle_request.__code__.co_names:
        return PlainHTTPTransport()
    return httpx.HTTPTransport(verify=False)


def http_client(*, tls: bool = True, timeout: float = DEFAULT_NETWORK_TIMEOUT) -> httpx.Client:
    """One client per command, shared by the embedded-farm health check and the farm API calls.

    It carries no credentials: FarmClient adds the bearer token to the requests that go to the farm API's own
    origin, never to another one (a CDN, a presigned storage URL). `tls=False` (a loopback farm) makes no TLS
    context, a noticeable part of a short command's time (see PlainHTTPTransport).
    `timeout` bounds every wait for bytes from the farm (a stalled download fails after it); a long-poll gets its
    own wait on top.
    """
    headers = {"User-Agent": f"pkgc/{pkgc.__version__}"}
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
    direct = _direct_transport()
    return httpx.Client(
        headers=headers,
        timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        verify=tls,
        # A loopback farm (`tls=False`) is reached over plain http: no TLS context at all. An https URL it might
        # still hand out would get httpcore's verified one, not an unverified one.
        transport=None if tls else direct,
        event_hooks=hooks,
        mounts={f"http://{host}": direct for host in ("127.0.0.1", "localhost", "[::1]")},
    )


def this_machine() -> ClientPlatform:
    """The platform and CPU levels of this machine, as a resolve states them."""
    here = detect_platform()
    return ClientPlatform(**here.as_dict(), cpu_levels=list(detect_cpu_levels(here.arch)))


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of an absolute URL, the port made explicit: what "the same origin" compares."""
    parsed = httpx.URL(url)
    port = parsed.port or {"http": 80, "https": 443}.get(parsed.scheme)
    return parsed.scheme, parsed.host.lower(), port


class FarmClient:
    def __init__(
        self,
        base_url: str,
        *,
        token: str = "",
        client: httpx.Client | None = None,
        platform: ClientPlatform | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._http = client or http_client()
        self._platform = platform

    @property
    def platform(self) -> ClientPlatform:
        """The platform this client states in every resolve and holds every artifact's manifest to (this machine's
        unless given): the farm builds for it, and an artifact made for another is refused before it is unpacked."""
        if self._platform is None:
            self._platform = this_machine()
        return self._platform

    def _absolute(self, url: str) -> str:
        """Farm URLs are absolute (a CDN, a presigned URL) or paths under the farm's API (`/v1/...`), which are
        resolved against the farm's URL (keeping its path: an API behind a stage prefix)."""
        return url if url.startswith(("http://", "https://")) else f"{self.base_url}{url}"

    def _auth_headers(self, absolute_url: str) -> dict[str, str]:
        """The bearer token, for a request to the farm API's own origin only: a CDN or a presigned storage URL
        is another party, which must never see the user's credentials."""
        if not self._token or not self.base_url:
            return {}
        try:
            same = origin(absolute_url) == origin(self.base_url)
        except (httpx.InvalidURL, ValueError):
            return {}
        return {"Authorization": f"Bearer {self._token}"} if same else {}

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        url = self._absolute(path)
        kwargs["headers"] = {**kwargs.get("headers", {}), **self._auth_headers(url)}
        try:
            with self._http.stream(method, url, **kwargs) as streamed:
                # An answer is read whole before it is validated, so its size is bounded first: a farm must not be
                # able to make the client hold gigabytes in memory.
                received = bytearray()
                for chunk in streamed.iter_bytes():
                    received += chunk
                    if len(received) > MAX_ANSWER_BYTES:
                        raise self._invalid(path, f"the answer is larger than {MAX_ANSWER_BYTES // (1 << 20)} MiB")
                # `received` is already decoded (iter_bytes undoes a gzip Content-Encoding): the rebuilt answer
                # must not say it is still encoded, or reading it would decode it a second time.
                headers = [
                    (name, value)
                    for name, value in streamed.headers.multi_items()
                    if name.lower() not in ("content-encoding", "content-length")
                ]
                response = httpx.Response(
                    streamed.status_code, headers=headers, content=bytes(received), request=streamed.request
                )
        except httpx.HTTPError as exc:
            raise FarmUnavailable(f"cannot reach the farm at {self.base_url}: {exc}") from None
        if response.status_code >= 400:
            try:
                body = response.json()
                code, reason = str(body.get("error", "")), str(body.get("reason", response.text))
            except ValueError:
                code, reason = "", response.text[:200]
            reason = " ".join(reason.split())[:MAX_REASON_LENGTH]  # the farm's words end up in a one-line error
            if response.status_code >= 500:
                raise FarmUnavailable(f"the farm answered {response.status_code}: {reason}")
            if response.status_code == 429:
                wait = retry_after_seconds(response.headers.get("retry-after"))
                raise RateLimited(reason, retry_after=wait, hint=f"try again in {_wait_phrase(wait)}")
            if response.status_code == 401:
                raise Unauthorized(reason)
            raise _ERRORS_BY_CODE.get(code, UsageError)(reason)
        return response

    def _invalid(self, what: str, problem: str) -> BadFarmAnswer:
        return BadFarmAnswer(f"the farm at {self.base_url} sent an invalid answer to {what}: {problem}")

    def _parse(self, model: type[_Answer], response: httpx.Response, what: str) -> _Answer:
        """The answer as a validated protocol model, or a one-line BadFarmAnswer naming the first bad field."""
        try:
            return decode_json(model, response.content)
        except Invalid as exc:
            raise self._invalid(what, exc.describe()) from None

    def resolve(self, packages: list[PackageRequestModel], *, retry_failed: bool = False) -> ResolveResponse:
        request = ResolveRequest(packages=packages, platform=self.platform, retry_failed=retry_failed)
        body = encode(request)
        answer = self._parse(ResolveResponse, self._request("POST", f"{API_PREFIX}/resolve", json=body), "resolve")
        if len(answer.requested) != len(packages):
            raise self._invalid("resolve", f"requested: {len(answer.requested)} keys for {len(packages)} packages")
        return answer

    def wait(
        self, keys: list[str], timeout: float = MAX_WAIT_SECONDS, seen: dict[str, BuildStatus] | None = None
    ) -> WaitResponse:
        body = encode(WaitRequest(keys=keys, timeout=timeout, seen=seen or {}))
        read = self._http.timeout.read or DEFAULT_NETWORK_TIMEOUT
        limits = httpx.Timeout(read + timeout, connect=self._http.timeout.connect)  # the farm may hold it `timeout`
        answer = self._parse(
            WaitResponse, self._request("POST", f"{API_PREFIX}/wait", json=body, timeout=limits), "wait"
        )
        asked = set(keys)
        for where, mentioned in (
            ("finished", [b.key for b in answer.finished]),
            ("progress", [b.key for b in answer.progress]),
            ("pending", answer.pending),
        ):
            stray = next((key for key in mentioned if key not in asked), None)
            if stray is not None:
                raise self._invalid("wait", f"{where}: key {stray} was not asked about")
        return answer

    def build(self, key: str) -> BuildInfo:
        answer = self._parse(BuildInfo, self._request("GET", f"{API_PREFIX}/builds/{key}"), "build")
        if answer.key != key:
            raise self._invalid("build", f"key: asked for build {key}, got another build {answer.key}")
        return answer

    def details(self, name: str) -> PackageDetails:
        here = str(platform_of(self.platform))  # the CPU targets it lists are those of this machine's architecture
        response = self._request("GET", f"{API_PREFIX}/packages/{name}", params={"platform": here})
        answer = self._parse(PackageDetails, response, "details")
        if answer.name != name:
            raise self._invalid("details", f"name: asked about {name}, got {answer.name}")
        return answer

    def catalog(self, etag: str | None) -> tuple[CatalogResponse | None, str | None]:
        """The whole catalog, or (None, etag) when it has not changed since `etag`; with the farm's Debian catalog
        state when it keeps one (`debian=1`: a farm that does not know the parameter ignores it)."""
        headers = {"If-None-Match": etag} if etag else {}
        response = self._request("GET", f"{API_PREFIX}/catalog", headers=headers, params={"debian": "1"})
        if response.status_code == 304:
            return None, etag
        new_etag = response.headers.get("ETag")
        if new_etag is not None and (len(new_etag) > 200 or not new_etag.isprintable()):
            raise self._invalid("catalog", "ETag: longer than 200 characters or not printable")
        return self._parse(CatalogResponse, response, "catalog"), new_etag

    def builds_of(self, name: str) -> list[BuildInfo]:
        response = self._request("GET", f"{API_PREFIX}/packages/{name}/builds")
        builds = self._parse(BuildsResponse, response, "builds").builds
        stray = next((b for b in builds if b.name != name), None)
        if stray is not None:
            raise self._invalid("builds", f"name: asked for builds of {name}, got one of {stray.name}")
        return builds

    def publish(self, recipes: list[RecipeFile]) -> PublishResponse:
        """POST /v1/recipes (an admin token): one request of at most 100 recipes; the answer accounts for each."""
        body = dumps(PublishRequest(recipes=recipes))
        response = self._request(
            "POST", f"{API_PREFIX}/recipes", content=body, headers={"Content-Type": "application/json"}
        )
        answer = self._parse(PublishResponse, response, "publish")
        sent = {recipe.file for recipe in recipes}
        answered = [item.file for item in answer.published] + [item.file for item in answer.skipped]
        stray = next((file for file in answered if file not in sent), None)
        if stray is not None:
            raise self._invalid("publish", f"published: {stray} was not sent")
        if len(answered) != len(sent):
            missing = sorted(sent - set(answered))
            raise self._invalid("publish", f"published: nothing said about {missing[0]}")
        return answer

    def build_log(self, key: str, log_url: str | None = None) -> str:
        """A build's log: from its `log_url` (a blob URL: a CDN's, a presigned one, or the farm's) when the farm
        gave one, else from the API."""
        return self._request("GET", log_url or f"{API_PREFIX}/builds/{key}/log").text

    def download(
        self,
        url: str,
        destination: Path,
        sha256: str,
        progress: Callable[[int, int], None] | None = None,
        *,
        size: int | None = None,
    ) -> Path:
        """Download into `destination` unless it already holds these bytes; resume a partial download (Range).

        With `size` (the farm's word for the artifact's length), a download that grows beyond it stops at once: a
        farm that streams without end cannot fill the disk before the sha256 check would refuse the bytes.
        """
        if destination.is_file() and sha256_file(destination) == sha256:
            return destination
        destination.parent.mkdir(parents=True, exist_ok=True)
        partial = destination.with_name(destination.name + ".part")
        offset = partial.stat().st_size if partial.is_file() else 0
        absolute = self._absolute(url)
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        headers.update(self._auth_headers(absolute))
        try:
            with self._http.stream("GET", absolute, headers=headers) as response:
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
                        if size is not None and done > size:
                            break
                        if progress:
                            progress(done, total)
        except httpx.HTTPError as exc:
            raise FarmUnavailable(f"download of {url} failed: {exc}; run the command again to resume") from None
        if size is not None and done > size:
            partial.unlink()
            raise IntegrityError(f"download of {url} is larger than the {size} bytes announced; it was discarded")
        if sha256_file(partial) != sha256:
            partial.unlink()
            raise IntegrityError(f"download of {url} does not match its sha256; it was discarded")
        os.replace(partial, destination)
        return destination
