"""The port promises the build lifecycle adds (waiters, one queue per platform, the catalog snapshot), for the
in-memory fakes and the local adapters alike; and the local database's forward migration of an older farm."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from pkgc.core.platform import detect_platform
from pkgc.core.protocol import BuildStatus
from pkgc.farm.adapters.local import open_farm_database
from pkgc.farm.adapters.memory import memory_ports
from pkgc.farm.bootstrap import FarmConfig, open_ports
from pkgc.farm.ports import BuildRecord, FarmPorts

PORTS: list[Callable[[Path], FarmPorts]] = [lambda _: memory_ports(), lambda p: open_ports(FarmConfig.local(p))]


@pytest.fixture(params=PORTS, ids=["memory", "local"])
def ports(request: pytest.FixtureRequest, tmp_path: Path) -> FarmPorts:
    return request.param(tmp_path)  # type: ignore[no-any-return]


def record(key: str, platform: str = "linux-x86_64-glibc2.36") -> BuildRecord:
    return BuildRecord(key=key, name="hello", version="1.0", options={}, spec={}, platform=platform)


def test_waiters_are_a_set_and_concurrent_adds_are_all_kept(ports: FarmPorts) -> None:
    builds = ports.builds
    builds.create_if_absent(record("d" * 64))
    assert builds.add_waiter("0" * 64, "w" * 64) is None, "no such dependency"
    waiters = [f"{i:064x}" for i in range(16)]
    barrier = threading.Barrier(len(waiters))

    def add(key: str) -> None:
        barrier.wait()
        builds.add_waiter("d" * 64, key)

    threads = [threading.Thread(target=add, args=(key,)) for key in waiters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    again = builds.add_waiter("d" * 64, waiters[0])
    assert again is not None and sorted(again.waiters) == waiters and again.status == BuildStatus.QUEUED
    stored = builds.get("d" * 64)
    assert stored is not None and stored.platform == "linux-x86_64-glibc2.36"


def test_add_waiter_returns_the_status_after_a_finish(ports: FarmPorts) -> None:
    builds = ports.builds
    builds.create_if_absent(record("d" * 64))
    lease = builds.acquire_lease("d" * 64, "w", now=1.0, ttl=10.0)
    assert lease is not None and builds.finish(lease, 2.0, status=BuildStatus.READY, artifact="a", sha256="s", size=1)
    after = builds.add_waiter("d" * 64, "w" * 64)
    assert after is not None and after.status == BuildStatus.READY and after.waiters == ("w" * 64,)


def test_each_platform_has_its_own_queue(ports: FarmPorts) -> None:
    x86, arm = ports.queues.for_platform("linux-x86_64-glibc2.36"), ports.queues.for_platform("linux-aarch64-glibc2.36")
    x86.send("for-x86")
    assert arm.receive(visibility_timeout=5, wait=0) is None and arm.depth() == 0
    job = x86.receive(visibility_timeout=5, wait=0)
    assert job is not None and job.body == "for-x86"


def test_the_catalog_snapshot_round_trips(ports: FarmPorts) -> None:
    assert ports.catalog.read_snapshot() is None
    ports.catalog.write_snapshot(b'{"packages": []}')
    ports.catalog.write_snapshot(b'{"packages": [1]}')
    assert ports.catalog.read_snapshot() == b'{"packages": [1]}'


OLD_SCHEMA = """
CREATE TABLE builds (key VARCHAR PRIMARY KEY, name VARCHAR NOT NULL, version VARCHAR NOT NULL, options TEXT NOT NULL,
  spec TEXT NOT NULL, status VARCHAR NOT NULL, dependencies TEXT NOT NULL, runtime_dependencies TEXT NOT NULL,
  artifact VARCHAR, sha256 VARCHAR, size INTEGER, log VARCHAR, error TEXT, lease_owner VARCHAR,
  lease_token INTEGER NOT NULL, lease_expires FLOAT NOT NULL, attempts INTEGER NOT NULL,
  created_at FLOAT NOT NULL, updated_at FLOAT NOT NULL, enqueued_at FLOAT NOT NULL);
CREATE TABLE jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL, visible_at FLOAT NOT NULL,
  receive_count INTEGER NOT NULL, receipt VARCHAR, dead INTEGER NOT NULL);
INSERT INTO builds VALUES ('cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc', 'greet', '1.0', '{}',
  '{}', 'ready', '[]', '[]', 'artifacts/cc/cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc.tar.zst',
  'ab', 3, NULL, NULL, NULL, 1, 0, 1, 1, 1, 1);
INSERT INTO jobs (body, visible_at, receive_count, dead) VALUES ('old-job', 0, 0, 0);
"""


def test_an_older_farm_database_is_migrated_forward(tmp_path: Path) -> None:
    database = tmp_path / "farm.db"
    with sqlite3.connect(database) as conn:
        conn.executescript(OLD_SCHEMA)
    open_farm_database(database).dispose()
    ports = open_ports(FarmConfig.local(tmp_path))
    old = ports.builds.get("c" * 64)
    assert old is not None and old.status == BuildStatus.READY and old.last_line == "" and old.waiters == ()
    assert old.platform == str(detect_platform()), "the embedded farm built only for itself"
    assert ports.blobs.url_for(old.artifact or "") == f"/v1/blobs/{old.artifact}", "old artifacts keep a URL"
    job = ports.queues.for_platform(str(detect_platform())).receive(visibility_timeout=5, wait=0)
    assert job is not None and job.body == "old-job", "a job of the old queue goes to this machine's platform"
    assert ports.builds.add_waiter("c" * 64, "w" * 64) is not None
