"""The artifact format: a `.tar.zst` whose first member is a manifest, then the files of the prefix.

Packing and unpacking live together so that the worker and the client agree on one format. Unpacking is where
untrusted bytes meet the file system, so it accepts only what the manifest promised: regular files, directories
and relative symlinks that stay inside, each file with the size and sha256 it was packed with. Hardlinks, devices,
setuid bits, absolute or escaping paths, and members the manifest does not list are refused.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import posixpath
import stat
import tarfile
from collections.abc import Callable
from dataclasses import field
from pathlib import Path
from typing import IO, Any

import zstandard

from pkgc.core.errors import IntegrityError, is_disk_full
from pkgc.core.record import record
from pkgc.core.relocation import PLACEHOLDER, PLACEHOLDER_BYTES, kind_of, relocate

MANIFEST_NAME = ".pkgc-manifest.json"
FORMAT_VERSION = 1
_FORBIDDEN_MODE_BITS = stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX
_MAX_MANIFEST_BYTES = 64 * 1024 * 1024


@record
class FileEntry:
    path: str
    type: str  # "file", "dir" or "symlink"
    mode: int
    size: int = 0
    sha256: str = ""
    target: str = ""
    relocate: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "type": self.type,
            "mode": self.mode,
            "size": self.size,
            "sha256": self.sha256,
            "target": self.target,
            "relocate": self.relocate,
        }


@record
class Manifest:
    name: str
    version: str
    key: str
    options: dict[str, str]
    platform: dict[str, str]
    dependencies: list[list[str]]
    runtime_dependencies: list[str]
    smoke: dict[str, Any]
    files: list[FileEntry] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": FORMAT_VERSION,
                "name": self.name,
                "version": self.version,
                "key": self.key,
                "options": self.options,
                "platform": self.platform,
                "placeholder": PLACEHOLDER,
                "dependencies": self.dependencies,
                "runtime_dependencies": self.runtime_dependencies,
                "smoke": self.smoke,
                "files": [entry.as_dict() for entry in self.files],
            },
            indent=1,
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        try:
            data = json.loads(text)
            if data.get("format") != FORMAT_VERSION or data.get("placeholder") != PLACEHOLDER:
                raise IntegrityError("artifact manifest has an unknown format or placeholder")
            return cls(
                name=str(data["name"]),
                version=str(data["version"]),
                key=str(data["key"]),
                options=dict(data["options"]),
                platform=dict(data["platform"]),
                dependencies=[list(pair) for pair in data["dependencies"]],
                runtime_dependencies=list(data["runtime_dependencies"]),
                smoke=dict(data["smoke"]),
                files=[FileEntry(**entry) for entry in data["files"]],
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise IntegrityError(f"artifact manifest is malformed: {exc}") from None


class PackError(Exception):
    pass


def _tarinfo(name: str, kind: bytes, mode: int, size: int = 0, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.size = size
    info.linkname = target
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def pack_tree(root: Path, manifest: Manifest, out: Path, *, level: int = 6) -> Manifest:
    """Pack the staged prefix at `root` into `out`; returns the manifest with one entry per member.

    Absolute symlinks into the placeholder prefix, or into `root` itself (the staging directory, DESTDIR plus the
    placeholder), are rewritten as relative ones; any other absolute symlink, a device or a socket stops the pack,
    because the client would refuse it anyway.
    """
    staged = os.path.abspath(root)
    entries: list[FileEntry] = []
    payload: list[tuple[tarfile.TarInfo, bytes | None]] = []
    for current, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(current)
        for name in sorted(dirnames) + sorted(filenames):
            path = base / name
            rel = path.relative_to(root).as_posix()
            info = os.lstat(path)
            mode = stat.S_IMODE(info.st_mode) & ~_FORBIDDEN_MODE_BITS
            if stat.S_ISLNK(info.st_mode):
                target = os.readlink(path)
                if target.startswith("/"):
                    # Into the placeholder prefix, or into the staging directory itself (upstream's
                    # `ln -s $(DESTDIR)$(prefix)/...`): both become relative links inside the package.
                    for link_base in (PLACEHOLDER, staged):
                        if (target + "/").startswith(link_base + "/"):
                            inside = target[len(link_base) :].lstrip("/")
                            break
                    else:
                        raise PackError(f"{rel} is a symlink to {target}, outside the package's prefix")
                    target = posixpath.relpath(inside or ".", posixpath.dirname(rel) or ".")
                entries.append(FileEntry(rel, "symlink", 0o777, target=target))
                payload.append((_tarinfo(rel, tarfile.SYMTYPE, 0o777, target=target), None))
            elif stat.S_ISDIR(info.st_mode):
                entries.append(FileEntry(rel, "dir", mode))
                payload.append((_tarinfo(rel, tarfile.DIRTYPE, mode), None))
            elif stat.S_ISREG(info.st_mode):
                data = path.read_bytes()
                entries.append(
                    FileEntry(
                        rel,
                        "file",
                        mode,
                        size=len(data),
                        sha256=hashlib.sha256(data).hexdigest(),
                        relocate=kind_of(data),
                    )
                )
                payload.append((_tarinfo(rel, tarfile.REGTYPE, mode, size=len(data)), data))
            else:
                raise PackError(f"{rel} is not a regular file, directory or symlink")
    complete = Manifest(**{**manifest.__dict__, "files": entries})
    manifest_bytes = complete.to_json().encode()
    compressor = zstandard.ZstdCompressor(level=level, threads=-1)
    with (
        out.open("wb") as raw,
        compressor.stream_writer(raw) as compressed,
        tarfile.open(fileobj=compressed, mode="w|", format=tarfile.PAX_FORMAT) as tar,
    ):
        tar.addfile(
            _tarinfo(MANIFEST_NAME, tarfile.REGTYPE, 0o644, size=len(manifest_bytes)),
            io.BytesIO(manifest_bytes),
        )
        for member, content in payload:
            tar.addfile(member, io.BytesIO(content) if content is not None else None)
    return complete


def _safe_relative(name: str) -> str:
    normalised = posixpath.normpath(name)
    if (
        not name
        or name.startswith("/")
        or normalised.startswith("../")
        or normalised == ".."
        or ".." in name.split("/")
        or normalised == "."
        or "\0" in name
    ):
        raise IntegrityError(f"artifact member {name!r} escapes the prefix")
    if normalised.split("/")[0].startswith(".pkgc"):
        raise IntegrityError(f"artifact member {name!r} uses a name reserved for pkgc")
    return normalised


def _process_umask() -> int | None:
    """This process's umask, read without changing it (Linux's /proc); None when it cannot be read."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


def unpack_artifact(artifact: Path, destination: Path, check: Callable[[Manifest], None] | None = None) -> Manifest:
    """Extract into an empty staging directory, checking every member against the manifest and the allowlist.

    Raises IntegrityError on the first member that is not allowed; the caller throws the staging directory away.
    `check` sees the manifest before any member is written (the client refuses a build made for another platform
    there) and raises to stop.
    """
    destination.mkdir(parents=True, exist_ok=True)
    decompressor = zstandard.ZstdDecompressor()
    manifest: Manifest | None = None
    expected: dict[str, FileEntry] = {}
    seen: set[str] = set()
    symlinks: set[str] = set()
    # Paths as strings, joined by hand: pathlib's joins and hashes cost a hundred-file install about a millisecond.
    top = os.fspath(destination)
    made: set[str] = {""}  # directories known to exist, relative: one mkdir each, not one per member
    umask = _process_umask()
    try:
        with (
            artifact.open("rb") as raw,
            decompressor.stream_reader(raw) as stream,
            tarfile.open(fileobj=stream, mode="r|") as tar,
        ):
            for member in tar:
                if manifest is None:
                    if member.name != MANIFEST_NAME or not member.isfile() or member.size > _MAX_MANIFEST_BYTES:
                        raise IntegrityError("artifact does not start with its manifest")
                    handle = tar.extractfile(member)
                    assert handle is not None
                    manifest = Manifest.from_json(handle.read())
                    if check is not None:
                        check(manifest)
                    expected = {_safe_relative(e.path): e for e in manifest.files}
                    continue
                name = _safe_relative(member.name)
                entry = expected.get(name)
                if entry is None:
                    raise IntegrityError(f"artifact member {name!r} is not in its manifest")
                if name in seen:
                    raise IntegrityError(f"artifact member {name!r} appears twice")
                seen.add(name)
                parent = name.rpartition("/")[0]
                if symlinks:
                    parts = name.split("/")
                    for depth in range(1, len(parts)):
                        if "/".join(parts[:depth]) in symlinks:
                            raise IntegrityError(f"artifact member {name!r} lies below a symlink")
                if member.mode & _FORBIDDEN_MODE_BITS:
                    raise IntegrityError(f"artifact member {name!r} has a setuid, setgid or sticky bit")
                target = f"{top}/{name}"
                if parent not in made:  # a member listed before its directory
                    os.makedirs(f"{top}/{parent}", exist_ok=True)
                    made.add(parent)
                if member.isdir() and entry.type == "dir":
                    mode = member.mode & 0o777 | 0o700
                    try:
                        os.mkdir(target, mode)
                    except FileExistsError:  # made earlier as a parent: a directory, or the archive is not sound
                        if os.path.islink(target) or not os.path.isdir(target):
                            raise
                        os.chmod(target, mode)
                    else:
                        if umask is None or mode & umask:  # mkdir applied the umask: set the mode as listed
                            os.chmod(target, mode)
                    made.add(name)
                elif member.issym() and entry.type == "symlink":
                    link = member.linkname
                    resolved = posixpath.normpath(posixpath.join(parent, link))
                    if link.startswith("/") or resolved == ".." or resolved.startswith("../"):
                        raise IntegrityError(f"artifact symlink {name!r} -> {link!r} points outside the prefix")
                    if link != entry.target:
                        raise IntegrityError(f"artifact symlink {name!r} -> {link!r} does not match its manifest")
                    os.symlink(link, target)
                    symlinks.add(name)
                elif member.isreg() and entry.type == "file":
                    handle = tar.extractfile(member)
                    assert handle is not None
                    _write_member(handle, target, member.mode & 0o777, umask, entry, name)
                else:
                    raise IntegrityError(
                        f"artifact member {name!r} is a {_member_kind(member)}, which pkgc does not install"
                    )
    except (tarfile.TarError, zstandard.ZstdError, EOFError) as exc:
        raise IntegrityError(f"artifact is not a valid .tar.zst: {exc}") from None
    except OSError as exc:  # e.g. a member that collides with an earlier one: the archive is not well formed
        if is_disk_full(exc):
            raise
        raise IntegrityError(f"artifact cannot be unpacked: {exc.strerror or exc}") from None
    if manifest is None:
        raise IntegrityError("artifact is empty")
    root = os.path.realpath(destination)
    for name in sorted(symlinks):
        # Text checks cannot see chains (a -> ".", b -> "a/../x"); the resolved path can.
        resolved = os.path.realpath(destination / name)
        if resolved != root and not resolved.startswith(root + os.sep):
            raise IntegrityError(f"artifact symlink {name!r} resolves outside the prefix")
    missing = sorted(set(expected) - seen)
    if missing:
        raise IntegrityError(f"artifact lacks {missing[0]!r}, which its manifest lists")
    return manifest


def _write_member(handle: IO[bytes], target: str, mode: int, umask: int | None, entry: FileEntry, name: str) -> None:
    """Write one file member to a new file (never through an existing one), checking it against its manifest entry.

    The file is created with its listed mode (the fd is writable whatever the mode); only where the umask narrowed
    that mode is it set again, so most files cost no chmod.
    """
    digest = hashlib.sha256()
    size = 0
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
            size += len(chunk)
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
        if digest.hexdigest() != entry.sha256 or size != entry.size:
            raise IntegrityError(f"artifact file {name!r} does not match its manifest checksum")
        if umask is None or mode & umask:
            os.fchmod(fd, mode)
    finally:
        os.close(fd)


def _member_kind(member: tarfile.TarInfo) -> str:
    if member.islnk():
        return "hardlink"
    if member.isdev():
        return "device"
    if member.isfifo():
        return "fifo"
    return "mismatched entry"


def relocate_tree(root: Path, manifest: Manifest, prefix: str) -> dict[str, str]:
    """Rewrite the placeholder to `prefix` in every file the manifest marks, then prove none is left.

    Returns each file's sha256 as relocated, from the bytes that proof reads: what the client records for `verify`,
    without reading every file once more."""
    for entry in manifest.files:
        if entry.type == "file" and entry.relocate:
            path = root / entry.path
            mode = stat.S_IMODE(os.lstat(path).st_mode)
            os.chmod(path, mode | stat.S_IWUSR)
            path.write_bytes(relocate(path.read_bytes(), entry.relocate, prefix))
            os.chmod(path, mode)
    digests: dict[str, str] = {}
    for entry in manifest.files:
        if entry.type == "file":
            data = (root / entry.path).read_bytes()
            if PLACEHOLDER_BYTES in data:
                raise IntegrityError(f"{entry.path} still contains the build placeholder after relocation")
            digests[entry.path] = hashlib.sha256(data).hexdigest()
    return digests
