"""End-to-end: install -> upgrade -> downgrade -> rollback -> remove of a real (loopback-served) package, with the
files on disk and the database checked at every step, and upgrade --all as one resolve request."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import FarmEnv

pytestmark = pytest.mark.e2e


def state(farm: FarmEnv, prefix: Path) -> tuple[dict[str, str], list[str]]:
    """(installed name -> version from the database, user files on disk)."""
    listed = json.loads(farm.pkgc("list", "--json", "--prefix", str(prefix), check=True).stdout)
    files = sorted(
        p.relative_to(prefix).as_posix() for p in prefix.rglob("*") if p.is_file() and ".pkgc" not in p.parts
    )
    return {p["name"]: p["version"] for p in listed}, files


def says(prefix: Path) -> str:
    return subprocess.run([prefix / "bin/greet"], capture_output=True, text=True, check=True).stdout.strip()


def test_install_upgrade_downgrade_rollback_remove(farm: FarmEnv) -> None:
    prefix = farm.root / "versions"
    p = ("--prefix", str(prefix))
    farm.pkgc("install", "greet@1.0", "--opt", "opt=O1", *p, check=True)
    assert state(farm, prefix) == ({"greet": "1.0"}, ["bin/greet", "share/greet/notes-1.0.txt"])
    assert says(prefix) == "greet 1.0"

    upgraded = json.loads(farm.pkgc("upgrade", "greet", "--json", *p, check=True).stdout)
    assert upgraded["changes"] == [{"name": "greet", "old_version": "1.0", "new_version": "2.0"}]
    assert state(farm, prefix) == ({"greet": "2.0"}, ["bin/greet", "share/greet/notes-2.0.txt"])
    assert says(prefix) == "greet 2.0"
    listed = json.loads(farm.pkgc("list", "--json", *p, check=True).stdout)
    assert listed[0]["options"]["opt"] == "O1", "upgrade keeps the package's options"

    farm.pkgc("downgrade", "greet", *p, check=True)  # to the previous version: 1.1
    assert state(farm, prefix) == ({"greet": "1.1"}, ["bin/greet", "share/greet/notes-1.1.txt"])
    farm.pkgc("downgrade", "greet", "1.0", *p, check=True)
    assert state(farm, prefix) == ({"greet": "1.0"}, ["bin/greet", "share/greet/notes-1.0.txt"])
    assert farm.pkgc("downgrade", "greet", *p).returncode == 2, "nothing older than 1.0"

    farm.pkgc("rollback", *p, check=True)  # undo the last downgrade
    assert state(farm, prefix) == ({"greet": "1.1"}, ["bin/greet", "share/greet/notes-1.1.txt"])
    assert says(prefix) == "greet 1.1"
    history = json.loads(farm.pkgc("history", "--json", *p, check=True).stdout)
    assert [h["operation"] for h in history] == ["install", "upgrade", "downgrade", "downgrade", "rollback"]
    farm.pkgc("rollback", "1", *p, check=True)  # before the first install: nothing
    assert state(farm, prefix) == ({}, [])
    farm.pkgc("rollback", *p, check=True)  # and back
    assert state(farm, prefix) == ({"greet": "1.1"}, ["bin/greet", "share/greet/notes-1.1.txt"])
    assert farm.pkgc("verify", *p).returncode == 0

    farm.pkgc("remove", "greet", *p, check=True)
    assert state(farm, prefix) == ({}, [])


def test_rollback_refuses_to_take_away_what_a_later_package_needs(farm: FarmEnv, tmp_path: Path) -> None:
    prefix = tmp_path / "needed"
    p = ("--prefix", str(prefix))
    farm.pkgc("install", "zlib", *p, check=True)  # entry 1
    farm.pkgc("install", "pigz", *p, check=True)  # entry 2: pigz links the zlib of entry 1
    before = state(farm, prefix)
    refused = farm.pkgc("rollback", "1", *p)
    assert refused.returncode == 7, refused.stderr
    assert "zlib" in refused.stderr and "needed by pigz" in refused.stderr
    assert state(farm, prefix) == before
    assert farm.pkgc("verify", *p).returncode == 0
    farm.pkgc("rollback", *p, check=True)  # entry 2 first: pigz goes
    farm.pkgc("rollback", "1", *p, check=True)  # now nothing needs zlib
    assert state(farm, prefix) == ({}, [])


def test_upgrade_all_is_one_resolve_for_every_package(farm: FarmEnv) -> None:
    prefix = farm.root / "upgrade-all"
    p = ("--prefix", str(prefix))
    farm.pkgc("install", "greet@1.0", *p, check=True)
    farm.pkgc("install", "lz4", *p, check=True)
    access_log = farm.root / "access.log"
    env = {**farm.env, "PKGC_TRACE_HTTP": str(access_log)}
    result = subprocess.run(
        [*farm.pkgc_argv("upgrade", "--all", "--json", *p)], env=env, capture_output=True, text=True, check=True
    )
    changes = json.loads(result.stdout)["changes"]
    assert changes == [{"name": "greet", "old_version": "1.0", "new_version": "2.0"}]
    requests = [line.split()[1] for line in access_log.read_text().splitlines()]
    assert requests.count("/v1/resolve") == 1
    assert state(farm, prefix)[0] == {"greet": "2.0", "lz4": "1.9.4"}


def test_errors_of_the_version_commands(farm: FarmEnv, tmp_path: Path) -> None:
    p = ("--prefix", str(tmp_path / "empty"))
    assert farm.pkgc("upgrade", "greet", *p).returncode == 3
    assert farm.pkgc("upgrade", *p).returncode == 2
    assert farm.pkgc("downgrade", "greet", *p).returncode == 3
    assert farm.pkgc("files", "greet", *p).returncode == 3
    assert farm.pkgc("rollback", *p).returncode == 2
    farm.pkgc("install", "greet@1.0", *p, check=True)
    missing = farm.pkgc("rollback", "99", *p)
    assert missing.returncode == 3 and "pkgc history" in missing.stderr
    assert farm.pkgc("downgrade", "greet", "2.0", *p).returncode == 2
    assert farm.pkgc("unpin", "nothing-pinned").returncode == 3
    assert farm.pkgc("install", "greet@9.9", *p).returncode == 3
