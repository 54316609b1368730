"""Switching a staged package in: a directory the prefix lacks moves in one rename, an existing one file by file.

Real files in a real prefix (tmp_path) with the real installed database; the transaction is the one `pkgc install`
runs. The inode of a staged directory tells which way it went.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from pkgc.client.transaction import FAULT_ENV, StagedPackage, Transaction, recover
from pkgc.localdb.store import STATE_DIR, InstalledFile, InstalledPackage, InstalledStore


def stage(transaction: Transaction, name: str, files: dict[str, str], dirs: list[str]) -> StagedPackage:
    root = transaction.stage_dir / name
    records = []
    for directory in dirs:
        (root / directory).mkdir(parents=True, exist_ok=True)
        records.append(InstalledFile(directory, "dir"))
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
        records.append(InstalledFile(path, "file", "0" * 64, len(text), 0o644))
    package = InstalledPackage(name, "1.0", "a" * 64, {}, True, [], 0.0)
    return StagedPackage(package, records, root)


LOCALE = [f"share/locale/{lang}/LC_MESSAGES" for lang in ("de", "fr", "nl")]
DIRS = ["bin", "share", "share/locale", *[d.rsplit("/", 1)[0] for d in LOCALE], *LOCALE]
FILES = {"bin/hello": "#!/bin/sh\n", **{f"{d}/hello.mo": d for d in LOCALE}}


def test_into_a_fresh_prefix_each_top_directory_moves_whole(tmp_path: Path) -> None:
    store = InstalledStore(tmp_path / "prefix")
    with Transaction(store, "install") as transaction:
        staged = stage(transaction, "hello", FILES, DIRS)
        inodes = {d: (staged.root / d).stat().st_ino for d in ("bin", "share")}
        transaction.apply(add=[staged], remove=[])
    prefix = store.prefix
    assert {d: (prefix / d).stat().st_ino for d in ("bin", "share")} == inodes, "moved, not made again"
    for path, text in FILES.items():
        assert (prefix / path).read_text() == text
    assert {f.path for f in store.files("hello") if f.type != "dir"} == set(FILES)
    assert not (prefix / STATE_DIR / "tx").exists() or not any((prefix / STATE_DIR / "tx").iterdir())


def test_into_existing_directories_file_by_file_and_nothing_else_is_touched(tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    (prefix / "share" / "locale" / "de" / "LC_MESSAGES").mkdir(parents=True)
    (prefix / "share" / "locale" / "de" / "LC_MESSAGES" / "other.mo").write_text("the user's")
    (prefix / "bin").mkdir()
    before = (prefix / "share" / "locale").stat().st_ino
    store = InstalledStore(prefix)
    with Transaction(store, "install") as transaction:
        staged = stage(transaction, "hello", FILES, DIRS)
        fr = (staged.root / "share/locale/fr").stat().st_ino
        transaction.apply(add=[staged], remove=[])
    assert (prefix / "share" / "locale").stat().st_ino == before, "an existing directory stays"
    assert (prefix / "share/locale/de/LC_MESSAGES/other.mo").read_text() == "the user's"
    assert (prefix / "share/locale/fr").stat().st_ino == fr, "the missing one below it moves whole"
    for path, text in FILES.items():
        assert (prefix / path).read_text() == text


def test_a_directory_whose_parent_is_not_listed_is_still_installed(tmp_path: Path) -> None:
    store = InstalledStore(tmp_path / "prefix")
    with Transaction(store, "install") as transaction:
        staged = stage(transaction, "lib", {"lib/pkgconfig/x.pc": "Name: x\n"}, ["lib/pkgconfig"])
        transaction.apply(add=[staged], remove=[])
    assert (store.prefix / "lib/pkgconfig/x.pc").read_text() == "Name: x\n"


CRASH = """
import sys
sys.path.insert(0, {root!r})
from pathlib import Path
from pkgc.client.transaction import Transaction
from pkgc.localdb.store import InstalledStore
from tests.unit.test_move_in import DIRS, FILES, stage
store = InstalledStore(Path({prefix!r}))
with Transaction(store, "install") as transaction:
    transaction.apply(add=[stage(transaction, "hello", FILES, DIRS)], remove=[])
"""


def test_a_crash_after_whole_directories_moved_in_rolls_them_back(tmp_path: Path) -> None:
    """Killed (SIGKILL) once everything has moved in, before the database commit: recovery removes what moved in
    whole, as it removed what moved file by file, and leaves the user's file."""
    prefix = tmp_path / "prefix"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "bin" / "mine").write_text("kept")
    root = str(Path(__file__).resolve().parents[2])
    script = CRASH.format(root=root, prefix=str(prefix))
    env = {**os.environ, FAULT_ENV: "new-moved-in"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert (prefix / "share/locale/fr/LC_MESSAGES/hello.mo").exists(), "it died after moving in"
    store = InstalledStore(prefix)
    assert recover(store) == "rolled back"
    assert sorted(os.listdir(prefix)) == sorted(["bin", STATE_DIR])
    assert os.listdir(prefix / "bin") == ["mine"]
    assert store.get("hello") is None
