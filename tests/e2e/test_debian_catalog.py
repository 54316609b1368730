"""End-to-end: the Debian source catalog in a real embedded farm (loopback only).

The farm's Debian catalog is the prefetched Sources excerpt (libtar, libevdevplus, serd: fetched through apt by
`python -m pkgc.worker.prefetch`) plus a few real stanzas from tests/fixtures; their tarballs come from the seeded
cache. `pkgc search` finds packages only the Debian catalog knows, `pkgc info` says curated or generated, a curated
recipe overrides a generated one, generated recipes of an autotools, a cmake and a meson package install and run,
and a generated build that fails says so in one line with its log.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import FarmEnv, require_bubblewrap, seed_debian_catalog, user_env

pytestmark = pytest.mark.e2e

FIXTURE = Path(__file__).parent.parent / "fixtures" / "debian" / "Sources"
CURATED_DDATE = """\
name = "ddate"
summary = "Curated: converts dates to the Discordian calendar"
homepage = "https://github.com/bo0ts/ddate"
license = "public-domain"
[[versions]]
version = "0.2.2"
sha256 = "d53c3f0af845045f39d6d633d295fd4efbe2a792fd0d04d25d44725d11c678ad"
mirrors = ["mirror://debian/pool/main/d/ddate/ddate_0.2.2.orig.tar.gz"]
[build]
system = "cmake"
"""


@pytest.fixture(scope="module")
def debian_farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FarmEnv]:
    """An embedded farm of its own (one worker) whose catalog holds the Debian excerpt: the session farm's catalog
    stays as the other tests expect it."""
    require_bubblewrap()
    root = tmp_path_factory.mktemp("pkgc-debian")
    recipes = root / "recipes"
    recipes.mkdir()
    (recipes / "ddate.toml").write_text(CURATED_DDATE)
    # The excerpt's own stanzas come last: the same names and versions as in the fixture win from there.
    seed_debian_catalog(root / "farm", FIXTURE.read_text(encoding="utf-8"))
    env = user_env(root, PKGC_RECIPE_PATH=str(recipes), PKGC_REQUIRE_SANDBOX="1")
    started = subprocess.run(
        [sys.executable, "-m", "pkgc", "farm", "up", "--workers", "1"], env=env, capture_output=True, text=True
    )
    assert started.returncode == 0, started.stderr
    state = json.loads((root / "farm" / "state.json").read_text())
    try:
        yield FarmEnv(root=root, env=env, url=state["url"], farm_home=root / "farm", flaky_marker=root / "unused")
    finally:
        subprocess.run([sys.executable, "-m", "pkgc", "farm", "stop"], env=env, capture_output=True, timeout=60)


def test_search_finds_packages_only_the_debian_catalog_knows(debian_farm: FarmEnv) -> None:
    found = json.loads(debian_farm.pkgc("search", "libcbor", "--json", check=True).stdout)
    assert [r["name"] for r in found] == ["libcbor"], "libcbor has no recipe file: only the Debian catalog knows it"
    assert found[0]["latest"] == "0.8.0", "the Debian revision is not part of the version"
    by_binary = [r["name"] for r in json.loads(debian_farm.pkgc("search", "libserd", "--json", check=True).stdout)]
    assert "serd" in by_binary, "a source package is found by the names of the binaries it builds"
    epoch = json.loads(debian_farm.pkgc("search", "exuberant-ctags", "--json", check=True).stdout)
    assert epoch[0]["latest"] == "5.9~svn20110310", "no epoch, no revision"
    curated = json.loads(debian_farm.pkgc("search", "hello", "--json", check=True).stdout)
    assert curated[0]["name"] == "hello", "the bundled recipes are listed beside the Debian catalog"


def test_info_says_curated_or_generated_and_curated_wins(debian_farm: FarmEnv) -> None:
    generated = json.loads(debian_farm.pkgc("info", "libcbor", "--json", check=True).stdout)
    assert generated["origin"] == "generated"
    assert generated["homepage"] == "https://github.com/PJK/libcbor"
    assert generated["build_dependencies"] == [] and generated["runtime_dependencies"] == []
    text = debian_farm.pkgc("info", "libcbor", check=True).stdout
    assert "recipe: generated from the Debian source catalog" in text
    sord = json.loads(debian_farm.pkgc("info", "sord", "--json", check=True).stdout)
    assert sord["runtime_dependencies"] == ["serd"], "libserd-dev maps to serd through the Binary lists"
    ddate = json.loads(debian_farm.pkgc("info", "ddate", "--json", check=True).stdout)
    assert ddate["origin"] == "curated" and ddate["summary"].startswith("Curated:"), "the recipe file wins"
    assert "recipe: curated" in debian_farm.pkgc("info", "hello", check=True).stdout


def test_a_failed_generated_build_says_so_with_its_log(debian_farm: FarmEnv) -> None:
    # exuberant-ctags's tarball is not in the seeded cache and the farm fetches from loopback only.
    result = debian_farm.pkgc("install", "exuberant-ctags", "--wait", "--prefix", str(debian_farm.root / "fail"))
    assert result.returncode != 0
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1, result.stderr
    assert "failed: generated recipe (from the Debian catalog)" in error[0]
    assert "/log" in error[0], "the one line names the build's log"


@pytest.mark.parametrize(
    ("package", "detected", "command", "expect"),
    [  # libtar's orig tarball is a git export: configure.ac only, so autoreconf runs first
        ("libtar", "autotools (found configure.ac without configure)", ["bin/libtar", "-t", "{tar}"], "hello.txt"),
        ("serd", "meson (found meson.build)", ["bin/serdi", "-v"], "serdi 0.30"),
        ("libevdevplus", "cmake (found CMakeLists.txt)", None, "lib/libevdevPlus.so"),  # a library
    ],
)
def test_install_generated_recipes(
    debian_farm: FarmEnv, package: str, detected: str, command: list[str] | None, expect: str
) -> None:
    prefix = debian_farm.root / f"prefix-{package}"
    debian_farm.pkgc("install", package, "--wait", "--prefix", str(prefix), check=True, timeout=1200)
    info = json.loads(debian_farm.pkgc("info", package, "--json", "--prefix", str(prefix), check=True).stdout)
    assert info["origin"] == "generated" and info["installed"]
    with debian_farm.api() as api:
        key = api.get(f"/v1/packages/{package}/builds").json()["builds"][0]["key"]
        assert f"pkgc: build system {detected}" in api.get(f"/v1/builds/{key}/log").text
    if command is None:
        assert (prefix / expect).exists(), f"{package} installed no {expect}"
        return
    work = debian_farm.root / f"work-{package}"
    work.mkdir()
    (work / "hello.txt").write_text("hello\n")
    tar = work / "made.tar"
    if package == "libtar":
        made = subprocess.run([str(prefix / "bin/libtar"), "-c", str(tar), "hello.txt"], cwd=work, timeout=30)
        assert made.returncode == 0
    argv = [str(prefix / command[0]), *(arg.replace("{tar}", str(tar)) for arg in command[1:])]
    ran = subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=work)
    assert expect in ran.stdout + ran.stderr, (ran.stdout, ran.stderr)
