"""Applying a recipe's patches to an unpacked source: a Debian patch series (quilt's `debian/patches/series`), then
the patch files beside the recipe.

A patch is untrusted text that names the files it changes, so before `patch` runs every file name it could use is
checked here: after stripping `-pN` components it must be relative, without `..`, and must not pass through a
symlink of the source tree. `patch` itself then runs as an argument list (never a shell), in the build's sandbox,
in batch mode, without backup files or reject files, refusing reversed or already applied patches (GNU patch
refuses unsafe names too; this check does not rely on it).
"""

from __future__ import annotations

import re
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

MAX_STRIP = 5
_HUNK = re.compile(r"^@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@")
_CONTEXT_RANGE = re.compile(r"^(\*\*\*|---) \d+(,\d+)? (\*\*\*\*|----)\s*$")
_SERIES_OPTION = re.compile(r"^-p(\d)$")


class PatchError(Exception):
    """A patch or series that cannot be applied safely; the message names the patch and the reason."""


@dataclass(frozen=True)
class PatchStep:
    """One patch to apply: its label in messages, the file `patch -i` reads, and its strip level."""

    label: str
    path: Path
    strip: int


def _unquote(name: str) -> str:
    """A file name as a diff header writes it: git C-quotes names with special characters; timestamps follow a tab."""
    name = name.split("\t", 1)[0].rstrip("\r\n")
    if name.startswith('"') and name.endswith('"') and len(name) >= 2:
        return name[1:-1].encode("latin-1", "backslashreplace").decode("unicode_escape", "replace")
    return name.rstrip()


def header_names(text: str) -> list[tuple[str, bool]]:
    """Every file name the patch's headers give, with whether `-pN` applies to it (git's rename/copy lines name
    paths without its a/ b/ prefixes, which patch takes as they are). Unified hunks are skipped by their line
    counts, so a removed line that starts with `-- ` is not taken for a header; context-diff lines that could be
    headers are all checked (over-checking refuses at worst, never lets a name through)."""
    names: list[tuple[str, bool]] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        hunk = _HUNK.match(line)
        if hunk:
            old = int(hunk.group(1)) if hunk.group(1) is not None else 1
            new = int(hunk.group(2)) if hunk.group(2) is not None else 1
            while (old > 0 or new > 0) and index < len(lines):
                body = lines[index]
                index += 1
                if body.startswith("\\"):
                    continue
                if body.startswith("-"):
                    old -= 1
                elif body.startswith("+"):
                    new -= 1
                else:
                    old -= 1
                    new -= 1
            continue
        if _CONTEXT_RANGE.match(line):
            continue
        for prefix in ("--- ", "+++ ", "*** ", "Index: "):
            if line.startswith(prefix):
                names.append((_unquote(line[len(prefix) :]), True))
        if line.startswith("diff --git "):
            for part in re.findall(r'"(?:[^"\\]|\\.)*"|\S+', line[len("diff --git ") :]):
                names.append((_unquote(part), True))
        for prefix in ("rename from ", "rename to ", "copy from ", "copy to "):
            if line.startswith(prefix):
                names.append((_unquote(line[len(prefix) :]), False))
    return names


def _stripped(name: str, strip: int) -> str | None:
    """`name` after patch's -pN (a leading slash counts as a component); None when nothing is left."""
    if strip == 0:
        return name
    parts = name.split("/")
    if len(parts) <= strip:
        return None
    return "/".join(parts[strip:])


def check_patch_paths(text: str, strip: int, root: Path, label: str) -> None:
    """Refuse a patch any of whose file names, as `patch -p{strip}` would use them, leaves `root` (run it just
    before applying the patch: an earlier patch changes the tree), and a git patch that makes a symlink."""
    if re.search(r"^(?:new file mode|new mode) 120000", text, re.M):
        raise PatchError(f"patch {label} creates a symlink, which pkgc does not apply")
    for raw, strips in header_names(text):
        if raw in ("/dev/null", ""):
            continue
        name = _stripped(raw, strip) if strips else raw
        if name is None:
            continue
        posix = PurePosixPath(name)
        if name.startswith("/") or ".." in posix.parts or "\0" in name:
            raise PatchError(f"patch {label} names {name[:120]!r}, outside the source tree")
        current = root
        for part in posix.parts:
            current = current / part
            if current.is_symlink():
                raise PatchError(f"patch {label} changes {name[:120]!r}, which goes through a symlink")


def parse_series(text: str, label: str = "debian/patches/series") -> list[tuple[str, int]]:
    """quilt's series file: one patch per line (a path under debian/patches), optionally `-pN` (default -p1);
    `#` starts a comment (a whole line, or after whitespace); blank lines are skipped."""
    entries: list[tuple[str, int]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = re.split(r"(?:^|\s)#", raw, maxsplit=1)[0].strip()
        if not line:
            continue
        words = line.split()
        name, options = words[0], words[1:]
        strip = 1
        for option in options:
            match = _SERIES_OPTION.match(option)
            if not match or int(match.group(1)) > MAX_STRIP:
                raise PatchError(f"{label} line {number}: unsupported option {option[:40]!r} (only -pN)")
            strip = int(match.group(1))
        path = PurePosixPath(name)
        if name.startswith("/") or ".." in path.parts or "\\" in name:
            raise PatchError(f"{label} line {number}: {name[:120]!r} is not a path inside debian/patches")
        entries.append((name, strip))
    return entries


def unpack_series(archive: Path, destination: Path) -> list[PatchStep]:
    """Unpack a Debian `*.debian.tar.*` (tarfile's data filter: nothing outside `destination`, no devices) and list
    the patches its `debian/patches/series` applies, in order. No series file: nothing to apply."""
    destination.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(destination, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise PatchError(f"the Debian patch series archive cannot be unpacked: {exc}") from None
    patches = destination / "debian" / "patches"
    series = patches / "series"
    if not series.is_file() or series.is_symlink():
        return []
    steps: list[PatchStep] = []
    root = patches.resolve()
    for name, strip in parse_series(series.read_text(encoding="utf-8", errors="replace")):
        path = patches / name
        resolved = path.resolve()
        if not resolved.is_relative_to(root) or not resolved.is_file():
            raise PatchError(f"debian/patches/series names {name!r}, which is not a file in debian/patches")
        steps.append(PatchStep(f"debian/patches/{name}", resolved, strip))
    return steps


def patch_command(step: PatchStep) -> list[str]:
    """How one patch is applied (dpkg-source's options for a 3.0 (quilt) source, without backups): batch mode,
    forward only, no fuzz beyond patch's default, no reject or backup files, empty files removed."""
    return [
        "patch",
        f"-p{step.strip}",
        "--batch",
        "--forward",
        "--no-backup-if-mismatch",
        "--reject-file=-",
        "--remove-empty-files",
        "--input",
        str(step.path),
    ]


def check_step(step: PatchStep, root: Path) -> None:
    """Check one patch's file names against the tree as it is now (just before the patch is applied)."""
    text = step.path.read_text(encoding="utf-8", errors="replace")
    check_patch_paths(text, step.strip, root, step.label)
