"""The Debian catalog of a farm without a home directory (AWS): the parsed index kept in the farm's blob store.

A farm on AWS has no disk that lasts: each API container (a Lambda execution environment) starts with an empty
`/tmp`. So `pkgc farm catalog update` against it parses the Sources index and writes `index.sqlite` in a temporary
directory as the embedded farm does, then stores it gzipped as an immutable blob named by its sha256
(`catalog/debian/<sha256>.sqlite.gz`) and only then replaces a small mutable pointer (`catalog/debian/current.json`:
{"blob", "sha256", "packages", "updated_at"}). A reader that sees the new pointer therefore always finds its blob;
one that still sees the old pointer keeps using the old blob, which is never rewritten.

`BlobDebianCatalog` is the reading side, the `GeneratedRecipes` port over the `BlobStore` port (no boto3 here: the
same class runs over a directory in unit tests and over S3 in the Lambda): it reads the pointer at most once per
`ttl` seconds, downloads the pointed blob into its cache directory only when the pointer changed, checks its sha256,
decompresses it atomically (temporary file + rename) and delegates to `DebianCatalog` over that file. No pointer is
an empty catalog; a blob whose bytes do not match the pointer's sha256 is refused in one logged line, and the copy
in use before stays in use.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
import weakref
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pkgc.core.errors import FarmUnavailable, PkgcError
from pkgc.core.recipe import Recipe
from pkgc.core.toolchain import ToolchainDefinition
from pkgc.farm.debian_catalog import DebianCatalog
from pkgc.farm.ports import BlobStore

log = logging.getLogger(__name__)

POINTER_NAME = "catalog/debian/current.json"
_BLOB_PREFIX = "catalog/debian/"
_BLOB_NAME = re.compile(r"catalog/debian/([0-9a-f]{64})\.sqlite\.gz")
DEFAULT_POINTER_TTL = 60.0
# The pointer is a few hundred bytes; anything much larger is not one (and is not parsed).
MAX_POINTER_BYTES = 4096
# index.sqlite is about 38 MB for Debian's 34,000 source packages; a blob that inflates past this is refused
# rather than allowed to fill a Lambda's /tmp.
MAX_INDEX_BYTES = 1 << 30
_CHUNK = 1 << 20


def debian_blob_name(digest: str) -> str:
    """The immutable blob of one published index: named by the sha256 of its (gzipped) bytes."""
    return f"{_BLOB_PREFIX}{digest}.sqlite.gz"


@dataclass(frozen=True)
class CatalogPointer:
    """The mutable pointer to the Debian index in use: which blob, its sha256, how many packages, when."""

    blob: str
    sha256: str
    packages: int
    updated_at: float

    def encode(self) -> bytes:
        document = {"blob": self.blob, "sha256": self.sha256, "packages": self.packages, "updated_at": self.updated_at}
        return json.dumps(document, sort_keys=True).encode()

    @classmethod
    def decode(cls, data: bytes) -> CatalogPointer:
        """Parse and check a stored pointer; ValueError naming what is wrong. The blob name must be the one its
        sha256 gives, so a pointer can name nothing but a published index (no other object, no path)."""
        if len(data) > MAX_POINTER_BYTES:
            raise ValueError(f"{len(data)} bytes, more than a pointer's {MAX_POINTER_BYTES}")
        try:
            document = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not JSON ({exc})") from None
        if not isinstance(document, dict):
            raise ValueError("not a JSON object")
        blob, digest = document.get("blob"), document.get("sha256")
        packages, updated_at = document.get("packages"), document.get("updated_at")
        if not isinstance(blob, str) or not isinstance(digest, str):
            raise ValueError("blob and sha256 must be strings")
        found = _BLOB_NAME.fullmatch(blob)
        if found is None or found.group(1) != digest:
            raise ValueError(f"blob {blob[:100]!r} is not the index blob of sha256 {digest[:64]!r}")
        if isinstance(packages, bool) or not isinstance(packages, int) or packages < 0:
            raise ValueError("packages must be a count")
        if isinstance(updated_at, bool) or not isinstance(updated_at, int | float):
            raise ValueError("updated_at must be a time")
        return cls(blob=blob, sha256=digest, packages=packages, updated_at=float(updated_at))


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def publish_index(blobs: BlobStore, index: Path, packages: int, *, now: float | None = None) -> CatalogPointer:
    """Store `index` (an index.sqlite written by `write_index`) gzipped as an immutable blob, then point the
    catalog at it. The blob is written before the pointer, so a reader never follows a pointer to nothing; the
    same index gives the same bytes and name. Returns the pointer written."""
    with tempfile.TemporaryDirectory(prefix="pkgc-debian-publish-") as work:
        packed = Path(work) / "index.sqlite.gz"
        # mtime=0: the same index always gives the same bytes, hence the same name.
        with (
            index.open("rb") as source,
            packed.open("wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as out,
        ):
            shutil.copyfileobj(source, out, _CHUNK)
        digest = _sha256_of(packed)
        name = debian_blob_name(digest)
        # Written even if a blob of this name exists: the same bytes again, and a damaged copy is repaired.
        blobs.put_named(name, packed.read_bytes())
    pointer = CatalogPointer(
        blob=name, sha256=digest, packages=packages, updated_at=time.time() if now is None else now
    )
    blobs.put_named(POINTER_NAME, pointer.encode())
    return pointer


def read_pointer(blobs: BlobStore) -> CatalogPointer | None:
    """The pointer as stored now (None: no index was ever published). ValueError if it is malformed."""
    data = blobs.get_bytes(POINTER_NAME)
    return None if data is None else CatalogPointer.decode(data)


class _Refused(Exception):
    """A blob that is not what its pointer says (wrong sha256, not gzip, too large): never used."""


@dataclass(frozen=True)
class _Copy:
    pointer: CatalogPointer
    catalog: DebianCatalog


class BlobDebianCatalog:
    """Generated recipes from the index the blob store's pointer names, kept as a local copy in `cache_dir`.

    `cache_dir` is made (mode 0700) when first needed; None: a private temporary directory of this process, removed
    when the object goes away. Copies are named by their blob's sha256 and written by rename, so a copy found there
    is a complete one. Thread-safe: one thread refreshes while the others keep answering from the copy in use (or,
    before there is one, wait for it).
    """

    def __init__(
        self,
        blobs: BlobStore,
        cache_dir: Path | None = None,
        *,
        ttl: float = DEFAULT_POINTER_TTL,
        clock: Callable[[], float] = time.monotonic,
        toolchain: ToolchainDefinition | None = None,
    ) -> None:
        self._blobs = blobs
        self._cache_dir = cache_dir
        self._ttl = ttl
        self._clock = clock
        self._toolchain = toolchain
        self._lock = threading.Lock()
        self._checked_at: float | None = None
        self._copy: _Copy | None = None
        self._refused: CatalogPointer | None = None  # the last pointer whose blob was refused: not fetched again
        self._retired: Path | None = None  # the file of the copy used before this one
        self.downloads = 0  # how many blobs were fetched (tests, and the logs' story)

    # -- the GeneratedRecipes port ------------------------------------------------------------------------
    def identity(self, name: str) -> str | None:
        catalog = self._current()
        return None if catalog is None else catalog.identity(name)

    def recipe(self, name: str) -> Recipe | None:
        catalog = self._current()
        return None if catalog is None else catalog.recipe(name)

    def packages(self) -> list[tuple[str, str, str, str]]:
        catalog = self._current()
        return [] if catalog is None else catalog.packages()

    def pointer(self) -> CatalogPointer | None:
        """The pointer of the copy in use (None: an empty catalog)."""
        self._current()
        found = self._copy
        return None if found is None else found.pointer

    # -- keeping the copy current -------------------------------------------------------------------------
    def _current(self) -> DebianCatalog | None:
        now = self._clock()
        if self._checked_at is not None and now - self._checked_at < self._ttl:
            found = self._copy
            return None if found is None else found.catalog
        first = self._checked_at is None
        # Before the first check everyone waits for it (an answer from no copy would be wrong); after it, one
        # thread refreshes and the others answer from the copy in use.
        if self._lock.acquire(blocking=first):
            try:
                if self._checked_at is None or self._clock() - self._checked_at >= self._ttl:
                    self._refresh()
            finally:
                self._lock.release()
        found = self._copy
        return None if found is None else found.catalog

    def _refresh(self) -> None:
        """Read the pointer; fetch and switch to its blob if it changed. Called with the lock held."""
        try:
            pointer = read_pointer(self._blobs)
        except ValueError as exc:
            self._checked_at = self._clock()
            log.warning("Debian catalog: the pointer %s is malformed (%s); keeping the copy in use", POINTER_NAME, exc)
            return
        except PkgcError as exc:
            if self._copy is None:  # nothing to answer from: the caller must hear that the farm cannot tell
                raise
            self._checked_at = self._clock()
            log.warning("Debian catalog: cannot read %s (%s); keeping the copy in use", POINTER_NAME, exc.message)
            return
        current = self._copy
        if pointer is None:
            self._switch(None)
        elif current is not None and current.pointer.sha256 == pointer.sha256:
            if current.catalog.path.is_file():
                self._copy = _Copy(pointer, current.catalog)  # same index, maybe a newer time or count
            else:  # someone removed the copy: fetch it again
                self._load(pointer)
        elif pointer != self._refused:  # a refused blob is tried again only when the pointer is written again
            self._load(pointer)
        self._checked_at = self._clock()

    def _load(self, pointer: CatalogPointer) -> None:
        directory = self._directory()
        target = directory / f"{pointer.sha256}.sqlite"
        if not target.is_file():
            try:
                self._fetch(pointer, target)
            except _Refused as exc:
                self._refused = pointer
                log.warning("Debian catalog: refused %s: %s; keeping the copy in use", pointer.blob, exc)
                return
            except (PkgcError, OSError) as exc:  # an outage or a full disk: try again after the TTL
                reason = exc.message if isinstance(exc, PkgcError) else str(exc)
                if self._copy is None:
                    raise FarmUnavailable(f"cannot fetch the Debian catalog {pointer.blob}: {reason}") from None
                log.warning("Debian catalog: cannot fetch %s (%s); keeping the copy in use", pointer.blob, reason)
                return
        self._switch(_Copy(pointer, DebianCatalog(target, self._toolchain)))
        log.info("Debian catalog: using %s (%d packages)", pointer.blob, pointer.packages)

    def _fetch(self, pointer: CatalogPointer, target: Path) -> None:
        """Download the blob, check its sha256 and inflate it into `target` (temporary file + rename)."""
        directory = target.parent
        packed = directory / f".{uuid.uuid4().hex}.gz.tmp"
        inflated = directory / f".{uuid.uuid4().hex}.sqlite.tmp"
        try:
            self.downloads += 1
            if not self._blobs.download_to(pointer.blob, packed):
                raise _Refused("the blob it points to is missing")
            digest = _sha256_of(packed)
            if digest != pointer.sha256:
                raise _Refused(f"its sha256 is {digest}, the pointer says {pointer.sha256} (corrupt or truncated)")
            written = 0
            try:
                with gzip.open(packed, "rb") as source, inflated.open("wb") as out:
                    while chunk := source.read(_CHUNK):
                        written += len(chunk)
                        if written > MAX_INDEX_BYTES:
                            raise _Refused(f"it inflates to more than {MAX_INDEX_BYTES} bytes")
                        out.write(chunk)
            except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
                raise _Refused(f"it is not a gzip file ({exc})") from None
            os.replace(inflated, target)
        finally:
            packed.unlink(missing_ok=True)
            inflated.unlink(missing_ok=True)

    def _switch(self, copy: _Copy | None) -> None:
        """Use `copy` from now on. The file of the copy used until now is kept until the next switch (a request
        that took it a moment ago may still open it); the one before it is deleted, so at most two are on disk."""
        previous = self._copy
        self._copy = copy
        if previous is None or (copy is not None and previous.catalog.path == copy.catalog.path):
            return
        retired, self._retired = self._retired, previous.catalog.path
        if retired is not None and (copy is None or retired != copy.catalog.path):
            retired.unlink(missing_ok=True)

    def _directory(self) -> Path:
        if self._cache_dir is None:
            made = Path(tempfile.mkdtemp(prefix="pkgc-debian-catalog-"))
            weakref.finalize(self, shutil.rmtree, made, True)
            self._cache_dir = made
        self._cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            for stale in self._cache_dir.glob(".*.tmp"):  # left by a process that died while fetching
                if time.time() - stale.stat().st_mtime > 3600:
                    stale.unlink(missing_ok=True)
        return self._cache_dir
