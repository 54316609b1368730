"""The farm's HTTP API: thin routes that decode the protocol, call FarmService and encode the answer.

No background tasks and no state in the app beyond the service it is given, so the same app runs under uvicorn
here and under Mangum in Lambda. Every error is JSON `{"error": ..., "reason": ...}` with a 4xx status for bad
input; a 500 means a bug.
"""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import pkgc
from pkgc.core.errors import FarmUnavailable, Forbidden, NotFound, PkgcError, UsageError
from pkgc.core.platform import Platform
from pkgc.core.protocol import (
    API_PREFIX,
    MAX_ERROR_LENGTH,
    MAX_PUBLISH_BODY_BYTES,
    BuildInfo,
    BuildsResponse,
    CatalogResponse,
    PackageDetails,
    PublishedRecipe,
    PublishRequest,
    PublishResponse,
    ResolveRequest,
    ResolveResponse,
    SearchResponse,
    SkippedRecipeFile,
    WaitRequest,
    WaitResponse,
)
from pkgc.core.recipe import RecipeError
from pkgc.farm.access import AccessPolicy, TokenGate
from pkgc.farm.blobnames import content_digest, valid_blob_name
from pkgc.farm.service import FarmService, recipe_error_reason

MAX_BODY_BYTES = 64 * 1024
# POST /v1/recipes takes up to 100 recipes of up to 64 KiB each, which is more than one request should carry: API
# Gateway hands the body to Lambda inside the invocation's event (a 6 MB limit), and the body is held in memory
# before it is parsed. So this one route takes up to MAX_PUBLISH_BODY_BYTES (1 MiB: any single recipe, JSON-escaped,
# fits several times over) and the client publishes a larger set in several requests (pkgc/client/publish.py);
# publishing a recipe again is harmless, so a publication cut short is finished by running it again.


GZIP_MIN_BYTES = 1024  # smaller documents gain nothing from compression


def accepts_gzip(header: str) -> bool:
    """Whether an Accept-Encoding header accepts gzip (`gzip` or `*`, without `q=0`)."""
    for item in header.split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip().lower() in ("gzip", "*"):
            quality = params.strip().lower().removeprefix("q=").strip()
            try:
                return not params.strip() or float(quality) > 0
            except ValueError:
                return False
    return False


_compressed: dict[str, bytes] = {}
_compressed_lock = threading.Lock()


def compressed(etag: str, body: bytes) -> bytes:
    """`body` gzipped (deterministically: no timestamp), kept for the last two ETags (the live one and the one a
    slow reader may still be fetching) so each catalog document is compressed once per process."""
    with _compressed_lock:
        found = _compressed.get(etag)
    if found is None:
        found = gzip.compress(body, compresslevel=6, mtime=0)
        with _compressed_lock:
            _compressed[etag] = found
            while len(_compressed) > 2:
                del _compressed[next(iter(_compressed))]
    return found

def _media_type(name: str) -> str:
    if name.endswith(".tar.zst"):
        return "application/zstd"
    if name.endswith(".log"):
        return "text/plain; charset=utf-8"
    if name.endswith(".json"):
        return "application/json"
    return "application/octet-stream"


def _error(status: int, code: str, reason: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": code, "reason": reason}, headers=headers)


class BodyLimit:
    """Refuse request bodies over the limit before they are read into memory (with or without Content-Length)."""

    def __init__(self, app: ASGIApp, limit: int, route_limits: dict[str, int] | None = None) -> None:
        self.app = app
        self.limit = limit
        self.route_limits = route_limits or {}  # exact path -> its own limit (publishing recipes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.route_limits.get(scope.get("path", ""), self.limit)
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await _error(413, "too_large", f"request body over {limit} bytes")(scope, receive, send)
                return
        # Bodies are small (64 KiB, 1 MiB for publishing), so read the whole body first and replay it to the app.
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > limit:
                await _error(413, "too_large", f"request body over {limit} bytes")(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


LOOPBACK_HOST_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]"})


def loopback_host_name(host: str) -> bool:
    """True if a Host header names 127.0.0.1, localhost or [::1], with or without a numeric port."""
    name, port = host.lower(), ""
    if name.startswith("["):
        end = name.find("]")
        if end < 0:
            return False
        name, rest = name[: end + 1], name[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                return False
            port = rest[1:]
            if not port:
                return False
    elif ":" in name:
        name, port = name.split(":", 1)
        if not port:
            return False
    return name in LOOPBACK_HOST_NAMES and (not port or (port.isascii() and port.isdigit()))


class LoopbackHostOnly:
    """Refuse requests whose Host header is not a loopback name: the embedded farm's guard against DNS rebinding.

    The embedded farm listens on 127.0.0.1 only, but a web page whose host name starts resolving to 127.0.0.1 can
    make the user's browser send it requests; those carry the page's host name. Only the embedded composition root
    turns this on: a deployment behind a load balancer has its own host names.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            hosts = [value for name, value in scope.get("headers", []) if name == b"host"]
            host = hosts[0].decode("latin-1") if len(hosts) == 1 else ""
            if not loopback_host_name(host):
                reason = f"this farm answers only requests to a loopback host (127.0.0.1, localhost, [::1]), not {host[:80]!r}"
                if scope["type"] == "http":
                    await _error(403, "forbidden_host", reason)(scope, receive, send)
                else:
                    await send({"type": "websocket.close", "code": 1008})
                return
        await self.app(scope, receive, send)


def create_app(
    service: FarmService,
    *,
    loopback_only: bool = False,
    status: Callable[[], dict[str, Any]] | None = None,
    problem: Callable[[], str | None] | None = None,
    access: AccessPolicy | None = None,
    blob_file: Callable[[str], Path | None] | None = None,
) -> ASGIApp:
    """The API over `service`. `loopback_only` (the embedded farm) refuses Host headers that are not loopback names;
    `status` adds the deployment's own fields to /health (the embedded farm: its workers' state); `problem` names a
    reason builds cannot progress (workers failing), which a waiting client is told. `access` (pkgc/farm/access.py)
    asks for API tokens: to start builds, and for every request but /health when reads are not public. `blob_file`
    (the embedded farm: its blob directory) serves `/v1/blobs/NAME`, the URLs its blob store makes; without it blobs
    are served elsewhere (a CDN, presigned URLs) and the route does not exist."""
    app = FastAPI(
        title="pkgc build farm",
        version=pkgc.__version__,
        description="Resolve packages with build options to artifacts; long-poll for builds in progress.",
    )

    @app.exception_handler(PkgcError)
    async def _pkgc_error(_request: Request, exc: PkgcError) -> JSONResponse:
        return _error(exc.http_status, exc.code, str(exc), exc.http_headers())

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first: dict[str, Any] = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        message = first.get("msg", "invalid request")
        reason = f"{where}: {message}" if where else message
        return _error(422, "invalid_request", reason)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, "http_error", str(exc.detail))

    @app.get(f"{API_PREFIX}/health")
    async def health() -> dict[str, Any]:
        # On the event loop, not in the thread pool: it answers however many requests are waiting for a thread.
        extra = status() if status else {}
        return {
            "status": "ok",
            "version": pkgc.__version__,
            "platform": str(service.platform),  # the default build platform (requests that state none)
            "platforms": [str(p) for p in service.platforms],  # every build platform this farm builds for
            **extra,
        }

    @app.get(f"{API_PREFIX}/packages", response_model=SearchResponse)
    def search(q: str = "") -> SearchResponse:
        return SearchResponse(results=service.search(q))

    @app.get(f"{API_PREFIX}/catalog", response_model=CatalogResponse)
    def catalog(request: Request) -> Response:
        # The stored snapshot, as written when recipes were published: no catalog scan per request. `debian=1`: with
        # the Debian catalog's state (asked for by clients that know the field; older ones would refuse it).
        body, etag = service.catalog_document(with_debian=request.query_params.get("debian") == "1")
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers={"ETag": etag, "Vary": "Accept-Encoding"})
        if len(body) >= GZIP_MIN_BYTES and accepts_gzip(request.headers.get("accept-encoding", "")):
            # The whole Debian catalog is about 6 MB of JSON, over a Lambda's 6 MB response limit once escaped;
            # gzipped it is under 1 MB. Compressed once per document (its ETag), not per request.
            return Response(
                compressed(etag, body),
                media_type="application/json",
                headers={"ETag": etag, "Content-Encoding": "gzip", "Vary": "Accept-Encoding"},
            )
        return Response(body, media_type="application/json", headers={"ETag": etag, "Vary": "Accept-Encoding"})

    @app.get(f"{API_PREFIX}/packages/{{name}}/builds", response_model=BuildsResponse)
    def builds_of(name: str) -> BuildsResponse:
        return BuildsResponse(builds=service.builds_of(name))

    @app.get(f"{API_PREFIX}/packages/{{name}}", response_model=PackageDetails)
    def details(name: str, platform: str | None = None) -> PackageDetails:
        return service.details(name, Platform.parse(platform) if platform is not None else None)

    @app.post(f"{API_PREFIX}/resolve", response_model=ResolveResponse)
    async def resolve(body: ResolveRequest, request: Request) -> ResolveResponse:
        # Cache hits (the common case) are answered on the event loop; anything that needs a store goes to a thread.
        # A cache hit starts no build, so it needs no token (when reads are not public, TokenGate checked one).
        answer = service.resolve_from_memory(body)
        if answer is not None:
            return answer
        admit = access.admitter(request.headers.get("authorization")) if access is not None else None
        return await run_in_threadpool(service.resolve, body, admit)

    @app.post(f"{API_PREFIX}/wait", response_model=WaitResponse)
    async def wait(body: WaitRequest) -> WaitResponse:
        # Async: a long-poll sleeps on the event loop instead of holding one of the thread pool's 40 threads.
        reason = problem() if problem else None
        if reason:
            answer = await service.wait_async(body.keys, 0, body.seen)
            if answer.finished:
                return answer
            raise FarmUnavailable(reason)
        return await service.wait_async(body.keys, body.timeout, body.seen)

    @app.get(f"{API_PREFIX}/builds/{{key}}", response_model=BuildInfo)
    def build(key: str) -> BuildInfo:
        return service.build(key)

    @app.get(f"{API_PREFIX}/builds/{{key}}/log", response_class=PlainTextResponse)
    def build_log(key: str) -> Response:
        return PlainTextResponse(service.build_log(key))

    def publisher(request: Request) -> None:
        """The admin check of POST /v1/recipes, run (in a thread: a token read) before its body is validated, so a
        caller without the right token learns nothing about what the farm would accept."""
        if access is None:
            raise Forbidden(
                "this farm takes no recipes over the API: it has no API tokens, so nobody is its admin",
                hint="the embedded farm publishes the recipes of PKGC_RECIPE_PATH when it starts; to publish through "
                "it, run it with PKGC_FARM_REQUIRE_TOKEN=1 and an admin token ('pkgc farm token create NAME --admin')",
            )
        access.check_publish(request.headers.get("authorization"))

    @app.post(f"{API_PREFIX}/recipes", response_model=PublishResponse, dependencies=[Depends(publisher)])
    def publish(body: PublishRequest) -> PublishResponse:
        # Admin only. A recipe with an error is skipped and named (as at the embedded farm's start); 422 if none is
        # left. Published recipes are in the catalog at once; other API containers see them within the recipe TTL.
        outcome = service.publish_batch((recipe.file, recipe.text) for recipe in body.recipes)
        skipped = [  # the parser names the file first; the answer names it in its own field
            SkippedRecipeFile(file=file, error=recipe_error_reason(exc).removeprefix(f"{file}: ") or "invalid")
            for file, exc in outcome.skipped
        ]
        if not outcome.published:
            listed = "; ".join(f"{item.file}: {item.error}" for item in skipped)
            raise RecipeError(f"no recipe could be published: {listed}"[:MAX_ERROR_LENGTH])
        return PublishResponse(
            published=[
                PublishedRecipe(file=file, name=recipe.name, version=recipe.newest_version().version)
                for file, recipe in outcome.published
            ],
            skipped=skipped,
        )

    if blob_file is not None:
        files = blob_file

        @app.get(f"{API_PREFIX}/blobs/{{name:path}}")
        def blob(name: str) -> Response:
            if not valid_blob_name(name):
                raise UsageError(f"invalid blob name {name[:80]!r}")
            path = files(name)
            if path is None:
                raise NotFound(f"no blob {name}")
            # A content blob's name is its bytes' digest: it never changes, so any cache may keep it for good.
            digest = content_digest(name)
            headers = {"Cache-Control": "no-cache"}
            if digest is not None:
                headers = {"Cache-Control": "public, max-age=31536000, immutable", "X-Checksum-Sha256": digest}
            return FileResponse(path, media_type=_media_type(name), headers=headers)

    limited: ASGIApp = BodyLimit(app, MAX_BODY_BYTES, {f"{API_PREFIX}/recipes": MAX_PUBLISH_BODY_BYTES})
    if access is not None and not access.settings.public_read:
        limited = TokenGate(limited, access)
    return LoopbackHostOnly(limited) if loopback_only else limited


def openapi_document(service: FarmService) -> str:
    app = create_app(service)
    assert isinstance(app, BodyLimit) and isinstance(app.app, FastAPI)
    return json.dumps(app.app.openapi(), indent=2)
