"""Builds that wait for others to compile have their own sources fetched meanwhile.

When no URL or mirror has a waiting build's source (a mirror with holes, a typo in a recipe), compiling its
dependencies first only makes the user wait minutes for an error that was known at once. The worker that starts a
build fetches the sources of every build waiting on it, directly or through others: a missing one fails that build
now, with a log that says why, and the compiles go on; one that comes is cached for its build. A worker that
receives a waiting build's own job does the same. A real source server on loopback serves one tarball; any other
URL on it answers 404.
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

PLATFORM = "linux-test"


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    """(base URL of a loopback source server, sha256 of the one tarball it serves, tool-1.0.tar.gz)."""
    monkeypatch.setenv("PKGC_FETCH_LOOPBACK_ONLY", "1")
    directory = tmp_path / "served"
    directory.mkdir()
    digest = make_tarball(directory / "tool-1.0.tar.gz", "tool-1.0", {"Makefile": b"all:\n"})
    server, port = _serve(directory)
    yield f"http://127.0.0.1:{port}", digest
    server.shutdown()


class Farm:
    """A local farm's ports, a worker, and builds made from one-version recipes whose source is at a given URL."""

    def __init__(self, tmp_path: Path) -> None:
        self.ports: FarmPorts = open_ports(FarmConfig.local(tmp_path / "farm"))
        self.queue = self.ports.queues.for_platform(PLATFORM)
        self.fetcher = SourceFetcher(tmp_path / "sources")
        self.workroot = tmp_path / "work"
        self.worker = Worker(
            lifecycle=build_lifecycle(FarmConfig.local(tmp_path / "farm"), ports=self.ports),
            queue=self.queue,
            fetcher=self.fetcher,
            settings=WorkerSettings(worker_id="w1", workroot=self.workroot),
        )

    def build(self, name: str, url: str, sha256: str, dependencies: tuple[str, ...] = ()) -> str:
        recipe = Recipe(name, "", "", "", (SourceVersion("1.0", sha256, (url,)),), BuildInstructions("make"))
        spec = plan_builds([PackageRequest(name)], lambda _name: recipe, detect_platform())[0][0]
        record = BuildRecord(spec.key, name, "1.0", {}, spec.to_json(), dependencies=dependencies, platform=PLATFORM)
        self.ports.builds.create_if_absent(record)
        for dependency in dependencies:  # as resolve registers it: the dependency's finish sends its job
            self.ports.builds.add_waiter(dependency, spec.key)
        return spec.key

    def handle_next_job(self, key: str) -> None:
        self.queue.send(key)
        job = self.queue.receive(visibility_timeout=10.0, wait=0.0)
        assert job is not None and job.body == key
        self.worker.handle(job)

    def record(self, key: str) -> BuildRecord:
        found = self.ports.builds.get(key)
        assert found is not None
        return found


def test_the_worker_starting_a_build_fails_a_waiter_whose_source_is_missing_through_a_chain(
    tmp_path: Path, served: tuple[str, str]
) -> None:
    base, _digest = served
    farm = Farm(tmp_path)
    # app waits for lib, which waits for base: app cannot start before base finishes.
    base_key = farm.build("base", f"{base}/base-1.0.tar.gz", "b" * 64)
    lib = farm.build("lib", f"{base}/lib-1.0.tar.gz", "c" * 64, (base_key,))
    app = farm.build("app", f"{base}/app-1.0.tar.gz", "a" * 64, (lib,))
    farm.handle_next_job(base_key)
    for key, name in ((app, "app"), (lib, "lib")):
        record = farm.record(key)
        assert record.status == BuildStatus.FAILED, name
        assert record.error is not None and f"{name}-1.0.tar.gz" in record.error and "404" in record.error, (
            "its own source's error, not its dependency's"
        )
        assert record.log, "the failure has a log to show"
    assert not any(farm.workroot.iterdir()), "no work directory is left behind"


def test_a_waiters_source_that_comes_is_cached_and_the_waiter_keeps_waiting(
    tmp_path: Path, served: tuple[str, str]
) -> None:
    base, digest = served
    farm = Farm(tmp_path)
    dependency = farm.build("dep", f"{base}/dep-1.0.tar.gz", "d" * 64)  # fails: its source is missing
    tool = farm.build("tool", f"{base}/tool-1.0.tar.gz", digest, (dependency,))
    farm.handle_next_job(dependency)
    assert farm.fetcher.cached(digest).is_file(), "the waiter will find its source in the cache"
    assert farm.record(tool).status == BuildStatus.QUEUED, "its source is fine: it hears of its dependency itself"


def test_a_worker_that_receives_a_waiting_builds_job_fetches_its_source(tmp_path: Path, served: tuple[str, str]) -> None:
    base, _digest = served
    farm = Farm(tmp_path)
    dependency = farm.build("dep", f"{base}/dep-1.0.tar.gz", "d" * 64)  # queued, not started
    app = farm.build("app", f"{base}/app-1.0.tar.gz", "a" * 64, (dependency,))
    farm.handle_next_job(app)  # a job that came early (the safety net's resend): the build is Waiting
    assert farm.record(app).status == BuildStatus.FAILED
    assert farm.record(dependency).status == BuildStatus.QUEUED, "its dependencies go on"
