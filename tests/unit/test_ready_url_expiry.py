"""Ready builds are answered from memory, but a URL that expires (a presigned S3 URL) is made again past half its
lifetime: a client never gets a URL that is about to die, however long the farm process lives. URLs that never
expire (the embedded farm's API paths, a CDN's) are kept as they are. In-memory fakes and a clock the test moves."""

from __future__ import annotations

import hashlib
from pathlib import Path

from pkgc.core.platform import detect_platform
from pkgc.core.protocol import ResolveRequest
from pkgc.farm.adapters.memory import MemoryBlobStore, memory_ports
from pkgc.farm.embedded import publish_recipes
from pkgc.farm.ports import FarmPorts
from pkgc.farm.service import FarmService
from pkgc.farm.work import Build, BuildLifecycle

LIFETIME = 3600.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def ready_farm(tmp_path: Path, url_lifetime: float | None) -> tuple[FarmService, FarmPorts, Clock]:
    """A farm whose hello build is ready (a worker's claim and publish through the lifecycle)."""
    clock = Clock()
    ports = memory_ports(clock=clock, url_lifetime=url_lifetime)
    service = FarmService.from_ports(
        ports,
        detect_platform(),
        clock=clock,
    )
    assert publish_recipes(service) == []
    (key,) = [build.key for build in service.resolve(request()).builds]
    lifecycle = BuildLifecycle.from_ports(ports, clock=clock)
    claim = lifecycle.claim(key, "w1", 60.0)
    assert isinstance(claim, Build)
    artifact, log = tmp_path / "a.tar.zst", tmp_path / "build.log"
    artifact.write_bytes(b"artifact")
    log.write_bytes(b"log")
    assert lifecycle.publish(claim.lease, artifact, log, hashlib.sha256(b"artifact").hexdigest(), 8)
    return service, ports, clock


def request() -> ResolveRequest:
    return ResolveRequest.model_validate({"packages": [{"name": "hello"}]})


def urls_made(ports: FarmPorts) -> int:
    assert isinstance(ports.blobs, MemoryBlobStore)
    return ports.blobs.urls_made


def expiry(url: str | None) -> float:
    assert url is not None and "?expires=" in url
    return float(url.rsplit("=", 1)[1])


def test_an_expiring_url_is_made_again_past_half_its_lifetime(tmp_path: Path) -> None:
    service, ports, clock = ready_farm(tmp_path, LIFETIME)
    first = service.resolve(request()).builds[0]
    assert expiry(first.url) == clock.now + LIFETIME and expiry(first.log_url) == clock.now + LIFETIME
    made = urls_made(ports)

    clock.now += LIFETIME / 2 - 1
    assert service.resolve_from_memory(request()) == service.resolve(request()), "still fresh: kept as it was"
    assert service.resolve(request()).builds[0].url == first.url
    assert urls_made(ports) == made, "no URL is made while the kept ones have more than half their life left"

    clock.now += 1
    assert service.resolve_from_memory(request()) is None, "half the lifetime gone: the event loop must not answer"
    renewed = service.resolve(request()).builds[0]
    assert expiry(renewed.url) == clock.now + LIFETIME and expiry(renewed.log_url) == clock.now + LIFETIME
    assert renewed.model_copy(update={"url": first.url, "log_url": first.log_url}) == first, "only the URLs change"
    assert urls_made(ports) == made + 2
    from_memory = service.resolve_from_memory(request())
    assert from_memory is not None and from_memory.builds == [renewed], "the renewed answer is kept again"


def test_a_client_always_gets_at_least_half_the_lifetime(tmp_path: Path) -> None:
    service, _ports, clock = ready_farm(tmp_path, LIFETIME)
    for _ in range(40):  # 40 steps of 7 minutes: several refreshes
        clock.now += 420.0
        answer = service.resolve_from_memory(request()) or service.resolve(request())
        assert expiry(answer.builds[0].url) - clock.now >= LIFETIME / 2


def test_urls_that_never_expire_are_kept_for_good(tmp_path: Path) -> None:
    service, ports, clock = ready_farm(tmp_path, None)
    first = service.resolve(request())
    made = urls_made(ports)
    clock.now += 365 * 24 * 3600.0
    assert service.resolve_from_memory(request()) == first
    assert service.resolve(request()) == first
    assert urls_made(ports) == made
