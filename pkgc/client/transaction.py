"""Transactions on a prefix: every change of files is all or nothing, even across a kill -9.

One command is one transaction. Everything is prepared first (artifacts verified, unpacked and relocated into
`.pkgc/tx/<id>/stage`); then a journal is written; then the old files of the packages being replaced or removed
are moved aside into `.pkgc/tx/<id>/backup`, the new files are moved in, and the database commits (the commit point:
package records and a history row in one SQLite transaction). Only then is the backup deleted.

After a crash, the next pkgc command finds the journal and finishes the interrupted transaction if its history row
exists (roll forward: only clean-up is left), or undoes it if not (roll back: delete what was moved in, move the
backup back). Renames within the prefix are atomic, so each file is always either the old one or the new one.

`PKGC_FAULT=<point>` kills the process with SIGKILL at that point, so tests can crash a real command at every step.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
from pathlib import Path
from typing import Any

from pkgc.core.errors import disk_full, is_disk_full
from pkgc.core.record import record
from pkgc.localdb.store import STATE_DIR, InstalledFile, InstalledPackage, InstalledStore

FAULT_ENV = "PKGC_FAULT"
FAULT_POINTS = ("staged", "journal-written", "old-moved-aside", "new-moved-in", "db-committed")
# Inside the two ways a transaction ends, so the tests can crash a recovery too: rolling back with half the old
# files restored, and finishing (rolling forward) with the backup deleted but the emptied directories not yet pruned.
RECOVERY_FAULT_POINTS = ("rollback-half-restored", "cleanup-half-done")


def fault_point(name: str) -> None:
    """Die here, as abruptly as a power cut allows a process to, when the tests ask for it."""
    if os.environ.get(FAULT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


@record
class StagedPackage:
    """A package ready to switch in: its files relocated under `root`, and the records that describe them."""

    package: InstalledPackage
    files: list[InstalledFile]
    root: Path


def _fsync_write(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    try:
        with temporary.open("w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)  # a full disk must not leave a torn journal beside the real one
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class Transaction:
    def __init__(self, store: InstalledStore, operation: str) -> None:
        self.store = store
        self.operation = operation
        self.txid = os.urandom(16).hex()  # a random 128-bit id, as uuid4().hex spells it (uuid is 1 ms to import)
        self.root = store.prefix / STATE_DIR / "tx" / self.txid

    @property
    def stage_dir(self) -> Path:
        return self.root / "stage"

    def __enter__(self) -> Transaction:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: Any) -> None:
        """Any failure inside the block undoes the transaction; a full disk then says that nothing was changed."""
        if error is None:
            return
        self.abort()
        if is_disk_full(error):
            raise disk_full(error) from error

    def abort(self) -> None:
        """Undo whatever part of this transaction happened, after an error in this process."""
        if journal_path(self.store.prefix).exists():
            recover(self.store)  # not committed, so this rolls back
        shutil.rmtree(self.root, ignore_errors=True)

    def apply(self, add: list[StagedPackage], remove: list[str]) -> None:
        """Switch: packages in `remove` and the old versions of those in `add` go, the packages in `add` come."""
        prefix = self.store.prefix
        replaced = sorted({*remove, *(s.package.name for s in add if self.store.get(s.package.name) is not None)})
        old_paths = {f.path for name in replaced for f in self.store.files(name) if f.type != "dir"}
        journal = {
            "txid": self.txid,
            "operation": self.operation,
            "old_paths": sorted(old_paths),
            "new_paths": sorted({f.path for staged in add for f in staged.files if f.type != "dir"}),
            "new_dirs": sorted({f.path for staged in add for f in staged.files if f.type == "dir"}),
        }
        fault_point("staged")
        _fsync_write(journal_path(prefix), json.dumps(journal))
        fault_point("journal-written")
        backup = self.root / "backup"
        for path in sorted(old_paths):
            source = prefix / path
            if source.is_symlink() or source.exists():
                target = backup / path
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(source, target)
        fault_point("old-moved-aside")
        for staged in add:
            _move_in(staged, prefix)
        fault_point("new-moved-in")
        self.store.commit_transaction(
            self.txid, self.operation, remove, [(staged.package, staged.files) for staged in add]
        )
        fault_point("db-committed")
        _finish(prefix, journal)


def _move_in(staged: StagedPackage, prefix: Path) -> None:
    """Move a staged package's files into the prefix: a directory the prefix lacks moves whole, in one rename (a
    package's share/locale is ninety directories: creating them again and removing the staged ones was a third of a
    cache-hit install); into a directory the prefix has, file by file. The journal lists every new file and
    directory either way, so a rollback removes them the same way."""
    whole: list[str] = []  # directories moved in one piece, as "path/"

    def moved(path: str) -> bool:
        return any(path.startswith(directory) for directory in whole)

    made: set[Path] = set()
    for file in sorted((f for f in staged.files if f.type == "dir"), key=lambda f: f.path.count("/")):
        if moved(file.path):
            continue
        target = prefix / file.path
        if not os.path.lexists(target):
            try:
                os.rename(staged.root / file.path, target)
            except OSError:  # its parent is missing (not listed), or it appeared meanwhile: file by file
                pass
            else:
                whole.append(file.path + "/")
                continue
        target.mkdir(parents=True, exist_ok=True)
        made.add(target)
    for file in staged.files:
        if file.type == "dir" or moved(file.path):
            continue
        target = prefix / file.path
        if target.parent not in made:
            target.parent.mkdir(parents=True, exist_ok=True)
            made.add(target.parent)
        os.replace(staged.root / file.path, target)


def journal_path(prefix: Path) -> Path:
    return prefix / STATE_DIR / "journal.json"


def _prune(prefix: Path, paths: list[str]) -> None:
    """Remove directories left empty by a change, deepest first; never the prefix or pkgc's state."""
    candidates: set[Path] = set()
    for path in paths:
        for parent in (prefix / path).parents:
            if parent == prefix or prefix not in parent.parents:
                break
            candidates.add(parent)
    for directory in sorted(candidates, key=lambda p: len(p.parts), reverse=True):
        if directory == prefix / STATE_DIR:
            continue
        with contextlib.suppress(OSError):  # not empty: another package's files, or the user's
            os.rmdir(directory)


def _finish(prefix: Path, journal: dict[str, Any]) -> None:
    shutil.rmtree(prefix / STATE_DIR / "tx" / journal["txid"], ignore_errors=True)
    fault_point("cleanup-half-done")
    _prune(prefix, journal["old_paths"])
    journal_path(prefix).unlink(missing_ok=True)


def _roll_back(prefix: Path, journal: dict[str, Any]) -> None:
    backup = prefix / STATE_DIR / "tx" / journal["txid"] / "backup"
    old_paths = set(journal["old_paths"])
    for path in journal["new_paths"]:
        target = prefix / path
        if path in old_paths and not ((backup / path).is_symlink() or (backup / path).exists()):
            continue  # the old file was never moved aside, so what is there is the old file
        if target.is_symlink() or target.exists():
            target.unlink()
    old = list(journal["old_paths"])
    half = len(old) // 2
    for index, path in enumerate(old):
        if index == half:
            fault_point("rollback-half-restored")
        source = backup / path
        if source.is_symlink() or source.exists():
            (prefix / path).parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, prefix / path)
    if not old:
        fault_point("rollback-half-restored")  # nothing to restore: die with the new files gone, dirs not pruned
    _prune(prefix, journal["new_paths"] + [f"{d}/_" for d in journal["new_dirs"]])
    shutil.rmtree(prefix / STATE_DIR / "tx" / journal["txid"], ignore_errors=True)
    journal_path(prefix).unlink(missing_ok=True)


def recover(store: InstalledStore) -> str | None:
    """Finish or undo a transaction that a crash interrupted; the caller holds the prefix lock.

    Returns "rolled forward", "rolled back" or None when there was nothing to do.
    """
    prefix = store.prefix
    path = journal_path(prefix)
    if not path.exists():
        _sweep_stale(prefix)
        return None
    try:
        journal = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        # Torn before its atomic rename completed is impossible; a corrupt journal means nothing was moved yet.
        path.unlink()
        return None
    if store.transaction_committed(journal["txid"]):
        _finish(prefix, journal)
        return "rolled forward"
    _roll_back(prefix, journal)
    return "rolled back"


def _sweep_stale(prefix: Path) -> None:
    """Staging directories of transactions that died before writing their journal hold nothing of value."""
    shutil.rmtree(prefix / STATE_DIR / "tx", ignore_errors=True)
    shutil.rmtree(prefix / STATE_DIR / "staging", ignore_errors=True)


def recover_if_idle(store: InstalledStore) -> None:
    """For read-only commands: repair an interrupted transaction unless another pkgc is working on the prefix."""
    if not journal_path(store.prefix).exists():
        return
    from pkgc.client.lock import prefix_lock
    from pkgc.core.errors import ConflictError

    try:
        with prefix_lock(store.prefix, wait=False):
            recover(store)
    except ConflictError:
        pass  # a live pkgc holds the lock; it will finish its own transaction
