"""The curated recipes shipped with pkgc (recipes/): each loads, can be fetched, and says how to check it works.

These are fast checks of the data only; tools/build_curated.py builds them all and runs the smoke tests in two
prefixes, and the e2e tests build a few.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pkgc.core.recipe import Recipe, load_recipe
from pkgc.core.toolchain import TOOL_NAMES
from pkgc.recipes import bundled_recipe_dir
from pkgc.worker.prefetch import bundled_recipes

BUNDLED = sorted(bundled_recipe_dir().glob("*.toml"))
RECIPES = {path.stem: load_recipe(path) for path in BUNDLED}

# The libraries and tools issue 9 asks the curated set to cover (helper "curated"'s share; jq, oniguruma, expat,
# libyaml, ncurses, readline and sqlite3 come from the other helpers).
CURATED = {
    "bzip2", "xz", "zstd", "libffi", "pcre2", "libevent", "libuv", "m4", "sed", "tree", "pv", "bc", "lua", "figlet",
    "gperf", "grep", "diffutils", "patch", "tar", "libsodium", "libpng", "json-c", "brotli", "libogg", "lzo",
    "ed", "libtasn1", "libunistring", "libidn2", "dos2unix", "units", "cpio", "gmp", "mpfr", "less", "tmux", "htop",
    "cmatrix", "gawk", "nano", "nettle",
}  # fmt: skip
# Dependencies on recipes that other helpers of issue 9 add on their own branches; once merged, this is empty.
ADDED_ELSEWHERE: set[str] = set()


def test_the_curated_set_is_bundled() -> None:
    assert set(RECIPES) >= CURATED, sorted(CURATED - set(RECIPES))
    assert len(CURATED) >= 36


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_bundled_recipe_has_a_smoke_test(name: str) -> None:
    """A curated recipe says how to see that what it built works: a command and the output it must print."""
    recipe = RECIPES[name]
    assert recipe.smoke_command, f"{name} has no [smoke] command"
    assert recipe.smoke_expect.strip(), f"{name}'s smoke test expects nothing, so it cannot fail on output"
    first = recipe.smoke_command[0]
    assert not first.startswith("/"), f"{name}: a smoke command runs in the prefix, not at {first}"


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_bundled_source_is_reachable_through_the_debian_mirror(name: str) -> None:
    """Upstream hosts are often unreachable from a build farm; every curated source also names Debian's copy,
    whose sha256 is the one in apt's signed Sources index."""
    for version in RECIPES[name].versions:
        assert any(url.startswith("mirror://debian/pool/main/") for url in version.mirrors), (name, version.version)


def _dependency_names(recipe: Recipe) -> set[str]:
    return set(recipe.build_dependencies) | set(recipe.runtime_dependencies)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_dependencies_are_recipes(name: str) -> None:
    missing = _dependency_names(RECIPES[name]) - set(RECIPES) - ADDED_ELSEWHERE
    assert not missing, f"{name} depends on {sorted(missing)}, which no bundled recipe provides"


def test_bundled_dependencies_have_no_cycle() -> None:
    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, " -> ".join((*path, name))
        for dependency in _dependency_names(RECIPES[name]) & set(RECIPES):
            visit(dependency, (*path, name))

    for name in RECIPES:
        visit(name, ())


def test_tools_are_platform_tools() -> None:
    for recipe in RECIPES.values():
        assert set(recipe.build.tools) <= TOOL_NAMES


def test_recipes_that_generate_configure_declare_autotools() -> None:
    """A build that runs autoreconf needs the autotools named, or a hermetic build cannot find them."""
    for name, recipe in RECIPES.items():
        if any(step and step[0] in ("autoreconf", "./autogen.sh") for step in recipe.build.steps):
            assert "autotools" in recipe.build.tools, name


def test_prefetch_covers_every_bundled_recipe() -> None:
    """CI prefetches every bundled recipe's sources (python -m pkgc.worker.prefetch) and the e2e farm is seeded
    from them: the prefetcher sees the same set the farm publishes."""
    assert {recipe.name for recipe in bundled_recipes()} == set(RECIPES)
    assert [recipe.name for recipe in bundled_recipes(["bc", "tmux"])] == ["bc", "tmux"]


def test_recipe_files_are_named_after_their_package() -> None:
    assert all(RECIPES[path.stem].name == path.stem for path in BUNDLED)
    assert all(isinstance(path, Path) for path in BUNDLED)
