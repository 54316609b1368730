"""The farm plans every resolve for a build platform compatible with the client's (FarmService over the in-memory
fakes): two clients on different platforms never share a build, an unservable platform or CPU level is a 422 that
names what the farm builds for, and a request without a platform (an older client) gets the default one."""

from __future__ import annotations

import pytest

from pkgc.core.buildspec import BuildSpec
from pkgc.core.errors import UnsupportedPlatform
from pkgc.core.platform import Platform
from pkgc.core.protocol import BuildStatus, ClientPlatform, PackageRequestModel, ResolveRequest
from pkgc.farm.adapters.memory import MemoryBlobStore, MemoryBuildStore, MemoryCatalogStore, MemoryQueueRouter
from pkgc.farm.service import FarmService
from pkgc.recipes import recipe_files

X86_OLD = Platform.parse("linux-x86_64-glibc-2.28")
X86 = Platform.parse("linux-x86_64-glibc-2.36")
ARM = Platform.parse("linux-aarch64-glibc-2.36")
ALL_X86 = ["x86-64", "x86-64-v2", "x86-64-v3", "x86-64-v4"]


@pytest.fixture
def service() -> FarmService:
    farm = FarmService(
        catalog=MemoryCatalogStore(),
        builds=MemoryBuildStore(),
        queues=MemoryQueueRouter(),
        blobs=MemoryBlobStore(),
        platform=X86,
        build_platforms=(X86_OLD, ARM),
    )
    assert farm.publish_recipes((p.name, p.read_text(encoding="utf-8")) for p in recipe_files()) == []
    return farm


def request(platform: Platform | None, levels: list[str] | None = None, **options: str) -> ResolveRequest:
    client = None
    if platform is not None:
        client = ClientPlatform.of(platform, levels or ([*ALL_X86] if platform.arch == "x86_64" else ["armv8-a"]))
    return ResolveRequest(packages=[PackageRequestModel(name="pigz", options=dict(options))], platform=client)


def spec_of(service: FarmService, key: str) -> BuildSpec:
    record = service.builds.get(key)
    assert record is not None
    return BuildSpec.from_json(record.spec)


def make_ready(service: FarmService, key: str) -> None:
    lease = service.builds.acquire_lease(key, "worker", now=1.0, ttl=60.0)
    assert lease is not None
    assert service.builds.finish(lease, 2.0, status=BuildStatus.READY, artifact="a", sha256="0" * 64, size=1, log="l")


def test_two_platforms_on_one_farm_never_share_a_build(service: FarmService) -> None:
    on_x86 = service.resolve(request(X86))
    on_arm = service.resolve(request(ARM))
    assert set(b.key for b in on_x86.builds).isdisjoint(b.key for b in on_arm.builds)
    for answer, platform in ((on_x86, X86), (on_arm, ARM)):
        for build in answer.builds:
            assert spec_of(service, build.key).platform == platform, "the key and the job are the build platform's"
            record = service.builds.get(build.key)
            assert record is not None and record.platform == str(platform), "the job is routed by this"
    # The x86 builds finish; the arm client still gets its own, queued, never the x86 artifacts.
    for build in on_x86.builds:
        make_ready(service, build.key)
    assert {b.status for b in service.resolve(request(X86)).builds} == {BuildStatus.READY}
    assert service.resolve_from_memory(request(X86)) is not None
    again = service.resolve(request(ARM))
    assert again.requested == on_arm.requested
    assert {b.status for b in again.builds} == {BuildStatus.QUEUED}
    assert service.resolve_from_memory(request(ARM)) is None, "the plan memo is per build platform"


def test_the_newest_compatible_build_platform_is_chosen(service: FarmService) -> None:
    newer_client = service.resolve(request(Platform.parse("linux-x86_64-glibc-2.39")))
    older_client = service.resolve(request(Platform.parse("linux-x86_64-glibc-2.31")))
    assert spec_of(service, newer_client.requested[0]).platform == X86
    assert spec_of(service, older_client.requested[0]).platform == X86_OLD
    assert newer_client.requested != older_client.requested
    # Same build platform, same build: clients on glibc 2.36 and 2.39 meet at one key.
    assert service.resolve(request(X86)).requested == newer_client.requested


def test_a_request_without_platform_gets_the_default_build_platform(service: FarmService) -> None:
    legacy = service.resolve(request(None))
    assert spec_of(service, legacy.requested[0]).platform == X86
    assert legacy.requested == service.resolve(request(X86)).requested


@pytest.mark.parametrize(
    "client",
    [
        Platform.parse("linux-x86_64-glibc-2.17"),  # older than every build platform's C library
        Platform.parse("linux-x86_64-musl-1.2"),
        Platform.parse("linux-riscv64-glibc-2.36"),
    ],
)
def test_an_unservable_platform_is_refused_naming_the_build_platforms(service: FarmService, client: Platform) -> None:
    with pytest.raises(UnsupportedPlatform) as raised:
        service.resolve(request(client, ["x86-64"]))
    assert raised.value.http_status == 422
    message = str(raised.value)
    assert str(client) in message
    for platform in (X86, X86_OLD, ARM):
        assert str(platform) in message
    assert service.builds.builds_of("pigz") == [], "nothing was created"
    assert service.resolve_from_memory(request(client, ["x86-64"])) is None


def test_a_cpu_level_the_client_cannot_run_is_refused(service: FarmService) -> None:
    levels = ["x86-64", "x86-64-v2"]
    with pytest.raises(UnsupportedPlatform, match="cpu=x86-64-v3"):
        service.resolve(request(X86, levels, cpu="x86-64-v3"))
    assert service.builds.builds_of("pigz") == []
    # The same request from a processor that runs v3 is planned; the first client is still refused, also when the
    # plan is memoised and its builds are ready (the memory path must make the same check).
    allowed = service.resolve(request(X86, ALL_X86, cpu="x86-64-v3"))
    for build in allowed.builds:
        make_ready(service, build.key)
    service.resolve(request(X86, ALL_X86, cpu="x86-64-v3"))
    assert service.resolve_from_memory(request(X86, ALL_X86, cpu="x86-64-v3")) is not None
    assert service.resolve_from_memory(request(X86, levels, cpu="x86-64-v3")) is None
    with pytest.raises(UnsupportedPlatform, match="cpu=x86-64-v3"):
        service.resolve(request(X86, levels, cpu="x86-64-v3"))
    assert service.resolve(request(X86, levels, cpu="x86-64-v2")).builds


def test_details_list_the_cpu_targets_of_the_client_architecture(service: FarmService) -> None:
    cpus = {o.name: o.values for o in service.details("hello", ARM).global_options}["cpu"]
    assert cpus[0] == "armv8-a"
    cpus = {o.name: o.values for o in service.details("hello").global_options}["cpu"]
    assert cpus[0] == "x86-64"
    assert service.platforms == (X86, X86_OLD, ARM)
