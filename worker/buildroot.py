"""The root directory a hermetic build sees: the toolchain definition's Debian packages and their dependencies.

A build must see the build platform's declared toolchain, its dependencies' prefixes and nothing else, or it
quietly links whatever the build host has installed (sqlite3 found the host's libreadline, a pkg-config test
passed against the host's libyaml-dev) and the artifact fails on a client without it. So the worker makes a root
directory out of exactly the packages a build may use, and bubblewrap shows that root instead of the host's `/`.

The packages are the definition's `toolchain` list, the `[tools]` groups the recipe names and the tool its build
system implies (`ToolchainDefinition.packages_for`), closed over their Depends and Pre-Depends as dpkg's status
file records them. Each package's files come from dpkg's own file list (`/var/lib/dpkg/info/NAME.list`), placed
where they really are on the host: through the merged-/usr symlinks (`/bin` -> `usr/bin`), to their diverted
name when another package diverted them, with `/etc/alternatives` links for every alternative whose chosen
target is in the root. Files are hard links (one filesystem) or copies, symlinks are copied as symlinks.

A root is made once per (definition, version, tool set, installed package versions, format) and kept under the
worker's state; two workers making the same root at once each build their own in a temporary directory and
rename it into place: the first rename wins, the other is removed.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pkgc.core.toolchain import ToolchainDefinition

# Bump when the way a root is made changes, so every worker makes its roots again.
ROOT_FORMAT = 2  # 2: an empty usr/local
DPKG_ADMIN = Path("/var/lib/dpkg")
# Never part of a root: bubblewrap mounts its own /dev, /proc and /tmp, and the rest is the host's live state.
_SKIPPED_TOPS = {"dev", "proc", "sys", "tmp", "run", "var/run", "var/lock", "mnt", "media", "home", "root", "srv"}
# A user database for the build's tools (id, whoami, tar's owner names): the build runs as uid 0 in its namespace.
_PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
_GROUP = "root:x:0:\nnogroup:x:65534:\n"


class ToolchainMissing(Exception):
    """A package the toolchain definition declares is not installed on this worker's host."""


@dataclass(frozen=True)
class InstalledPackage:
    name: str
    arch: str
    version: str
    multi_arch: str
    depends: tuple[tuple[str, ...], ...]  # Depends and Pre-Depends: every group must hold; one name of a group does
    provides: tuple[str, ...]


def _relation_names(text: str) -> tuple[tuple[str, ...], ...]:
    """`a (>= 1) | b:any, c [amd64]` -> (("a", "b"), ("c",)): versions, architectures and qualifiers dropped
    (dpkg already checked them when it installed the packages)."""
    groups = []
    for group in text.split(","):
        names = []
        for alternative in group.split("|"):
            name = alternative.strip().split(" ", 1)[0].split("(", 1)[0].split("[", 1)[0].split(":", 1)[0]
            if name:
                names.append(name)
        if names:
            groups.append(tuple(names))
    return tuple(groups)


def read_status(admin: Path = DPKG_ADMIN) -> dict[str, list[InstalledPackage]]:
    """Every package dpkg's status file says is installed ("install ok installed"), by name (one per architecture)."""
    installed: dict[str, list[InstalledPackage]] = {}
    try:
        text = (admin / "status").read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ToolchainMissing(
            f"cannot read dpkg's status ({exc.strerror}): hermetic builds need a Debian host with the toolchain installed"
        ) from None
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        current = ""
        for line in stanza.splitlines():
            if line[:1] in (" ", "\t"):
                if current:
                    fields[current] += "\n" + line.strip()
                continue
            key, _, value = line.partition(":")
            current = key.strip().lower()
            fields[current] = value.strip()
        if fields.get("status", "").split()[-1:] != ["installed"] or "package" not in fields:
            continue
        relations = ", ".join(filter(None, (fields.get("pre-depends", ""), fields.get("depends", ""))))
        package = InstalledPackage(
            name=fields["package"],
            arch=fields.get("architecture", ""),
            version=fields.get("version", ""),
            multi_arch=fields.get("multi-arch", ""),
            depends=_relation_names(relations),
            provides=tuple(n for group in _relation_names(fields.get("provides", "")) for n in group),
        )
        installed.setdefault(package.name, []).append(package)
    return installed


def native_architecture(installed: Mapping[str, list[InstalledPackage]]) -> str:
    """The host's dpkg architecture: the one its libc6 is built for (amd64, arm64, ...)."""
    for package in installed.get("libc6", []):
        return package.arch
    return os.uname().machine


def missing_packages(packages: Iterable[str], installed: Mapping[str, list[InstalledPackage]]) -> list[str]:
    return [name for name in packages if name not in installed]


def package_closure(
    roots: Iterable[str], installed: Mapping[str, list[InstalledPackage]], arch: str
) -> dict[str, InstalledPackage]:
    """`roots` with everything they depend on, as installed packages by name (the native or `all` architecture's
    when several are installed).

    For an alternative (`a | b`) the first one installed is taken; a virtual name goes to an installed package
    that provides it (one already taken first). A root package that is not installed raises ToolchainMissing.
    """
    providers: dict[str, list[InstalledPackage]] = {}
    for packages in installed.values():
        for package in packages:
            for virtual in package.provides:
                providers.setdefault(virtual, []).append(package)

    def pick(name: str) -> InstalledPackage | None:
        candidates = installed.get(name)
        if candidates:
            return next((p for p in candidates if p.arch in (arch, "all")), candidates[0])
        offered = providers.get(name, [])
        taken = [p for p in offered if p.name in chosen]
        return (taken or offered)[0] if offered else None

    chosen: dict[str, InstalledPackage] = {}
    roots = tuple(roots)
    missing = missing_packages(roots, installed)
    if missing:
        raise ToolchainMissing(", ".join(missing))
    pending: list[InstalledPackage | None] = [pick(name) for name in roots]
    while pending:
        current = pending.pop()
        if current is None or current.name in chosen:
            continue
        chosen[current.name] = current
        for group in current.depends:
            pending.append(next((p for p in map(pick, group) if p is not None), None))
    return chosen


def _list_file(admin: Path, package: InstalledPackage) -> Path | None:
    for name in (f"{package.name}:{package.arch}.list", f"{package.name}.list"):
        candidate = admin / "info" / name
        if candidate.is_file():
            return candidate
    return None


def read_diversions(admin: Path = DPKG_ADMIN) -> dict[str, tuple[str, str]]:
    """path -> (diverted-to path, diverting package; ":" for a local diversion)."""
    path = admin / "diversions"
    if not path.is_file():
        return {}
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return {lines[i]: (lines[i + 1], lines[i + 2]) for i in range(0, len(lines) - 2, 3)}


def root_identity(definition: ToolchainDefinition, tools: Iterable[str], closure: Mapping[str, InstalledPackage]) -> str:
    """The cache name of a root: what it was made from (definition, tools, every package's exact version)."""
    document = {
        "format": ROOT_FORMAT,
        "toolchain": definition.identity(),
        "tools": sorted(set(tools)),
        "packages": sorted(f"{p.name}:{p.arch}={p.version}" for p in closure.values()),
    }
    digest = hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()
    return f"{definition.name}-{definition.version}-{digest[:20]}"


class _RootWriter:
    """Mirrors host paths into a new root directory, each where it really is on the host (parents resolved)."""

    def __init__(self, root: Path, host: Path) -> None:
        self.root = root
        self.host = host  # "/" except in tests
        self.hard_links = True

    def canonical(self, path: str) -> str | None:
        """Where `path` (absolute, as dpkg lists it) really is on the host, with its parents' symlinks resolved;
        None for a path outside what a root may hold."""
        if not path.startswith("/") or path == "/" or "\0" in path:
            return None
        parent, name = os.path.split(path.rstrip("/"))
        if name in ("", ".", ".."):
            return None
        real_parent = os.path.realpath(self.host / parent.lstrip("/"))
        try:
            relative = os.path.relpath(real_parent, self.host)
        except ValueError:
            return None
        if relative == os.pardir or relative.startswith(os.pardir + os.sep):
            return None
        inside = name if relative == "." else f"{relative}/{name}"
        top = inside.split("/", 1)[0]
        if top in _SKIPPED_TOPS or "/".join(inside.split("/")[:2]) in _SKIPPED_TOPS:
            return None
        return inside

    def place(self, path: str) -> bool:
        """Mirror one host path into the root; False when the host does not have it (a path excluded from the image,
        such as documentation) or it is not a file, directory or symlink."""
        inside = self.canonical(path)
        if inside is None:
            return False
        source = self.host / inside
        target = self.root / inside
        try:
            info = os.lstat(source)
        except OSError:
            return False
        if os.path.lexists(target):
            return True
        target.parent.mkdir(parents=True, exist_ok=True)
        if stat.S_ISDIR(info.st_mode):
            target.mkdir()
            os.chmod(target, stat.S_IMODE(info.st_mode))
        elif stat.S_ISLNK(info.st_mode):
            os.symlink(os.readlink(source), target)
        elif stat.S_ISREG(info.st_mode):
            self._file(source, target)
        else:
            return False
        return True

    def _file(self, source: Path, target: Path) -> None:
        if self.hard_links:
            try:
                os.link(source, target)
                return
            except OSError as exc:
                if exc.errno != errno.EXDEV:  # refused (protected_hardlinks for a non-owner): copy from now on
                    self.hard_links = False
        shutil.copy2(source, target)  # this file is on another filesystem, or hard links are refused


def _alternatives(writer: _RootWriter, admin: Path) -> None:
    """The /etc/alternatives links (cc, c++, awk, yacc, lex, ...) whose chosen target is in the root."""
    directory = admin / "alternatives"
    if not directory.is_dir():
        return
    for group in sorted(directory.iterdir()):
        lines = group.read_text(encoding="utf-8", errors="replace").splitlines()
        if len(lines) < 2:
            continue
        links = [(group.name, lines[1])]
        index = 2
        while index + 1 < len(lines) and lines[index]:
            links.append((lines[index], lines[index + 1]))
            index += 2
        for name, link in links:
            if "/" in name or not name:
                continue
            alternative = writer.host / "etc" / "alternatives" / name
            if not alternative.is_symlink():
                continue
            chosen = writer.canonical(os.readlink(alternative))
            if chosen is None or not os.path.lexists(writer.root / chosen):
                continue
            writer.place(f"/etc/alternatives/{name}")
            writer.place(link)


def _remove_abandoned(cache: Path, older_than: float = 3600.0) -> None:
    """Remove the half-made roots of workers killed while making one (making a root takes seconds)."""
    now = time.time()
    for entry in cache.glob(".making-*"):
        with contextlib.suppress(OSError):
            if now - entry.lstat().st_mtime > older_than:
                shutil.rmtree(entry)


def make_root(
    definition: ToolchainDefinition,
    tools: Iterable[str],
    system: str,
    cache: Path,
    *,
    admin: Path = DPKG_ADMIN,
    host: Path = Path("/"),
) -> Path:
    """The root directory for a build with `tools` and build `system`, made now or found in `cache`."""
    tools = tuple(sorted(set(tools)))
    installed = read_status(admin)
    wanted = definition.packages_for(tools, system)
    try:
        closure = package_closure(wanted, installed, native_architecture(installed))
    except ToolchainMissing as exc:
        raise ToolchainMissing(
            f"toolchain {definition.name} declares packages this worker's host does not have installed: {exc} "
            "(install them, e.g. with apt-get)"
        ) from None
    final = cache / root_identity(definition, tools, closure)
    if final.is_dir():
        return final
    cache.mkdir(mode=0o700, parents=True, exist_ok=True)  # the system's files keep their modes: keep others out here
    _remove_abandoned(cache)
    building = Path(tempfile.mkdtemp(prefix=".making-", dir=cache))
    try:
        writer = _RootWriter(building, host)
        # The merged-/usr links (/bin -> usr/bin, ...) as the host has them.
        for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
            link = host / top
            if link.is_symlink():
                os.symlink(os.readlink(link), building / top)
        diversions = read_diversions(admin)
        for package in sorted(closure.values(), key=lambda p: p.name):
            listing = _list_file(admin, package)
            if listing is None:
                continue
            for line in listing.read_text(encoding="utf-8", errors="replace").splitlines():
                diverted = diversions.get(line)
                writer.place(diverted[0] if diverted and diverted[1] != package.name else line)
        _alternatives(writer, admin)
        # An empty /usr/local: the mount point of a generated recipe's writable /usr/local (pkgc/worker/builder.py).
        (building / "usr" / "local").mkdir(parents=True, exist_ok=True)
        etc = building / "etc"
        etc.mkdir(exist_ok=True)
        for name, text in (("passwd", _PASSWD), ("group", _GROUP)):
            if not (etc / name).exists():
                (etc / name).write_text(text)
        (building / "pkgc-root.json").write_text(
            json.dumps({"toolchain": definition.identity(), "tools": list(tools), "packages": sorted(closure)})
        )
        os.chmod(building, 0o755)
        try:
            os.rename(building, final)
        except OSError:
            if not final.is_dir():  # not "another worker made it first"
                raise
    finally:
        if building.exists():
            with contextlib.suppress(OSError):
                shutil.rmtree(building)
    return final


def check_host(definition: ToolchainDefinition, admin: Path = DPKG_ADMIN) -> None:
    """Refuse (ToolchainMissing, one line) when the host lacks a package the definition declares."""
    missing = missing_packages(definition.all_packages(), read_status(admin))
    if missing:
        raise ToolchainMissing(
            f"toolchain {definition.name} declares packages this worker's host does not have installed: "
            f"{', '.join(missing)} (install them, e.g. with apt-get)"
        )
