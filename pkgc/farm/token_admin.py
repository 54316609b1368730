"""API tokens for the farm's operator: make one (its secret shown once), list them, revoke one by name.

The use cases behind `pkgc farm token create|list|revoke`; they take a TokenStore, so the same code serves the
embedded farm's database and (later) a DynamoDB tokens table. Pure Python: no web or database library here.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pkgc.core.errors import ConflictError, NotFound, UsageError
from pkgc.farm.ports import BuildRecord, TokenRecord, TokenStore, hour_window

SECRET_PREFIX = "pkgc_"
TOKEN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
DEFAULT_BUILDS_PER_HOUR = 20
DEFAULT_IN_FLIGHT = 10
MAX_BUILDS_PER_HOUR = 100_000
# The in-flight keys live on the token's item (a DynamoDB item is at most 400 KB; 1000 keys are about 66 KB).
MAX_IN_FLIGHT = 1000


class BuildReader(Protocol):
    """The one read `token list` needs of the build store: which in-flight builds are still unfinished."""

    def get_many(self, keys: list[str]) -> dict[str, BuildRecord]: ...


def new_secret() -> str:
    """A fresh token secret: 256 random bits, URL-safe, with a prefix that secret scanners can recognise."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """What the store keeps of a secret (and looks it up by): its sha256, so a leaked table grants nothing."""
    return hashlib.sha256(secret.encode()).hexdigest()


def validate_token_name(name: str) -> str:
    if not TOKEN_NAME.fullmatch(name):
        raise UsageError(
            f"invalid token name {name[:80]!r}",
            hint="1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    return name


def _bounded(what: str, value: int, high: int) -> int:
    if not 0 <= value <= high:
        raise UsageError(f"{what} must be between 0 and {high}, not {value}")
    return value


@dataclass(frozen=True)
class CreatedToken:
    secret: str  # shown once: only its hash is stored
    record: TokenRecord


def create_token(
    tokens: TokenStore,
    name: str,
    *,
    admin: bool = False,
    builds_per_hour: int = DEFAULT_BUILDS_PER_HOUR,
    in_flight: int = DEFAULT_IN_FLIGHT,
    clock: Callable[[], float] = time.time,
) -> CreatedToken:
    """Make a token named `name` (no other valid token may have the name: revoking is by name)."""
    validate_token_name(name)
    _bounded("--builds-per-hour", builds_per_hour, MAX_BUILDS_PER_HOUR)
    _bounded("--in-flight", in_flight, MAX_IN_FLIGHT)
    if any(t.name == name and not t.revoked for t in tokens.list_tokens()):
        raise ConflictError(
            f"a valid token named '{name}' exists", hint=f"revoke it first: pkgc farm token revoke {name}"
        )
    secret = new_secret()
    record = TokenRecord(
        token_hash=hash_secret(secret),
        name=name,
        role="admin" if admin else "user",
        builds_per_hour=builds_per_hour,
        max_in_flight=in_flight,
        created_at=clock(),
    )
    if not tokens.create(record):  # 256 random bits do not collide; a store that says so is broken
        raise ConflictError("a token with the same hash exists; nothing was created")
    return CreatedToken(secret, record)


def revoke_token(tokens: TokenStore, name: str, *, clock: Callable[[], float] = time.time) -> list[TokenRecord]:
    """Revoke the valid token(s) named `name`: refused from the next request on. Returns what was revoked."""
    validate_token_name(name)
    revoked = [
        t for t in tokens.list_tokens() if t.name == name and not t.revoked and tokens.revoke(t.token_hash, clock())
    ]
    if not revoked:
        known = any(t.name == name for t in tokens.list_tokens())
        raise NotFound(f"no valid token named '{name}'" + (" (it was revoked already)" if known else ""))
    return revoked


def token_summary(
    record: TokenRecord, builds: BuildReader | None = None, *, now: float | None = None
) -> dict[str, Any]:
    """A token as `token list` shows it (never the secret; the hash's first 12 digits tell same-named ones apart).

    With `builds`, `in_flight` counts only builds not finished yet (the stored set is pruned lazily).
    """
    when = time.time() if now is None else now
    flying = list(record.in_flight)
    if builds is not None and flying:
        found = builds.get_many(flying)
        flying = [k for k in flying if k in found and not found[k].status.finished]
    return {
        "name": record.name,
        "id": record.token_hash[:12],
        "role": record.role,
        "builds_per_hour": record.builds_per_hour,
        "max_in_flight": record.max_in_flight,
        "builds_this_hour": record.started_in_window(hour_window(when)),
        "in_flight": len(flying),
        "builds_started": record.builds_started,
        "created_at": record.created_at,
        "last_used_at": record.last_used_at or None,
        "revoked_at": record.revoked_at,
    }


def farm_token_stores(home: Path, environ: Mapping[str, str] | None = None) -> tuple[TokenStore, BuildReader]:
    """The token store and build store of the farm this process is configured for: the embedded farm's database
    under `home` (made if absent, private), or, with PKGC_FARM_BACKEND=aws and the PKGC_AWS_* names, the AWS
    farm's DynamoDB tables (how an administrator makes the first admin token of a deployed farm)."""
    from pkgc.farm.bootstrap import FarmConfig, open_ports

    env = os.environ if environ is None else environ
    if (env.get("PKGC_FARM_BACKEND") or "local").strip().lower() != "local":
        config = FarmConfig.from_env(env)
        ports = open_ports(config)
        if ports.tokens is None:
            raise UsageError("this AWS farm has no tokens table: set PKGC_AWS_TOKENS_TABLE (the data stack's output)")
        return ports.tokens, ports.builds
    from pkgc.farm.adapters.local import check_farm_database
    from pkgc.farm.paths import FarmPaths

    paths = FarmPaths(home)
    paths.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    check_farm_database(paths.database)
    ports = open_ports(FarmConfig.local(paths.home))
    assert ports.tokens is not None  # the local backend always has its token tables
    return ports.tokens, ports.builds
