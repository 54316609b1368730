"""End-to-end: the recipe format's issue-9 features, each shown by a real package that needs it, built by the
session farm from Debian's original tarballs (loopback only: the sources and series were prefetched).

- jq: Debian's jq_1.6.orig.tar.gz is a git archive with no configure, so it builds through a bootstrap step
  (autoreconf); Debian's patch series hard-codes its version and carries its security fixes; it finds the farm's
  oniguruma through {dep.oniguruma.prefix}. oniguruma's own orig tarball is a git archive too.
- expat: Debian's security patch series (debian/patches/series of expat_2.5.0-1+deb12u2) is applied.
- libyaml: its CMake build installs no yaml-0.1.pc; a post-install step writes it, and the smoke test finds it
  with pkg-config limited to the prefix (a host libyaml-dev cannot answer for it).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pkgc.core.recipe import load_recipe
from pkgc.core.toolchain import load_toolchain
from pkgc.recipes import bundled_recipe_dir
from tests.conftest import FarmEnv
from tests.smoke import run_smoke

pytestmark = pytest.mark.e2e


def install(farm: FarmEnv, prefix: Path, name: str) -> None:
    farm.pkgc("install", name, "--prefix", str(prefix), check=True, timeout=1200)
    run_smoke(load_recipe(bundled_recipe_dir() / f"{name}.toml"), prefix, farm.env)


def dynamic(path: Path, tag: str) -> list[str]:
    """The values of one dynamic-section tag (NEEDED, RUNPATH) of an ELF file."""
    out = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True, check=True).stdout
    return [line.split("[", 1)[1].rstrip("]") for line in out.splitlines() if f"({tag})" in line]


def assert_self_contained(prefix: Path, *files: str) -> None:
    """Every NEEDED is a base library or one of the prefix's own; every RUNPATH entry is inside the prefix (no
    build directory of the farm, no placeholder)."""
    base = load_toolchain().base_sonames
    own = {p.name for p in (prefix / "lib").iterdir()}
    for name in files:
        path = prefix / name
        for needed in dynamic(path, "NEEDED"):
            assert needed in base or needed in own, f"{name} needs {needed}, neither a base library nor its own"
        for entry in ":".join(dynamic(path, "RUNPATH")).split(":"):
            assert not entry or entry.startswith(str(prefix)), f"{name} has RUNPATH entry {entry} outside the prefix"


def test_jq_from_a_git_archive_through_bootstrap_with_the_farms_oniguruma(farm: FarmEnv) -> None:
    prefix = farm.root / "format-jq"
    install(farm, prefix, "jq")  # smoke: --version (jq-1.6 comes from Debian's 0009 patch), a filter, a regex
    run_smoke(load_recipe(bundled_recipe_dir() / "oniguruma.toml"), prefix, farm.env)
    assert "libonig.so.5" in dynamic(prefix / "lib/libjq.so.1", "NEEDED"), "jq uses the farm's oniguruma"
    assert_self_contained(prefix, "bin/jq", "lib/libjq.so.1", "lib/libonig.so.5")
    assert not list((prefix / "lib").glob("*.la")), "the post-install step removed libtool archives"
    regex = subprocess.run(
        [prefix / "bin/jq", "-r", '[match("(?<y>\\\\d{4})-(?<m>\\\\d\\\\d)").captures[].name] | join(",")'],
        input='"released 2018-11"', capture_output=True, text=True, env=farm.env, check=True,
    )
    assert regex.stdout == "y,m\n", "named captures are oniguruma's"


def test_expat_carries_debians_security_patches(farm: FarmEnv) -> None:
    prefix = farm.root / "format-expat"
    install(farm, prefix, "expat")  # smoke: xmlwf names the error in a document read from stdin, pkg-config
    symbols = subprocess.run(
        ["nm", "-D", "--defined-only", str(prefix / "lib/libexpat.so.1")], capture_output=True, text=True, check=True
    ).stdout
    # CVE-2023-52425's fix (expat-2.5.0-CVE-2023-52425.patch in the series) adds this function to the API.
    assert " XML_SetReparseDeferralEnabled" in symbols, "the Debian series was not applied"
    assert_self_contained(prefix, "bin/xmlwf", "lib/libexpat.so.1")


def test_libyaml_gets_its_pkg_config_file_from_a_post_install_step(farm: FarmEnv) -> None:
    prefix = farm.root / "format-libyaml"
    install(farm, prefix, "libyaml")  # smoke: pkg-config, limited to the prefix, finds yaml-0.1 0.2.5
    pc = (prefix / "lib/pkgconfig/yaml-0.1.pc").read_text()
    assert f"prefix={prefix}\n" in pc and "exec_prefix=${prefix}\n" in pc, pc
    assert "@" not in pc, "every template variable was filled"
    assert_self_contained(prefix, "lib/libyaml.so")
