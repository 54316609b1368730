"""Where a plain build put its files, made into the prefix layout: the fallbacks a generated recipe needs.

A curated recipe says how its package installs; a recipe generated from the Debian catalog has only the upstream
tree, and small projects' Makefiles install the way their authors' machines wanted: into `$(DESTDIR)/usr/local/bin`
without making the directory, into `/usr/bin` whatever PREFIX says, or not at all (Debian then lists the files in
`debian/install`). These functions do what a packager would do by hand, and each says in the build log what it did:

- `make_standard_dirs`: the usual directories exist before `make install` (as Debian's `debian/dirs` makes them);
  the ones left empty are removed afterwards (`remove_empty`).
- `merge_into`: a tree moved into another, refusing to overwrite a file.
- `reroot_system_layout`: a tree installed under `usr/` or `usr/local/` (below DESTDIR or below the prefix) moved
  up to the prefix.
- `has_install_rule` and `install_listed_files`: without a Makefile `install` rule, the files `debian/install`
  lists (with a destination under `usr/`), or else the executables the build made at the top of the tree.

Every path comes from the source tree or the Debian series, both untrusted: globs are resolved inside the source,
destinations must be relative paths under `usr/` without `..`.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

STANDARD_DIRS = (
    "bin", "sbin", "lib", "include", "share", "share/man",
    *(f"share/man/man{n}" for n in range(1, 9)),
    "share/doc", "share/info", "etc",
)  # fmt: skip
_ELF_MAGIC = b"\x7fELF"


class LayoutError(Exception):
    """The files cannot be put into the prefix layout (a clash, an unsafe path)."""


def make_standard_dirs(bases: list[Path]) -> list[Path]:
    """Create the usual install directories under each base; return those this call created (deepest last)."""
    created: list[Path] = []
    for base in bases:
        for relative in ("", *STANDARD_DIRS):
            directory = base / relative if relative else base
            missing = []
            probe = directory
            while not probe.exists():
                missing.append(probe)
                probe = probe.parent
            directory.mkdir(parents=True, exist_ok=True)
            created.extend(reversed(missing))
    return created


def remove_empty(created: list[Path]) -> None:
    """Remove the directories of `created` that are still empty (deepest first)."""
    for directory in sorted(set(created), key=lambda p: len(p.parts), reverse=True):
        if directory.is_dir() and not directory.is_symlink() and not any(directory.iterdir()):
            directory.rmdir()


def prune_empty_dirs(root: Path) -> None:
    """Remove every empty directory below `root` (not `root`), deepest first."""
    for directory, _subdirs, _files in sorted(os.walk(root), key=lambda entry: len(entry[0]), reverse=True):
        path = Path(directory)
        if path != root and not path.is_symlink() and not any(path.iterdir()):
            path.rmdir()


def merge_into(source: Path, target: Path) -> int:
    """Move everything under `source` into `target`, merging directories; return how many entries moved.

    Raises LayoutError when a file would replace another (two installs of one path disagree)."""
    moved = 0
    target.mkdir(parents=True, exist_ok=True)
    for entry in sorted(source.iterdir()):
        destination = target / entry.name
        if entry.is_dir() and not entry.is_symlink():
            if destination.is_dir() and not destination.is_symlink():
                moved += merge_into(entry, destination)
                entry.rmdir()
                continue
            if destination.exists() or destination.is_symlink():
                raise LayoutError(f"{destination.name} is installed twice (a directory and a file)")
        elif destination.exists() or destination.is_symlink():
            raise LayoutError(f"{entry.name} is installed twice")
        os.replace(entry, destination)
        moved += 1
    return moved


def reroot_system_layout(destdir: Path, staged: Path, usr_local: Path | None = None) -> list[str]:
    """Move trees a build installed under `usr/` or `usr/local/` (below DESTDIR or below the prefix), into
    `/usr/local` itself (`usr_local`: the directory the sandbox showed there) and under DESTDIR's `etc/` into the
    prefix; a `man/` directly under a usr/local tree is the BSD place of man pages, the prefix's `share/man/`.
    Returns what was moved, for the log. What is left outside the prefix stays (the caller refuses it)."""
    moves: list[str] = []
    candidates = [
        (staged / "usr" / "local", "the prefix's usr/local", True),
        (staged / "usr", "the prefix's usr", False),
        (destdir / "usr" / "local", "/usr/local", True),
        *([(usr_local, "/usr/local itself (not DESTDIR)", True)] if usr_local is not None else []),
        (destdir / "usr", "/usr", False),
    ]
    for base, label, local in candidates:
        if not base.is_dir() or base.is_symlink():
            continue
        count = 0
        man = base / "man"
        if local and man.is_dir() and not man.is_symlink():
            count += merge_into(man, staged / "share" / "man")
            man.rmdir()
        count += merge_into(base, staged)
        if base != usr_local:
            base.rmdir()
        if count:
            moves.append(f"{label} ({count} entries)")
    etc = destdir / "etc"
    if etc.is_dir() and not etc.is_symlink():
        count = merge_into(etc, staged / "etc")
        etc.rmdir()
        moves.append(f"/etc ({count} entries)")
    return moves


def move_games_to_bin(staged: Path) -> list[str]:
    """Move the programs a generated build installed into the prefix's `games/` (Debian's /usr/games, where sl,
    fortune and the like go) into `bin/`, which is the one on a user's PATH; a name `bin/` already has stays.
    Returns the names moved."""
    games = staged / "games"
    if not games.is_dir() or games.is_symlink():
        return []
    moved: list[str] = []
    for entry in sorted(games.iterdir()):
        target = staged / "bin" / entry.name
        if (entry.is_file() or entry.is_symlink()) and not target.exists() and not target.is_symlink():
            target.parent.mkdir(exist_ok=True)
            entry.rename(target)
            moved.append(entry.name)
    if not any(games.iterdir()):
        games.rmdir()
    return moved


# Absolute link targets a build wrote while installing under a system directory, and where those files are now
# (relative to the prefix), most specific first. /usr/local/man is the BSD place of man pages (share/man).
SYSTEM_TARGETS = (("/usr/local/man/", "share/man/"), ("/usr/local/", ""), ("/usr/", ""))


def retarget_symlinks(staged: Path, prefix: str) -> list[str]:
    """Point the absolute symlinks into a system directory (`SYSTEM_TARGETS`) whose files were moved into the
    prefix at the moved files (`prefix` + path), when the file is there; return the links changed. Links to files
    the prefix does not have (the platform's own /usr/bin/env) are left for the packer to judge."""
    changed: list[str] = []
    for path in sorted(staged.rglob("*")):
        if not path.is_symlink():
            continue
        target = os.readlink(path)
        for system, relative in SYSTEM_TARGETS:
            if not target.startswith(system):
                continue
            moved = relative + target.removeprefix(system)
            parts = moved.split("/")
            if ".." in parts or not (staged / moved).exists():
                break
            path.unlink()
            os.symlink(f"{prefix}/{moved}", path)
            changed.append(path.relative_to(staged).as_posix())
            break
    return changed


def has_install_rule(srcdir: Path) -> bool:
    """Whether the top Makefile (the one make reads first) or a file it includes has an `install` rule."""
    for name in ("GNUmakefile", "makefile", "Makefile"):
        path = srcdir / name
        if path.is_file():
            return _mentions_install(path, srcdir, depth=0)
    return False


def _mentions_install(path: Path, srcdir: Path, depth: int) -> bool:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return True  # unreadable: let make say what is wrong
    # A rule whose targets include `install` (`install:`, `all install:`, `install::`), not an assignment.
    if re.search(r"^[^#\t\n:=]*(?<![\w.-])install(?![\w.-])[^#\n:=]*::?(?!=)", text, re.M):
        return True
    if depth >= 2:
        return False
    for match in re.finditer(r"^\s*-?include\s+(\S+)\s*$", text, re.M):
        included = (path.parent / match.group(1)).resolve()
        if included.is_relative_to(srcdir.resolve()) and included.is_file() and _mentions_install(
            included, srcdir, depth + 1
        ):
            return True
    return False


def _debian_install_lines(series_dir: Path) -> list[str]:
    """The lines of `debian/install` and `debian/*.install` (no dh-exec scripts)."""
    debian = series_dir / "debian"
    if not debian.is_dir():
        return []
    lines: list[str] = []
    for path in sorted(debian.glob("*install")):
        if path.name != "install" and not path.name.endswith(".install"):
            continue
        if not path.is_file() or path.is_symlink():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if text.startswith("#!"):
            continue  # an executable install file (dh-exec): not a plain list
        lines.extend(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))
    return lines


def _safe_destination(destination: str) -> str | None:
    """A Debian install destination as a path relative to the prefix (`usr/bin` -> `bin`); None if unusable."""
    parts = [part for part in destination.strip("/").split("/") if part not in ("", ".")]
    if not parts or ".." in parts or any(not re.fullmatch(r"[A-Za-z0-9._+@-]+", part) for part in parts):
        return None
    if parts[0] == "usr":
        parts = parts[2:] if parts[1:2] == ["local"] else parts[1:]
    elif parts[0] != "etc":
        return None
    return "/".join(parts)


def _is_elf_executable(path: Path) -> bool:
    if not path.is_file() or path.is_symlink() or not os.access(path, os.X_OK):
        return False
    with path.open("rb") as handle:
        return handle.read(4) == _ELF_MAGIC


def install_listed_files(srcdir: Path, series_dir: Path, staged: Path, *, build_dir: Path | None = None) -> list[str]:
    """Install what a Makefile without an `install` rule built: the files `debian/install` lists (relative to the
    top of the tree, `srcdir`) with a destination under `usr/` or `etc/`, or else the ELF executables at the top of
    `build_dir` (the directory the build ran in; default `srcdir`) into bin/. Returns the installed paths relative to
    the prefix."""
    root = srcdir.resolve()
    installed: list[str] = []
    for line in _debian_install_lines(series_dir):
        words = line.split()
        if len(words) < 2:
            continue
        destination = _safe_destination(words[-1])
        if destination is None:
            continue
        for pattern in words[:-1]:
            if pattern.startswith(("/", "debian/")) or ".." in pattern.split("/"):
                continue
            for match in sorted(srcdir.glob(pattern)):
                if not match.resolve().is_relative_to(root) or match.is_symlink():
                    continue
                target_dir = staged / destination
                target_dir.mkdir(parents=True, exist_ok=True)
                target = target_dir / match.name
                if match.is_dir():
                    shutil.copytree(match, target, symlinks=True, dirs_exist_ok=True)
                else:
                    shutil.copy2(match, target)
                installed.append(f"{destination}/{match.name}" if destination else match.name)
    if installed:
        return installed
    for path in sorted((build_dir or srcdir).iterdir()):
        if _is_elf_executable(path):
            (staged / "bin").mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, staged / "bin" / path.name)
            installed.append(f"bin/{path.name}")
    return installed
