"""Build planning and build keys (pkgc.core.buildspec.plan_builds, BuildSpec)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import pytest

from pkgc.core.buildspec import BuildSpec, PackageRequest, compute_build_key, plan_builds
from pkgc.core.errors import NotFound, UsageError
from pkgc.core.platform import Platform
from pkgc.core.recipe import Recipe, load_recipe, parse_recipe

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
PLATFORM = Platform("linux", "x86_64", "glibc", "2.36")

LIBDEMO = """
name = "libdemo"
summary = "A demo library"
homepage = "https://example.org/libdemo"
license = "MIT"

[[versions]]
version = "1.2.0"
sha256 = "1111111111111111111111111111111111111111111111111111111111111111"
urls = ["https://example.org/libdemo-1.2.0.tar.gz"]

[[versions]]
version = "1.10.0"
sha256 = "2222222222222222222222222222222222222222222222222222222222222222"
urls = ["https://example.org/libdemo-1.10.0.tar.gz"]

[build]
system = "cmake"
configure_args = ["-DDEMO_TESTS=OFF"]

[variants.shared]
description = "Build a shared library"
default = true
[variants.shared.args]
true = ["-DBUILD_SHARED_LIBS=ON"]
false = ["-DBUILD_SHARED_LIBS=OFF"]
"""

DEMO = """
name = "demo"
summary = "A demo program"
homepage = "https://example.org/demo"
license = "MIT"

[[versions]]
version = "0.9"
sha256 = "3333333333333333333333333333333333333333333333333333333333333333"
urls = ["https://example.org/demo-0.9.tar.gz"]

[build]
system = "autotools"
configure_args = ["--disable-dependency-tracking"]

[variants.ui]
description = "User interface"
default = "cli"
values = ["cli", "tui"]
[variants.ui.args]
cli = ["--without-curses"]
tui = ["--with-curses"]

[dependencies]
runtime = ["libdemo"]

[smoke]
command = ["bin/demo", "--version"]
expect = "demo 0.9"
"""

# GOLDEN keys: computed once from the recipes above (and recipes/hello.toml) with default options on
# PLATFORM (BUILDER_ABI 2, toolchain debian-12 version 1). They change only if the key computation changes; if that
# is intended, bump BUILDER_ABI/KEY_SCHEMA and update these values.
GOLDEN_HELLO = "863ebb6cb0e7d52292f6a92cceb9ca8e455519861cad1e69cd9cec4db0309836"
GOLDEN_LIBDEMO = "f5c8bcf01ec670ea929405b4d22503d629df1e815d497fb8c47468828300f9cc"
GOLDEN_DEMO = "c4bc6639287fca46b97ee5a04be696397b5cfe4081805513b1ed5a0e0263175c"


def _getter(*texts: str, **overrides: str) -> Callable[[str], Recipe]:
    recipes = {r.name: r for r in (parse_recipe(t) for t in texts)}
    for name, text in overrides.items():
        recipes[name] = parse_recipe(text)

    def get(name: str) -> Recipe:
        if name not in recipes:
            raise NotFound(f"no recipe {name}")
        return recipes[name]

    return get


def _plan(
    name: str = "demo",
    options: dict[str, str | bool] | None = None,
    *,
    libdemo: str = LIBDEMO,
    demo: str = DEMO,
    platform: Platform = PLATFORM,
) -> tuple[list[BuildSpec], list[str]]:
    return plan_builds([PackageRequest(name, None, options)], _getter(libdemo, demo), platform)


def _key(name: str = "demo", options: dict[str, str | bool] | None = None, **kwargs: str) -> str:
    _, requested = _plan(name, options, **kwargs)  # type: ignore[arg-type]
    assert len(requested) == 1
    return requested[0]


def _by_name(specs: list[BuildSpec]) -> dict[str, BuildSpec]:
    return {spec.name: spec for spec in specs}


# --- golden values --------------------------------------------------------------------------------


def test_golden_key_of_hello() -> None:
    hello = load_recipe(RECIPES / "hello.toml")
    specs, requested = plan_builds([PackageRequest("hello")], lambda name: hello, PLATFORM)
    assert [s.name for s in specs] == ["hello"]
    assert requested == [GOLDEN_HELLO]
    assert specs[0].key == GOLDEN_HELLO


def test_golden_keys_of_demo_and_libdemo() -> None:
    specs, requested = _plan()
    assert [(s.name, s.key) for s in specs] == [("libdemo", GOLDEN_LIBDEMO), ("demo", GOLDEN_DEMO)]
    assert requested == [GOLDEN_DEMO]


# --- what goes into a key -------------------------------------------------------------------------


def test_key_is_a_sha256_hex_digest() -> None:
    key = _key()
    assert len(key) == 64
    assert int(key, 16) >= 0


def test_same_options_in_different_order_give_same_key() -> None:
    forward: dict[str, str | bool] = {"opt": "O3", "cpu": "x86-64-v3", "debug": True, "ui": "tui"}
    backward = dict(reversed(list(forward.items())))
    assert _key(options=forward) == _key(options=backward)


def test_default_options_spelled_out_give_same_key() -> None:
    explicit: dict[str, str | bool] = {"opt": "O2", "cpu": "x86-64", "debug": "no", "lto": False, "ui": "cli"}
    assert _key(options=explicit) == _key(options=None) == _key(options={})


def test_different_opt_level_gives_different_key() -> None:
    assert _key(options={"opt": "O3"}) != _key(options={"opt": "O2"})


def test_different_global_options_each_change_the_key() -> None:
    keys = {
        _key(options={}),
        _key(options={"opt": "Os"}),
        _key(options={"cpu": "x86-64-v2"}),
        _key(options={"debug": True}),
        _key(options={"lto": True}),
    }
    assert len(keys) == 5


def test_different_variant_gives_different_key() -> None:
    assert _key(options={"ui": "tui"}) != _key(options={"ui": "cli"})
    assert _key("libdemo", {"shared": False}) != _key("libdemo", {"shared": True})


def test_toolchain_identity_is_in_the_key_and_the_spec() -> None:
    from dataclasses import replace

    from pkgc.core.toolchain import load_toolchain

    definition = load_toolchain()
    specs, requested = plan_builds([PackageRequest("demo")], _getter(LIBDEMO, DEMO), PLATFORM, definition)
    assert requested == [_key()], "the build platform's toolchain is the default one"
    assert all(spec.toolchain == {"name": "debian-12", "version": definition.version} for spec in specs)
    newer = replace(definition, version=definition.version + 1)
    _, other = plan_builds([PackageRequest("demo")], _getter(LIBDEMO, DEMO), PLATFORM, newer)
    assert other != requested, "a new version of the toolchain definition gives new keys"


def test_a_payload_with_a_malformed_toolchain_is_refused() -> None:
    demo = _by_name(_plan()[0])["demo"]
    for bad in ({"name": "../x", "version": 1}, {"name": "debian-12", "version": "1"}, {"name": "debian-12"}):
        with pytest.raises(ValueError, match="toolchain"):
            BuildSpec.from_json({**demo.to_json(), "toolchain": bad})


def test_platform_changes_the_key() -> None:
    other = Platform("linux", "x86_64", "glibc", "2.31")
    assert _key() != _key(platform=other)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('summary = "A demo program"', 'summary = "Another summary"'),
        ('homepage = "https://example.org/demo"', 'homepage = "https://example.com/elsewhere"'),
        ('license = "MIT"', 'license = "GPL-3.0-or-later"'),
        ("https://example.org/demo-0.9.tar.gz", "https://mirror.example.net/demo-0.9.tar.gz"),
        (
            'urls = ["https://example.org/demo-0.9.tar.gz"]',
            'urls = ["https://example.org/demo-0.9.tar.gz"]\nmirrors = ["mirror://debian/demo.tar.gz"]',
        ),
        ('expect = "demo 0.9"', 'expect = "demo version 0.9"'),
    ],
)
def test_metadata_changes_keep_the_key(old: str, new: str) -> None:
    assert old in DEMO
    assert _key(demo=DEMO.replace(old, new)) == _key()


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("3333333333333333333333333333333333333333333333333333333333333333", "4" * 64),
        ('configure_args = ["--disable-dependency-tracking"]', 'configure_args = ["--enable-silent-rules"]'),
        ('configure_args = ["--disable-dependency-tracking"]', 'configure_args = []\nmake_args = ["V=1"]'),
        ('system = "autotools"', 'system = "make"'),
        ('tui = ["--with-curses"]', 'tui = ["--with-ncurses"]'),
        ('default = "cli"', 'default = "tui"'),
        ('[dependencies]\nruntime = ["libdemo"]', '[dependencies]\nbuild = ["libdemo"]'),
    ],
)
def test_build_relevant_changes_change_the_key(old: str, new: str) -> None:
    assert old in DEMO
    assert _key(demo=DEMO.replace(old, new)) != _key()


def test_dependency_key_change_propagates() -> None:
    base = _by_name(_plan()[0])
    changed_lib = LIBDEMO.replace('configure_args = ["-DDEMO_TESTS=OFF"]', 'configure_args = ["-DDEMO_TESTS=ON"]')
    changed = _by_name(_plan(libdemo=changed_lib)[0])
    assert changed["libdemo"].key != base["libdemo"].key
    assert changed["demo"].key != base["demo"].key
    assert dict(changed["demo"].dependencies) == {"libdemo": changed["libdemo"].key}


def test_dependency_metadata_change_does_not_propagate() -> None:
    base = _plan()[1]
    changed_lib = LIBDEMO.replace('summary = "A demo library"', 'summary = "Renamed"')
    assert _plan(libdemo=changed_lib)[1] == base


def test_dependencies_come_first() -> None:
    specs, requested = _plan()
    assert [s.name for s in specs] == ["libdemo", "demo"]
    assert requested == [specs[1].key]
    assert specs[1].dependencies == (("libdemo", specs[0].key),)
    assert specs[1].runtime_dependencies == ("libdemo",)


def test_dependency_uses_newest_version() -> None:
    lib = _by_name(_plan()[0])["libdemo"]
    assert lib.version == "1.10.0"
    assert lib.source.sha256 == "2" * 64


def test_dependent_passes_global_options_to_its_dependency() -> None:
    specs, _ = _plan(options={"opt": "O3", "cpu": "x86-64-v3", "debug": "yes", "ui": "tui"})
    by_name = _by_name(specs)
    assert by_name["demo"].options.globals_only() == {
        "opt": "O3",
        "cpu": "x86-64-v3",
        "debug": "true",
        "lto": "false",
    }
    lib_options = by_name["libdemo"].options.as_dict()
    assert lib_options == {"opt": "O3", "cpu": "x86-64-v3", "debug": "true", "lto": "false", "shared": "true"}
    # The dependency is the one built with those options, not the default one.
    assert by_name["libdemo"].key == _key("libdemo", {"opt": "O3", "cpu": "x86-64-v3", "debug": True})
    assert by_name["libdemo"].key != _key("libdemo")


def test_variant_args_follow_options() -> None:
    by_name = _by_name(_plan(options={"ui": "tui"})[0])
    assert by_name["demo"].variant_args == ("--with-curses",)
    assert by_name["libdemo"].variant_args == ("-DBUILD_SHARED_LIBS=ON",)


def test_shared_dependency_is_planned_once() -> None:
    specs, requested = plan_builds(
        [PackageRequest("demo"), PackageRequest("libdemo"), PackageRequest("demo")],
        _getter(LIBDEMO, DEMO),
        PLATFORM,
    )
    assert [s.name for s in specs] == ["libdemo", "demo"]
    assert requested == [specs[1].key, specs[0].key, specs[1].key]


def test_requested_version() -> None:
    specs, requested = plan_builds([PackageRequest("libdemo", "1.2.0")], _getter(LIBDEMO), PLATFORM)
    assert specs[0].version == "1.2.0"
    assert requested[0] != _key("libdemo")
    with pytest.raises(NotFound):
        plan_builds([PackageRequest("libdemo", "3.0")], _getter(LIBDEMO), PLATFORM)


def test_unknown_option_for_request_is_refused() -> None:
    with pytest.raises(UsageError, match="shared"):
        _plan(options={"shared": False})


def test_dependency_cycle_is_refused() -> None:
    cyclic_lib = LIBDEMO + '\n[dependencies]\nruntime = ["demo"]\n'
    with pytest.raises(UsageError, match="cycle"):
        _plan(libdemo=cyclic_lib)


def test_compute_build_key_sorts_dependencies() -> None:
    specs, _ = _plan()
    demo = specs[1]
    arguments = {
        "recipe_content": demo.recipe_content,
        "version": demo.version,
        "source_sha256": demo.source.sha256,
        "options": demo.options,
        "platform": demo.platform,
        "toolchain": demo.toolchain,
    }
    assert compute_build_key(**arguments, dependency_keys={"a": "1", "b": "2"}) == compute_build_key(
        **arguments, dependency_keys={"b": "2", "a": "1"}
    )
    assert compute_build_key(**arguments, dependency_keys=dict(demo.dependencies)) == demo.key


# --- BuildSpec JSON -------------------------------------------------------------------------------


def test_to_json_from_json_round_trip() -> None:
    for spec in _plan(options={"opt": "O3", "ui": "tui"})[0]:
        data = spec.to_json()
        again = BuildSpec.from_json(data)
        assert again == spec
        assert again.to_json() == data
        assert again.label == spec.label


def test_json_round_trip_through_text() -> None:
    import json

    for spec in _plan()[0]:
        assert BuildSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec


def _tamper(data: dict, path: tuple, value: object) -> dict:  # type: ignore[type-arg]
    tampered = copy.deepcopy(data)
    target = tampered
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return tampered


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("version",), "0.8"),
        (("source", "sha256"), "5" * 64),
        (("options", "opt"), "O3"),
        (("platform", "libc"), "musl"),
        (("platform", "libc_version"), "2.31"),
        (("recipe_content", "build", "configure_args"), ["--enable-evil"]),
        (("dependencies",), [["libdemo", "0" * 64]]),
        (("toolchain", "version"), 99),
        (("toolchain", "name"), "debian-13"),
        (("key",), "0" * 64),
    ],
)
def test_from_json_with_tampered_key_field_raises(path: tuple, value: object) -> None:  # type: ignore[type-arg]
    demo = _by_name(_plan()[0])["demo"]
    with pytest.raises(UsageError, match="does not match its key"):
        BuildSpec.from_json(_tamper(demo.to_json(), path, value))


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("build", "configure_args"), ["--enable-evil"]),
        (("build", "system"), "make"),
        (("variant_args",), ["--with-evil"]),
        (("name",), "libdemo"),
    ],
    ids=["build.configure_args", "build.system", "variant_args", "name"],
)
def test_from_json_with_tampered_build_inputs_raises(path: tuple, value: object) -> None:  # type: ignore[type-arg]
    # Guards: the worker builds from spec.build, spec.variant_args and spec.name, which are copies of what
    # recipe_content (covered by the key) says. from_json re-derives them from recipe_content and refuses a
    # payload whose copies differ, so a job cannot build something other than what its key names.
    demo = _by_name(_plan()[0])["demo"]
    with pytest.raises(UsageError, match="does not match its key"):
        BuildSpec.from_json(_tamper(demo.to_json(), path, value))
