"""Option precedence: recipe defaults < [options] < [packages.NAME.options] < --opt, for NAME and for its dependencies.

The client decides what a request carries (pkgc.client.options) and the farm fills in the defaults and passes
global options on to dependencies (pkgc.core.buildspec.plan_builds); these tests go through both, as a request does.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from pkgc.client.options import OptionLevels, requested_options
from pkgc.client.settings import Settings
from pkgc.core.buildspec import BuildSpec, PackageRequest, plan_builds
from pkgc.core.platform import Platform
from pkgc.core.recipe import Recipe, parse_recipe

PLATFORM = Platform("linux", "x86_64", "glibc", "2.36")


def recipe(name: str, dependencies: str = "") -> str:
    return f"""
name = "{name}"
summary = "{name} for the precedence tests"
[[versions]]
version = "1.0"
sha256 = "{"1" * 64}"
urls = ["https://example.org/{name}-1.0.tar.gz"]
[build]
system = "make"
[variants.colour]
description = "a variant with a recipe default"
default = "red"
values = ["red", "green", "blue", "white"]
{dependencies}
"""


RECIPES = {
    "app": parse_recipe(recipe("app", '[dependencies]\nbuild = ["tool"]\nruntime = ["lib"]'), source="app.toml"),
    "lib": parse_recipe(recipe("lib"), source="lib.toml"),
    "tool": parse_recipe(recipe("tool"), source="tool.toml"),
}

# Each level sets `opt` (a global option) and `colour` (a variant of app) to a value of its own.
LEVELS = {
    "default": {"opt": "O2", "colour": "red"},  # what the recipe and the global option schema say
    "configured": {"opt": "O3"},  # [options]: global options only
    "per_package": {"opt": "O1", "colour": "blue"},  # [packages.app.options]
    "command_line": {"opt": "Os", "colour": "white"},  # --opt
}
ORDER = list(LEVELS)


def plan(levels: set[str]) -> dict[str, BuildSpec]:
    """Install `app` with the given levels set; the specs planned for app and its dependencies, by name."""
    settings = Settings(
        prefix=Path("/nonexistent"),
        options={"opt": LEVELS["configured"]["opt"]} if "configured" in levels else {},
        package_options={"app": dict(LEVELS["per_package"])} if "per_package" in levels else {},
    )
    command_line = dict(LEVELS["command_line"]) if "command_line" in levels else {}
    option_levels = OptionLevels.of(settings, command_line)
    assert option_levels.for_package("app") == requested_options(settings, "app", command_line)
    request = PackageRequest(
        "app", None, option_levels.for_package("app"), dependency_options=option_levels.for_dependencies()
    )

    def get_recipe(name: str) -> Recipe:
        return RECIPES[name]

    specs, _ = plan_builds([request], get_recipe, PLATFORM)
    return {spec.name: spec for spec in specs}


@pytest.mark.parametrize(
    ("lower", "higher"), [pair for pair in itertools.combinations(ORDER, 2)], ids=lambda level: str(level)
)
def test_the_higher_level_wins_for_the_package(lower: str, higher: str) -> None:
    specs = plan({lower, higher} - {"default"})
    assert specs["app"].options.get("opt") == LEVELS[higher]["opt"]
    expected_colour = LEVELS[higher].get("colour", LEVELS["default"]["colour"])  # [options] sets no variant
    assert specs["app"].options.get("colour") == expected_colour


@pytest.mark.parametrize(
    "levels",
    [set(chosen) for size in range(4) for chosen in itertools.combinations(ORDER[1:], size)],
    ids=lambda levels: "+".join(sorted(levels)) or "defaults",
)
def test_dependencies_get_the_request_levels_but_not_the_package_level(levels: set[str]) -> None:
    """[options] and --opt apply to the whole request; [packages.app.options] to app alone."""
    specs = plan(levels)
    if "command_line" in levels:
        expected = LEVELS["command_line"]["opt"]
    elif "configured" in levels:
        expected = LEVELS["configured"]["opt"]
    else:
        expected = LEVELS["default"]["opt"]
    for dependency in ("lib", "tool"):
        assert specs[dependency].options.get("opt") == expected, dependency
        assert specs[dependency].options.get("colour") == "red", "a variant of app is not passed on"


def test_every_level_at_once() -> None:
    specs = plan({"configured", "per_package", "command_line"})
    assert specs["app"].options.get("opt") == "Os" and specs["app"].options.get("colour") == "white"
    assert specs["lib"].options.get("opt") == "Os"


def test_a_request_without_dependency_options_passes_the_package_globals_on() -> None:
    """What older clients send: the dependencies inherit the package's own global options, as before."""
    specs, _ = plan_builds([PackageRequest("app", None, {"opt": "O1"})], RECIPES.__getitem__, PLATFORM)
    assert {spec.name: spec.options.get("opt") for spec in specs} == {"tool": "O1", "lib": "O1", "app": "O1"}
