"""Every host that builds installs every package of the toolchain definition: a worker refuses to start otherwise
(pkgc.worker.buildroot.check_host), so CI's and the AWS workers' apt lines must name them all."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pkgc.core.toolchain import DEFAULT_TOOLCHAIN, load_toolchain

ROOT = Path(__file__).resolve().parents[2]


def _apt_install_words(text: str) -> set[str]:
    joined = text.replace("\\\n", " ")
    words: set[str] = set()
    for match in re.finditer(r"apt-get install ([^\n>]*)", joined):
        words.update(match.group(1).split())
    return words


@pytest.mark.parametrize("path", [".ci/run", "infra/workers.yaml"])
def test_the_apt_line_installs_the_whole_definition(path: str) -> None:
    words = _apt_install_words((ROOT / path).read_text())
    missing = [p for p in load_toolchain(DEFAULT_TOOLCHAIN).all_packages() if p not in words]
    essential = {"coreutils", "bash", "dash", "sed", "grep", "mawk", "findutils", "diffutils", "tar", "gzip",
                 "debianutils", "libc-bin"}  # fmt: skip
    assert [p for p in missing if p not in essential] == [], f"{path} does not install {missing}"


def test_the_definition_names_tools_and_base_libraries() -> None:
    definition = load_toolchain()
    assert definition.identity() == {"name": "debian-12", "version": definition.version}
    assert {"libc.so.6", "libstdc++.so.6", "libgcc_s.so.1"} <= definition.base_sonames
    assert "libreadline.so.8" not in definition.base_sonames
    assert definition.packages_for((), "meson")[-2:] == ("meson", "ninja-build")
    assert "cmake" in definition.packages_for((), "cmake") and "cmake" not in definition.packages_for((), "make")
    with pytest.raises(ValueError, match="no tool"):
        definition.packages_for(("rust",), "make")


def test_a_generated_recipes_root_has_every_standard_systems_tools() -> None:
    """system "auto" is detected after the root is made, so its root must hold autoreconf, cmake and meson."""
    from pkgc.core.toolchain import load_toolchain

    packages = load_toolchain().packages_for((), "auto")
    for needed in ("autoconf", "automake", "libtool", "cmake", "meson", "ninja-build"):
        assert needed in packages
