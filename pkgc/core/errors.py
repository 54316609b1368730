"""Errors that carry their own exit code and HTTP status.

Use cases raise these; exactly one place per edge (the CLI's main, the API's exception handler) turns them into
an exit code or a JSON response, so the mapping is documented once and tested once.
"""

from __future__ import annotations

import errno


class PkgcError(Exception):
    """Base of every expected failure; the message is one line a user can act on."""

    exit_code = 1
    http_status = 400
    code = "error"

    def __init__(self, message: str, *, hint: str | None = None, details: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        # Supporting text shown above the one-line error, such as the tail of a failed build's log.
        self.details = details

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"

    def http_headers(self) -> dict[str, str]:
        """Headers the API sends with this error (a 401's WWW-Authenticate, a 429's Retry-After)."""
        return {}


class UsageError(PkgcError):
    """The request itself is wrong: a bad name, version, option or argument."""

    exit_code = 2
    http_status = 422
    code = "invalid_request"


class NotFound(PkgcError):
    """A package, version or build that does not exist."""

    exit_code = 3
    http_status = 404
    code = "not_found"


class BuildFailed(PkgcError):
    """The farm tried and the compile failed; the log says why."""

    exit_code = 5
    http_status = 409
    code = "build_failed"


class FarmUnavailable(PkgcError):
    """The farm cannot be reached or answered with a server error."""

    exit_code = 4
    http_status = 503
    code = "farm_unavailable"


class IntegrityError(PkgcError):
    """A download or artifact is not what it claims to be: wrong checksum, unsafe member, leftover placeholder."""

    exit_code = 6
    http_status = 422
    code = "integrity"


class BadFarmAnswer(IntegrityError):
    """The farm answered with something the protocol does not allow: a crafted name, digest, URL or size, a key
    that is not in the answer, or not JSON at all. Nothing is written: the answer is checked before any use."""

    code = "bad_farm_answer"


class ConflictError(PkgcError):
    """The requested change clashes with what is already there (a file owned by another package, a lock)."""

    exit_code = 7
    http_status = 409
    code = "conflict"


class SourceUnavailable(PkgcError):
    """No URL or mirror of a recipe's source produced the expected bytes."""

    exit_code = 8
    http_status = 502
    code = "source_unavailable"


class DiskFull(PkgcError):
    """The local disk (prefix, download cache or database) ran out of space; the change was undone."""

    exit_code = 9
    http_status = 507
    code = "disk_full"


class Unauthorized(PkgcError):
    """The request needs a valid API token and came without one, with a malformed one, or with an unknown or
    revoked one."""

    exit_code = 10
    http_status = 401
    code = "unauthorized"

    def http_headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="pkgc"'}


class Forbidden(PkgcError):
    """The token is valid but may not do this (retrying failed builds and publishing recipes need an admin token)."""

    exit_code = 11
    http_status = 403
    code = "forbidden"


class RateLimited(PkgcError):
    """The token's quota of new builds per hour or of builds in flight is used up; `retry_after` says when to try
    again (seconds)."""

    exit_code = 12
    http_status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.retry_after = max(1, int(retry_after))

    def http_headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


_DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def is_disk_full(exc: BaseException) -> bool:
    """An OSError for a full disk or quota, or SQLite's (possibly wrapped) "database or disk is full"."""
    if isinstance(exc, OSError) and exc.errno in _DISK_FULL_ERRNOS:
        return True
    return "database or disk is full" in str(exc)


def disk_full(exc: BaseException) -> DiskFull:
    where = getattr(exc, "filename", None)
    return DiskFull(
        f"no space left on device{f' writing {where}' if where else ''}: nothing was changed",
        hint="free some space and run the command again",
    )
