"""Source fetching: the recipe's URLs, then its mirrors, checked by sha256 and cached by checksum.

`mirror://debian/PATH` is resolved against the machine's apt configuration (as Nix's mirror:// scheme is against
its mirror list), so no archive host is written in our code; the recipe's sha256 decides whether what came back
is the source it names.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx

from pkgc.core.errors import SourceUnavailable
from pkgc.core.recipe import PatchSeries, SourceVersion

MAX_SOURCE_BYTES = 1024 * 1024 * 1024
_CHUNK = 1024 * 1024


def debian_mirrors_from_apt(root: Path = Path("/etc/apt")) -> list[str]:
    """Base URLs of the Debian archive in apt's sources (deb822 `.sources` and one-line `.list` files)."""
    bases: list[str] = []
    files = sorted((root / "sources.list.d").glob("*.sources")) + sorted((root / "sources.list.d").glob("*.list"))
    if (root / "sources.list").is_file():
        files.insert(0, root / "sources.list")
    for path in files:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                if re.search(r"^Enabled:\s*no", stanza, re.M | re.I):
                    continue
                uris = re.search(r"^URIs:\s*(.+)$", stanza, re.M)
                suites = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
                if uris and suites and any("-" not in s and "/" not in s for s in suites.group(1).split()):
                    bases.extend(uris.group(1).split())
        else:
            for line in text.splitlines():
                match = re.match(r"^\s*deb(?:-src)?\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line)
                if match and "-" not in match.group(2) and "/" not in match.group(2):
                    bases.append(match.group(1))
    seen: list[str] = []
    for base in bases:
        base = base.rstrip("/")
        if base.startswith(("http://", "https://")) and "security" not in base and base not in seen:
            seen.append(base)
    return seen


def is_loopback(url: str) -> bool:
    return httpx.URL(url).host in ("127.0.0.1", "localhost", "::1")


class SourceFetcher:
    def __init__(
        self,
        cache_dir: Path,
        *,
        debian_mirrors: list[str] | None = None,
        client: httpx.Client | None = None,
        log: Callable[[str], None] = lambda _line: None,
        loopback_only: bool = False,
    ) -> None:
        self._cache = cache_dir
        # A farm under test must never leave the machine: sources come from its seeded cache or from loopback.
        self._loopback_only = loopback_only
        self._cache.mkdir(parents=True, exist_ok=True)
        override = os.environ.get("PKGC_DEBIAN_MIRROR")
        if debian_mirrors is not None:
            self._debian = debian_mirrors
        elif override:
            self._debian = [override.rstrip("/")]
        else:
            self._debian = debian_mirrors_from_apt()
        self._client = client or httpx.Client(timeout=httpx.Timeout(60.0, connect=10.0), follow_redirects=True)
        self._log = log

    def candidates(self, url: str) -> list[str]:
        if url.startswith("mirror://debian/"):
            path = url.removeprefix("mirror://debian/")
            found = [f"{base}/{path}" for base in self._debian]
        elif url.startswith("mirror://"):
            found = []
        else:
            found = [url]
        return [u for u in found if is_loopback(u)] if self._loopback_only else found

    def cached(self, sha256: str) -> Path:
        return self._cache / sha256

    def fetch(self, source: SourceVersion | PatchSeries) -> Path:
        """Return a local file with exactly the bytes the recipe names (a source, or a patch series), trying every
        URL, then every mirror, in order."""
        target = self.cached(source.sha256)
        if target.is_file():
            self._log(f"source {source.sha256[:12]} found in cache")
            return target
        problems: list[str] = []
        for url in source.urls + source.mirrors:
            for candidate in self.candidates(url):
                try:
                    self._download(candidate, source.sha256, target)
                    self._log(f"fetched {candidate}")
                    return target
                except (httpx.HTTPError, OSError, ValueError) as exc:
                    problems.append(f"{candidate}: {exc}")
                    self._log(f"could not use {candidate}: {exc}")
        raise SourceUnavailable(
            f"no URL or mirror produced source sha256 {source.sha256}",
            hint="; ".join(problems[-3:])
            or ("this farm fetches from loopback only (PKGC_FETCH_LOOPBACK_ONLY)" if self._loopback_only else "")
            or "no usable URL",
        )

    def _download(self, url: str, sha256: str, target: Path) -> None:
        temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
        digest = hashlib.sha256()
        size = 0
        try:
            with self._client.stream("GET", url) as response, temporary.open("wb") as out:
                response.raise_for_status()
                for chunk in response.iter_bytes(_CHUNK):
                    size += len(chunk)
                    if size > MAX_SOURCE_BYTES:
                        raise ValueError("source larger than the limit")
                    digest.update(chunk)
                    out.write(chunk)
            if digest.hexdigest() != sha256:
                raise ValueError(f"sha256 mismatch: got {digest.hexdigest()}")
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)
