"""What goes into the prefix: a requested build and its runtime closure (pkgc.client.install.runtime_closure)."""

from __future__ import annotations

import hashlib

from pkgc.client.install import runtime_closure
from pkgc.core.protocol import BuildInfo, BuildStatus


def key(name: str) -> str:
    """A build key for a test build: 64 lower-case hex digits, as the protocol requires."""
    return hashlib.sha256(name.encode()).hexdigest()


def build(name: str, dependencies: list[str] = [], runtime: list[str] = []) -> BuildInfo:  # noqa: B006
    return BuildInfo(
        key=key(name),
        name=name,
        version="1.0",
        options={},
        status=BuildStatus.QUEUED,  # the closure depends on the dependency lists only
        dependencies=[key(d) for d in dependencies],
        runtime_dependencies=runtime,
    )


def test_build_only_dependencies_and_theirs_stay_out() -> None:
    builds = [
        build("app", ["tool", "lib"], runtime=["lib"]),  # tool: build only
        build("tool", ["toollib"], runtime=["toollib"]),  # tool's runtime library: only the farm runs tool
        build("toollib"),
        build("lib", ["base", "gen"], runtime=["base"]),  # runtime deps of runtime deps come along
        build("base"),
        build("gen"),
    ]
    by_key = {b.key: b for b in builds}
    assert {by_key[k].name for k in runtime_closure(key("app"), by_key)} == {"app", "lib", "base"}
    assert {by_key[k].name for k in runtime_closure(key("tool"), by_key)} == {"tool", "toollib"}
