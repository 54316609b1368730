"""Who may ask the farm for what: API tokens, the read and build settings, and the quotas of new builds.

A farm on the internet spends money on every build it starts, so anything that can start one (a resolve that would
create a build, or queue a failed one again) needs a valid token within its quotas; reading (catalog, search,
details, existing builds' answers, wait, logs, artifacts) can stay public (`public_read`). Retrying failed builds
and publishing recipes need an admin token.

Tokens are checked against the store on every request that needs one, with no cache, so a revoked token is
refused at once. Only the sha256 of a secret is stored; the secret is shown once, when it is made. A token is
looked at only when the request needs one: a public read or a resolve that starts nothing ignores the header, so
the cache-hit path stays free of store reads.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from pkgc.core.errors import Forbidden, PkgcError, RateLimited, Unauthorized, UsageError
from pkgc.core.protocol import API_PREFIX
from pkgc.farm.ports import HOUR_SECONDS, BuildStore, TokenRecord, TokenStore, hour_window
from pkgc.farm.service import BuildAdmission
from pkgc.farm.token_admin import hash_secret

MAX_SECRET_LENGTH = 200
# A token's in-flight builds finish at times nobody can predict: a client told to wait this long polls gently.
IN_FLIGHT_RETRY_SECONDS = 60
_SECRET_CHARS = re.compile(r"[A-Za-z0-9._~+/=-]+")


def bearer_secret(authorization: str | None) -> str | None:
    """The secret of an `Authorization: Bearer <secret>` header; None without the header; Unauthorized if it is
    not one bearer token of sane characters and length (it is only ever hashed, never used as anything else)."""
    if authorization is None or not authorization.strip():
        return None
    scheme, _, secret = authorization.strip().partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        raise Unauthorized("the Authorization header must be 'Bearer <token>'")
    if len(secret) > MAX_SECRET_LENGTH or not _SECRET_CHARS.fullmatch(secret):
        raise Unauthorized("the bearer token is malformed")
    return secret


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _flag(environ: Mapping[str, str], name: str, default: bool) -> bool:
    value = environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise UsageError(f"{name} must be 1 or 0 (true or false), not {value[:40]!r}")


@dataclass(frozen=True)
class AccessSettings:
    """`public_read`: reading needs no token. `require_token`: starting builds needs a token (and its quotas).

    The embedded farm (loopback, one user) defaults to neither check; a farm on AWS requires tokens.
    """

    public_read: bool = True
    require_token: bool = False

    def __post_init__(self) -> None:
        if not self.public_read and not self.require_token:
            raise UsageError("a farm whose reads need a token must require tokens to start builds too")

    @property
    def open(self) -> bool:
        """No check at all: what the embedded farm does by default."""
        return self.public_read and not self.require_token

    @classmethod
    def from_env(cls, environ: Mapping[str, str], backend: str = "local") -> AccessSettings:
        """`PKGC_FARM_REQUIRE_TOKEN` and `PKGC_FARM_PUBLIC_READ` (1/0), defaulting by backend (aws: tokens)."""
        return cls(
            public_read=_flag(environ, "PKGC_FARM_PUBLIC_READ", True),
            require_token=_flag(environ, "PKGC_FARM_REQUIRE_TOKEN", backend == "aws"),
        )


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


@dataclass
class AccessPolicy:
    """The checks behind the API: one token lookup per request that needs one, and an atomic charge per resolve
    that starts builds."""

    settings: AccessSettings
    tokens: TokenStore
    builds: BuildStore
    clock: Callable[[], float] = field(default=time.time)

    def authenticate(self, authorization: str | None) -> TokenRecord | None:
        """The caller's token as stored now (None without one); Unauthorized if it is unknown or revoked."""
        secret = bearer_secret(authorization)
        if secret is None:
            return None
        record = self.tokens.get(hash_secret(secret))
        if record is None:
            raise Unauthorized("the API token is not known to this farm")
        if record.revoked:
            raise Unauthorized(f"the API token '{record.name}' was revoked")
        return record

    def require_caller(self, authorization: str | None, doing: str) -> TokenRecord:
        record = self.authenticate(authorization)
        if record is None:
            raise Unauthorized(
                f"{doing} needs an API token",
                hint="ask the farm's operator for one and run 'pkgc config set token TOKEN'",
            )
        return record

    def check_read(self, authorization: str | None) -> None:
        """Reading needs a valid token unless reads are public."""
        if not self.settings.public_read:
            self.require_caller(authorization, "reading from this farm")

    def check_publish(self, authorization: str | None) -> TokenRecord:
        """Publishing recipes needs an admin token (for the publishing endpoint and the deploy tooling)."""
        record = self.require_caller(authorization, "publishing recipes")
        if record.role != "admin":
            raise Forbidden(f"publishing recipes needs an admin token; '{record.name}' is not one")
        return record

    def admitter(self, authorization: str | None) -> Callable[[BuildAdmission], None] | None:
        """The `admit` callback for FarmService.resolve, or None when starting builds needs no token."""
        if not self.settings.require_token:
            return None

        def admit(admission: BuildAdmission) -> None:
            self.admit(authorization, admission)

        return admit

    def admit(self, authorization: str | None, admission: BuildAdmission) -> None:
        """Let the caller start the builds of `admission`, charging its token, or raise 401, 403 or 429."""
        count = len(admission.keys)
        caller = self.require_caller(authorization, f"starting {_plural(count, 'new build')}")
        if admission.retry and caller.role != "admin":
            raise Forbidden(
                f"retrying failed builds needs an admin token; '{caller.name}' is not one",
                hint="ask without --retry-failed, or ask the farm's operator",
            )
        self._forget_finished(caller)
        now = self.clock()
        admitted, record = self.tokens.admit(caller.token_hash, now, admission.keys)
        if not admitted:
            raise self._refusal(record or caller, count, now)

    def _forget_finished(self, record: TokenRecord) -> None:
        """Drop the token's in-flight builds that have finished since (one batch read of a bounded set)."""
        if not record.in_flight:
            return
        found = self.builds.get_many(list(record.in_flight))
        done = tuple(k for k in record.in_flight if k not in found or found[k].status.finished)
        if done:
            self.tokens.forget_in_flight(record.token_hash, done)

    def _refusal(self, record: TokenRecord, count: int, now: float) -> PkgcError:
        if record.revoked:
            return Unauthorized(f"the API token '{record.name}' was revoked")
        window_left = math.ceil((hour_window(now) + 1) * HOUR_SECONDS - now)
        starting = _plural(count, "new build")
        if count > record.builds_per_hour or count > record.max_in_flight:
            limit = min(record.builds_per_hour, record.max_in_flight)
            return RateLimited(
                f"this request would start {starting}, and the token '{record.name}' may start at most {limit} "
                "at a time",
                retry_after=window_left,
                hint="ask for fewer packages or option sets at once",
            )
        started = record.started_in_window(hour_window(now))
        problems: list[str] = []
        retry_after = 0
        if started + count > record.builds_per_hour:
            problems.append(f"started {started} of its {record.builds_per_hour} builds this hour")
            retry_after = window_left
        if len(record.in_flight) + count > record.max_in_flight:
            problems.append(f"has {len(record.in_flight)} of its {record.max_in_flight} builds in flight")
            retry_after = max(retry_after, IN_FLIGHT_RETRY_SECONDS)
        if not problems:  # refused by a concurrent change that a fresh read no longer shows: try again soon
            problems.append("was charged by another request at the same moment")
            retry_after = 1
        return RateLimited(
            f"the token '{record.name}' {' and '.join(problems)}; this request would start {starting}",
            retry_after=retry_after,
        )


def access_policy(
    settings: AccessSettings, tokens: TokenStore | None, builds: BuildStore, clock: Callable[[], float] = time.time
) -> AccessPolicy | None:
    """What a composition root hands to `create_app`: None for an open farm (no check, no token store needed)."""
    if settings.open:
        return None
    if tokens is None:
        raise UsageError("this farm requires API tokens but has no token store configured")
    return AccessPolicy(settings, tokens, builds, clock)


class TokenGate:
    """With reads not public, every request but /v1/health needs a valid token (a new route is guarded by default).

    The token is looked up in a thread (a store read); the answer to a refused request is the API's JSON error.
    """

    def __init__(self, app: ASGIApp, policy: AccessPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path") != f"{API_PREFIX}/health":
            values = [value for name, value in scope.get("headers", []) if name == b"authorization"]
            authorization = values[0].decode("latin-1") if len(values) == 1 else None
            try:
                if len(values) > 1:
                    raise Unauthorized("send one Authorization header")
                await run_in_threadpool(self.policy.check_read, authorization)
            except PkgcError as exc:
                answer = JSONResponse(
                    status_code=exc.http_status,
                    content={"error": exc.code, "reason": str(exc)},
                    headers=exc.http_headers(),
                )
                await answer(scope, receive, send)
                return
        await self.app(scope, receive, send)
