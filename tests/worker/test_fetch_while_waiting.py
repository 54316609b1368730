"""A build whose dependencies are still compiling fetches its own sources meanwhile.

When no URL or mirror has them (a mirror with holes, a typo in a recipe), building the dependencies first only
makes the user wait minutes for an error that was known at once: the build fails when its first job is received,
with a log that says why, and its dependencies go on. When the sources come, they are in the cache for the build.
A real source server on loopback serves one of the two tarballs; the other URL answers 404.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pkgc.core.buildspec import PackageRequest, plan_builds
from pkgc.core.platform import detect_platform
from pkgc.core.protocol import BuildStatus
from pkgc.core.recipe import BuildInstructions, Recipe, SourceVersion
from pkgc.farm.bootstrap import FarmConfig, build_lifecycle, open_ports
from pkgc.farm.ports import BuildRecord, FarmPorts
from pkgc.worker.fetch import SourceFetcher
from pkgc.worker.loop import Worker, WorkerSettings
from tests.conftest import _serve, make_tarball

DEPENDENCY = "d" * 64
PLATFORM = "linux-test"


@pytest.fixture
def source_server(tmp_path: Path) -> Iterator[tuple[int, str]]:
    """(port, sha256 of the one tarball it serves, tool-1.0.tar.gz)."""
    served = tmp_path / "served"
    served.mkdir()
    digest = make_tarball(served / "tool-1.0.tar.gz", "tool-1.0", {"Makefile": b"all:\n"})
    server, port = _serve(served)
    yield port, digest
    server.shutdown()


def _waiting_build(tmp_path: Path, url: str, sha256: str) -> tuple[Worker, FarmPorts, str]:
    """A farm whose build of `tool` (source at `url`) waits for a dependency that is still queued; its worker."""
    version = SourceVersion("1.0", sha256, (url,))
    recipe = Recipe("tool", "", "", "", (version,), BuildInstructions("make"))
    spec = plan_builds([PackageRequest("tool")], lambda _name: recipe, detect_platform())[0][0]
    ports = open_ports(FarmConfig.local(tmp_path / "farm"))
    ports.builds.create_if_absent(BuildRecord(DEPENDENCY, "dep", "1.0", {}, {}, platform=PLATFORM))
    record = BuildRecord(
        spec.key, "tool", "1.0", {}, spec.to_json(), dependencies=(DEPENDENCY,), platform=PLATFORM
    )
    ports.builds.create_if_absent(record)
    queue = ports.queues.for_platform(PLATFORM)
    queue.send(spec.key)
    worker = Worker(
        lifecycle=build_lifecycle(FarmConfig.local(tmp_path / "farm"), ports=ports),
        queue=queue,
        fetcher=SourceFetcher(tmp_path / "sources"),
        settings=WorkerSettings(worker_id="w1", workroot=tmp_path / "work"),
    )
    job = queue.receive(visibility_timeout=10.0, wait=0.0)
    assert job is not None
    worker.handle(job)
    return worker, ports, spec.key


def test_a_source_no_url_has_fails_the_build_before_its_dependencies_finish(
    tmp_path: Path, source_server: tuple[int, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PKGC_FETCH_LOOPBACK_ONLY", "1")
    port, _digest = source_server
    _worker, ports, key = _waiting_build(tmp_path, f"http://127.0.0.1:{port}/missing-1.0.tar.gz", "a" * 64)
    record = ports.builds.get(key)
    assert record is not None and record.status == BuildStatus.FAILED
    assert record.error is not None and "missing-1.0.tar.gz" in record.error and "404" in record.error
    assert record.log, "the failure has a log to show"
    dependency = ports.builds.get(DEPENDENCY)
    assert dependency is not None and dependency.status == BuildStatus.QUEUED, "its dependencies go on"
    assert not any((tmp_path / "work").iterdir()), "no work directory is left behind"


def test_a_source_that_comes_is_cached_and_the_build_keeps_waiting(
    tmp_path: Path, source_server: tuple[int, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PKGC_FETCH_LOOPBACK_ONLY", "1")
    port, digest = source_server
    worker, ports, key = _waiting_build(tmp_path, f"http://127.0.0.1:{port}/tool-1.0.tar.gz", digest)
    record = ports.builds.get(key)
    assert record is not None and record.status == BuildStatus.QUEUED, "still waiting for its dependency"
    assert worker.fetcher.cached(digest).is_file(), "the build will find its source in the cache"
