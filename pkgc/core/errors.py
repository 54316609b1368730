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


class UsageError(PkgcError):
    """The request itself is wrong: a bad name, version, option or argument."""

    exit_code = 2
    http_status = 422
    code = "invalid_request"


class UnsupportedPlatform(UsageError):
    """The farm builds for no platform the client's binaries could run on, or the CPU target is beyond the client."""

    code = "unsupported_platform"


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
