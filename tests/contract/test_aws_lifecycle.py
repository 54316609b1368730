"""The build lifecycle on the AWS adapters (DynamoDB, SQS, S3 on moto): a stale worker's late publish or failure
changes nothing, its uploaded bytes stay unreferenced; and a dead job never overrides a build that finished."""

from __future__ import annotations

import time
from pathlib import Path

from pkgc.core.protocol import BuildStatus
from pkgc.farm.adapters.aws import aws_ports
from pkgc.farm.aws_settings import AwsSettings
from pkgc.farm.ports import BuildRecord
from pkgc.farm.work import BuildLifecycle

PLATFORM = "linux-x86_64"  # the platform of make_aws_settings' queue


def _files(tmp_path: Path, content: bytes) -> tuple[Path, Path, str, int]:
    import hashlib

    artifact, log = tmp_path / f"{content.decode()}.tar.zst", tmp_path / f"{content.decode()}.log"
    artifact.write_bytes(content)
    log.write_bytes(b"log of " + content)
    return artifact, log, hashlib.sha256(content).hexdigest(), len(content)


def test_a_stale_workers_late_finish_changes_nothing_on_aws(aws_settings: AwsSettings, tmp_path: Path) -> None:
    ports = aws_ports(aws_settings)
    lifecycle = BuildLifecycle.from_ports(ports)
    key = "b" * 64
    ports.builds.create_if_absent(
        BuildRecord(key=key, name="hello", version="2.10", options={}, spec={"name": "hello"}, platform=PLATFORM)
    )
    old = ports.builds.acquire_lease(key, "stalled", time.time(), 1.0)
    assert old is not None
    time.sleep(1.2)  # the stalled worker's lease expires; another worker takes the build
    fresh = ports.builds.acquire_lease(key, "healthy", time.time(), 60.0)
    assert fresh is not None and fresh.token > old.token
    assert lifecycle.publish(fresh, *_files(tmp_path, b"good"))
    before = ports.builds.get(key)
    assert before is not None and before.status == BuildStatus.READY

    assert not lifecycle.publish(old, *_files(tmp_path, b"evil")), "the fenced finish refuses the stale lease"
    assert not lifecycle.fail(old, None, "late failure")
    assert not lifecycle.renew(old, 60.0)
    assert ports.builds.get(key) == before, "the READY build is unchanged: same artifact, digest, log"
    assert before.artifact is not None and "evil" not in before.artifact
    assert lifecycle.bury(key).outcome == "dropped", "a dead job of a READY build leaves it READY"
    assert ports.builds.get(key) == before
