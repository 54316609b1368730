"""The farm's copy of Debian's source catalog: fetched through apt, kept parsed, turned into recipes on lookup.

`update_index` runs apt-get with a private sources list holding the `deb-src` entries derived from apt's own `deb`
entries (same URIs, suites, components and Signed-By) and private lists and cache directories under the farm's
home, so the system's apt state is never touched. apt checks the signature of `InRelease` and the index's hash
against it: that is what makes the sha256 sums the generated recipes carry trustworthy.

The parsed index is kept in its own SQLite file (`<home>/debian/index.sqlite`: one row per source package, one per
binary package), replaced atomically by an update. Recipes are generated when a package is looked up, never stored
one by one: 34,000 recipe texts through the per-recipe publish path would take minutes, a lookup takes a
millisecond. A curated recipe of the same name wins (the service asks the curated catalog first).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
from dataclasses import asdict
from pathlib import Path

from pkgc.core.debian import (
    GENERATED_MARK,
    DebianFile,
    DebianIndexError,
    ParsedIndex,
    SourcePackage,
    deb_src_entries,
    generate_recipe,
    map_build_depends,
    parse_index,
)
from pkgc.core.errors import PkgcError, UsageError
from pkgc.core.recipe import Recipe
from pkgc.core.toolchain import ToolchainDefinition, load_toolchain

INDEX_FILE = "index.sqlite"
_SCHEMA = """
CREATE TABLE sources (name TEXT PRIMARY KEY, version TEXT NOT NULL, summary TEXT NOT NULL, homepage TEXT NOT NULL,
                      data TEXT NOT NULL);
CREATE TABLE binaries (name TEXT PRIMARY KEY, source TEXT NOT NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class CatalogUpdateFailed(PkgcError):
    code = "catalog_update_failed"
    exit_code = 1
    http_status = 502


def _package_json(pkg: SourcePackage) -> str:
    return json.dumps(asdict(pkg), separators=(",", ":"))


def _package_from_json(text: str) -> SourcePackage:
    data = json.loads(text)

    def file(value: dict[str, object] | None) -> DebianFile | None:
        return None if value is None else DebianFile(str(value["name"]), str(value["sha256"]), int(str(value["size"])))

    return SourcePackage(
        name=data["name"],
        debian_version=data["debian_version"],
        version=data["version"],
        format=data["format"],
        section=data["section"],
        homepage=data["homepage"],
        directory=data["directory"],
        orig=file(data["orig"]),
        debian=file(data["debian"]),
        binaries=tuple(data["binaries"]),
        build_depends=tuple(data["build_depends"]),
    )


def write_index(parsed: ParsedIndex, target: Path) -> None:
    """Store a parsed index at `target`, replacing the previous one atomically (readers see old or new)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=".index.", suffix=".sqlite", dir=target.parent)
    os.close(fd)
    try:
        connection = sqlite3.connect(temporary)
        try:
            connection.executescript(_SCHEMA)
            with connection:
                connection.executemany(
                    "INSERT INTO sources VALUES (?, ?, ?, ?, ?)",
                    [(p.name, p.version, p.summary, p.homepage, _package_json(p)) for p in parsed.packages.values()],
                )
                connection.executemany(
                    "INSERT OR IGNORE INTO binaries VALUES (?, ?)", sorted(parsed.binary_sources().items())
                )
                connection.execute("INSERT INTO meta VALUES ('skipped', ?)", (json.dumps(parsed.skipped),))
        finally:
            connection.close()
        os.replace(temporary, target)
    finally:
        Path(temporary).unlink(missing_ok=True)


class DebianCatalog:
    """Generated recipes over the stored index; an absent index is an empty catalog (a fresh farm)."""

    def __init__(self, path: Path, toolchain: ToolchainDefinition | None = None) -> None:
        self.path = path
        self._toolchain = toolchain
        self._recipes: dict[str, tuple[str, Recipe]] = {}
        # Direct mapped dependencies per package and binary → source, for cycle breaking; valid for one index file
        # (`_stamp`: its inode and modification time, as an update replaces the file).
        self._deps: dict[str, tuple[str, ...]] = {}
        self._sources: dict[str, str | None] = {}
        self._stamp: tuple[int, int] = (0, 0)

    def _connect(self) -> sqlite3.Connection | None:
        if not self.path.is_file():
            return None
        return sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)

    def _package(self, name: str) -> tuple[SourcePackage, str] | None:
        connection = self._connect()
        if connection is None:
            return None
        try:
            row = connection.execute("SELECT data FROM sources WHERE name = ?", (name,)).fetchone()
        finally:
            connection.close()
        return None if row is None else (_package_from_json(row[0]), row[0])

    def identity(self, name: str) -> str | None:
        """A string that changes whenever the package's generated recipe would (None: not in the catalog): its
        stanza and the index file it came from. It starts with a NUL, so it never equals a curated recipe's text."""
        found = self._package(name)
        if found is None:
            return None
        # The recipe also depends on other packages (binary lists, cycles): a new index is a new identity.
        try:
            info = self.path.stat()
        except OSError:
            return None
        return f"{GENERATED_MARK}{info.st_ino}.{info.st_mtime_ns}:{found[1]}"

    def recipe(self, name: str) -> Recipe | None:
        """The generated recipe of `name`, or None when the catalog does not know it (or cannot make one of it)."""
        self._check_stamp()
        found = self._package(name)
        if found is None:
            return None
        package, text = found
        cached = self._recipes.get(name)
        if cached is not None and cached[0] == text:
            return cached[1]
        connection = self._connect()
        assert connection is not None
        toolchain = self._toolchain or load_toolchain()
        try:

            def source_of(binary: str) -> str | None:
                if binary not in self._sources:
                    row = connection.execute("SELECT source FROM binaries WHERE name = ?", (binary,)).fetchone()
                    self._sources[binary] = row[0] if row else None
                return self._sources[binary]

            def dependencies_of(other: str) -> tuple[str, ...]:
                if other not in self._deps:
                    row = connection.execute("SELECT data FROM sources WHERE name = ?", (other,)).fetchone()
                    found: tuple[str, ...] = ()
                    if row is not None:
                        mapped = map_build_depends(_package_from_json(row[0]), source_of, toolchain)
                        found = mapped.build + mapped.runtime
                    self._deps[other] = found
                return self._deps[other]

            try:
                recipe, _ = generate_recipe(package, source_of, toolchain, dependencies_of)
            except DebianIndexError:
                return None
        finally:
            connection.close()
        self._recipes[name] = (text, recipe)
        return recipe

    def dropped(self, name: str) -> tuple[str, ...] | None:
        """The Build-Depends the package's recipe leaves out, each with why (None: not in the catalog)."""
        found = self._package(name)
        if found is None:
            return None
        connection = self._connect()
        assert connection is not None
        try:

            def source_of(binary: str) -> str | None:
                row = connection.execute("SELECT source FROM binaries WHERE name = ?", (binary,)).fetchone()
                return row[0] if row else None

            return map_build_depends(found[0], source_of, self._toolchain or load_toolchain()).dropped
        finally:
            connection.close()

    def _check_stamp(self) -> None:
        """Forget what was derived from a previous index file (an update replaced it)."""
        try:
            info = self.path.stat()
        except OSError:
            return
        stamp = (info.st_ino, info.st_mtime_ns)
        if stamp != self._stamp:
            self._deps.clear()
            self._sources.clear()
            self._recipes.clear()
            self._stamp = stamp

    def packages(self) -> list[tuple[str, str, str, str]]:
        """(name, summary, version, homepage) of every source package, for the catalog snapshot."""
        connection = self._connect()
        if connection is None:
            return []
        try:
            return [tuple(row) for row in connection.execute("SELECT name, summary, version, homepage FROM sources")]
        finally:
            connection.close()

    def count(self) -> int:
        connection = self._connect()
        if connection is None:
            return 0
        try:
            return int(connection.execute("SELECT count(*) FROM sources").fetchone()[0])
        finally:
            connection.close()


# -- fetching through apt ----------------------------------------------------------------------------------------
def apt_source_files(root: Path = Path("/etc/apt")) -> list[tuple[str, str]]:
    """(file name, text) of apt's sources files, in the order apt reads them."""
    paths = []
    if (root / "sources.list").is_file():
        paths.append(root / "sources.list")
    parts = root / "sources.list.d"
    if parts.is_dir():
        paths.extend(sorted(p for p in parts.iterdir() if p.suffix in (".list", ".sources") and p.is_file()))
    files = []
    for path in paths:
        try:
            files.append((path.name, path.read_text(encoding="utf-8", errors="replace")))
        except OSError:
            continue
    return files


def _apt_options(state: Path) -> list[str]:
    return [
        "-o", f"Dir::Etc::SourceList={state / 'sources.list'}",
        "-o", "Dir::Etc::SourceParts=/dev/null",
        "-o", f"Dir::State::Lists={state / 'lists'}",
        "-o", f"Dir::Cache={state / 'cache'}",
        "-o", "Debug::NoLocking=1",
        "-o", "APT::Get::List-Cleanup=1",
    ]  # fmt: skip


def find_sources_indexes(lists: Path) -> list[Path]:
    """The Sources index files apt stored in `lists` (any compression apt chose to keep)."""
    return sorted(p for p in lists.glob("*_Sources*") if p.is_file() and not p.name.endswith(".diff_Index"))


def read_index_files(files: list[Path]) -> str:
    """The text of apt's stored indexes, decompressed by apt itself (`apt-helper cat-file`)."""
    helper = "/usr/lib/apt/apt-helper"
    texts = []
    for path in files:
        result = subprocess.run([helper, "cat-file", str(path)], capture_output=True, check=False)
        if result.returncode != 0:
            raise CatalogUpdateFailed(f"apt could not read {path.name}: {result.stderr.decode(errors='replace')[:300]}")
        texts.append(result.stdout.decode("utf-8", errors="replace"))
    return "\n\n".join(texts)


def update_index(home: Path, *, apt_root: Path = Path("/etc/apt"), timeout: float = 600.0) -> tuple[int, int]:
    """Fetch the Sources index through apt into `home/debian/apt` and store it parsed in `home/debian`.

    Returns (packages stored, stanzas skipped). Raises CatalogUpdateFailed with apt's own words when apt fails
    (no network, a bad signature), UsageError when apt's configuration has no `deb` entry to derive from.
    """
    return load_index_text(home, fetch_sources_text(home / "debian" / "apt", apt_root=apt_root, timeout=timeout))


def fetch_sources_text(state: Path, *, apt_root: Path = Path("/etc/apt"), timeout: float = 600.0) -> str:
    """The text of the Sources index apt fetches (and verifies) with the derived deb-src entries, keeping its lists
    and cache in `state` (never the system's)."""
    entries = deb_src_entries(apt_source_files(apt_root))
    if not entries:
        raise UsageError(
            "apt's configuration has no usable deb entry to derive deb-src entries from",
            hint=f"look at {apt_root}/sources.list and {apt_root}/sources.list.d",
        )
    if shutil.which("apt-get") is None:
        raise CatalogUpdateFailed("apt-get is not installed; the Debian catalog is fetched through apt")
    for directory in (state / "lists" / "partial", state / "cache" / "archives" / "partial"):
        directory.mkdir(parents=True, exist_ok=True)
    (state / "sources.list").write_text("".join(entry.one_line() + "\n" for entry in entries), encoding="utf-8")
    try:
        result = subprocess.run(
            ["apt-get", *_apt_options(state), "-q", "update"], capture_output=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise CatalogUpdateFailed(f"apt-get update took longer than {timeout:.0f} s") from None
    output = result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")
    problems = [line for line in output.splitlines() if line.startswith(("E:", "W:", "Err:"))]
    if result.returncode != 0 or any(line.startswith(("E:", "Err:")) for line in problems):
        raise CatalogUpdateFailed("apt-get update failed: " + " ".join(problems[:3] or output.splitlines()[-2:])[:500])
    files = find_sources_indexes(state / "lists")
    if not files:
        raise CatalogUpdateFailed("apt fetched no Sources index", hint="; ".join(problems[:2]) or None)
    return read_index_files(files)


def index_path(home: Path) -> Path:
    return home / "debian" / INDEX_FILE


def load_index_text(home: Path, text: str) -> tuple[int, int]:
    """Parse a Sources index's text and store it as the farm's Debian catalog; (packages, skipped)."""
    parsed = parse_index(text)
    write_index(parsed, index_path(home))
    return len(parsed.packages), len(parsed.skipped)
