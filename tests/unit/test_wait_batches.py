"""A closure larger than one wait request may name (a generated recipe's can be) is watched in batches."""

from __future__ import annotations

import hashlib
from typing import Any

from pkgc.client.install import SilentReporter, wait_for_builds
from pkgc.core.protocol import MAX_KEYS_PER_REQUEST, BuildInfo, BuildStatus, WaitResponse


class FakeFarm:
    """Finishes every build it is asked about; remembers how many keys each wait named."""

    def __init__(self) -> None:
        self.asked: list[int] = []

    def wait(self, keys: list[str], timeout: float, seen: dict[str, BuildStatus] | None = None) -> WaitResponse:
        assert len(keys) <= MAX_KEYS_PER_REQUEST, "the protocol refuses larger waits"
        self.asked.append(len(keys))
        finished = [build(key, BuildStatus.READY) for key in keys]
        return WaitResponse(finished=finished, pending=[], progress=[])


def build(key: str, status: BuildStatus) -> BuildInfo:
    ready = {"url": f"/v1/blobs/{key}", "sha256": key, "size": 1} if status == BuildStatus.READY else {}
    return BuildInfo(key=key, name="pkg", version="1.0", options={}, status=status, **ready)


def test_more_pending_builds_than_one_wait_may_name() -> None:
    keys = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(MAX_KEYS_PER_REQUEST + 26)]
    farm: Any = FakeFarm()
    done = wait_for_builds(farm, [build(k, BuildStatus.QUEUED) for k in keys], SilentReporter())
    assert [b.key for b in done] == keys and all(b.status == BuildStatus.READY for b in done)
    assert farm.asked == [MAX_KEYS_PER_REQUEST, 26]
