"""The recipe format's issue-9 keys (pkgc.core.recipe): bootstrap, post_install, patch files and series,
{dep.NAME.prefix}, list placeholders, smoke tests; how they travel in a BuildSpec and enter its key."""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path

import pytest

from pkgc.core.buildspec import BuildSpec, PackageRequest, plan_builds
from pkgc.core.errors import UsageError
from pkgc.core.platform import Platform
from pkgc.core.recipe import (
    PATCH_TEXTS_KEY,
    Recipe,
    RecipeError,
    SmokeTest,
    bundle_recipe_text,
    load_recipe,
    parse_recipe,
)

SHA = "a" * 64
PLATFORM = Platform("linux", "x86_64", "glibc", "2.36")
PATCH = "--- a/hello.c\n+++ b/hello.c\n@@ -1 +1 @@\n-old\n+new\n"
PATCH_SHA = hashlib.sha256(PATCH.encode()).hexdigest()

BASE = f"""
name = "demo"
summary = "A demo"

[[versions]]
version = "1.0"
sha256 = "{SHA}"
urls = ["https://example.org/demo-1.0.tar.gz"]
"""


def recipe(build: str = 'system = "autotools"', extra: str = "", version_extra: str = "") -> str:
    return BASE + version_extra + "\n[build]\n" + build + "\n" + extra


def error(text: str, **kwargs: object) -> str:
    with pytest.raises(UsageError) as caught:
        parse_recipe(text, source="demo.toml", **kwargs)  # type: ignore[arg-type]
    return str(caught.value)


def plan(parsed: Recipe, others: dict[str, Recipe] | None = None) -> BuildSpec:
    table = {parsed.name: parsed, **(others or {})}
    specs, requested = plan_builds([PackageRequest(parsed.name)], table.__getitem__, PLATFORM)
    return next(s for s in specs if s.key == requested[0])


# -- bootstrap and post_install -------------------------------------------------------------------------------


def test_bootstrap_and_post_install_parse_and_enter_the_key_only_when_set() -> None:
    plain = parse_recipe(recipe())
    assert "bootstrap" not in plain.build.as_dict() and "post_install" not in plain.build.as_dict()
    boot = parse_recipe(
        recipe('system = "autotools"\ntools = ["autotools"]\nbootstrap = [["autoreconf", "-fi"]]\n'
               'post_install = [["install", "-D", "x.pc", "{destdir}{prefix}/lib/pkgconfig/x.pc"]]')
    )
    assert boot.build.bootstrap == (("autoreconf", "-fi"),)
    assert boot.build.post_install == (("install", "-D", "x.pc", "{destdir}{prefix}/lib/pkgconfig/x.pc"),)
    assert boot.build.as_dict()["bootstrap"] == [["autoreconf", "-fi"]]
    assert plan(boot).key != plan(parse_recipe(recipe('system = "autotools"\ntools = ["autotools"]'))).key


@pytest.mark.parametrize(
    ("build", "needle"),
    [
        ('system = "autotools"\nbootstrap = "autoreconf -fi"', "[build].bootstrap must be a list of argument lists"),
        ('system = "autotools"\nbootstrap = [[]]', "[build].bootstrap: an argument list must not be empty"),
        ('system = "autotools"\npost_install = [["x", 1]]', "[build].post_install[0] must be a list of strings"),
        ('system = "autotools"\npost_install = [["x", "{bogus}"]]', "unknown placeholder {bogus}"),
        ('system = "autotools"\npre_build = [["x"]]', "[build]: unknown key 'pre_build'"),
    ],
)
def test_malformed_build_steps_get_one_error_naming_file_key_and_what_is_allowed(build: str, needle: str) -> None:
    message = error(recipe(build))
    assert message.startswith("demo.toml: ") and needle in message
    assert "\n" not in message


def test_unknown_key_error_lists_the_new_keys_as_allowed() -> None:
    message = error(recipe('system = "autotools"\npostinstall = [["x"]]'))
    assert "allowed:" in message and "bootstrap" in message and "post_install" in message


# -- placeholders ---------------------------------------------------------------------------------------------


def test_dependency_prefix_must_name_a_dependency() -> None:
    build = 'system = "autotools"\nconfigure_args = ["--with-oniguruma={dep.oniguruma.prefix}"]'
    message = error(recipe(build))
    assert "{dep.oniguruma.prefix} names 'oniguruma', which is not a dependency" in message
    assert message.startswith("demo.toml: [build].configure_args")
    parsed = parse_recipe(recipe(build, '[dependencies]\nruntime = ["oniguruma"]\n'))
    assert parsed.build.configure_args == ("--with-oniguruma={dep.oniguruma.prefix}",)


def test_list_placeholders_are_whole_arguments_in_argument_lists_only() -> None:
    ok = parse_recipe(recipe('system = "steps"\nsteps = [["{cc}", "{*cflags}", "{*glob:src/*.c}", "-o", "x"]]'))
    assert ok.build.steps[0][1:3] == ("{*cflags}", "{*glob:src/*.c}")
    assert "unknown placeholder {*cflags}" in error(recipe('system = "steps"\nsteps = [["x{*cflags}"]]'))
    env_error = error(recipe('system = "autotools"\nenv = { CFLAGS = "{*cflags}" }'))
    assert "[build].env.CFLAGS: {*cflags} stands for several arguments" in env_error
    assert "unknown list placeholder {*prefix}" in error(recipe('system = "steps"\nsteps = [["{*prefix}"]]'))


@pytest.mark.parametrize("pattern", ["/etc/*", "../*.c", "src/../../x", ""])
def test_glob_patterns_must_stay_inside_the_source(pattern: str) -> None:
    message = error(recipe(f'system = "steps"\nsteps = [["cc", "{{*glob:{pattern}}}"]]'))
    assert "a glob stays inside the source" in message


# -- smoke tests ----------------------------------------------------------------------------------------------


def test_smoke_shorthand_and_tests_both_fill_smoke_tests() -> None:
    text = recipe(
        extra='[smoke]\ncommand = ["demo", "--version"]\nexpect = "1.0"\n\n'
        '[[smoke.tests]]\ncommand = ["demo", "-c", "{{x}}"]\nstdin = "1 + 1\\n"\nexpect = "2"\nenv = { LC_ALL = "C" }\n'
    )
    parsed = parse_recipe(text)
    assert parsed.smoke_tests == (
        SmokeTest(("demo", "--version"), "1.0"),
        SmokeTest(("demo", "-c", "{{x}}"), "2", "1 + 1\n", (("LC_ALL", "C"),)),
    )
    assert parsed.smoke_command == ("demo", "--version") and parsed.smoke_expect == "1.0"
    only_tests = parse_recipe(recipe(extra='[[smoke.tests]]\ncommand = ["a"]\nexpect = "b"\n'))
    assert only_tests.smoke_command == ("a",) and only_tests.smoke_expect == "b"


@pytest.mark.parametrize(
    ("smoke", "needle"),
    [
        ('[[smoke.tests]]\ncommand = []\n', "[[smoke.tests]] #1: command must be a non-empty list"),
        ('[[smoke.tests]]\ncommand = ["a"]\nstdin = 3\n', "'stdin' must be a string"),
        ('[[smoke.tests]]\ncommand = ["a"]\nenv = { PATH = "/x" }\n', "'PATH' cannot be set"),
        ('[[smoke.tests]]\ncommand = ["a"]\nenv = { PKG_CONFIG_LIBDIR = "/usr/lib" }\n', "cannot be set"),
        ('[[smoke.tests]]\ncommand = ["a"]\ntimeout = 3\n', "unknown key 'timeout'"),
        ('[smoke]\nexpect = "x"\n', "'expect' needs a 'command'"),
        ('[[smoke.tests]]\ncommand = ["a"]\nstatus = 300\n', "status must be an exit status, 0 to 255"),
    ],
)
def test_malformed_smoke_tests_are_refused(smoke: str, needle: str) -> None:
    message = error(recipe(extra=smoke))
    assert message.startswith("demo.toml: ") and needle in message


def test_smoke_tests_travel_in_the_spec_but_stay_out_of_the_key() -> None:
    one = parse_recipe(recipe(extra='[[smoke.tests]]\ncommand = ["a"]\nstdin = "x"\nenv = { A = "1" }\n'))
    two = parse_recipe(recipe(extra='[[smoke.tests]]\ncommand = ["b"]\n'))
    spec = plan(one)
    assert spec.key == plan(two).key
    again = BuildSpec.from_json(json.loads(json.dumps(spec.to_json())))
    assert again.smoke_tests == one.smoke_tests
    assert "smoke_tests" not in plan(parse_recipe(recipe())).to_json()


def test_the_artifact_manifest_carries_every_smoke_test() -> None:
    from pkgc.worker.loop import smoke_manifest

    parsed = parse_recipe(recipe(
        extra='[smoke]\ncommand = ["a"]\nexpect = "b"\n[[smoke.tests]]\ncommand = ["c"]\nstdin = "d"\nstatus = 2\n'
    ))
    smoke = smoke_manifest(plan(parsed))
    assert smoke["command"] == ["a"] and smoke["expect"] == "b", "the first test, as manifests always had it"
    assert [SmokeTest.from_dict(t) for t in smoke["tests"]] == list(parsed.smoke_tests)
    assert smoke_manifest(plan(parse_recipe(recipe()))) == {"command": [], "expect": ""}


# -- patches --------------------------------------------------------------------------------------------------


def patched(strip: int = 1, sha: str = PATCH_SHA, name: str = "fix.patch") -> str:
    return recipe(version_extra=f'patches = [{{ file = "{name}", sha256 = "{sha}", strip = {strip} }}]\n')


def test_patch_files_are_read_beside_the_recipe_and_checked_by_digest(tmp_path: Path) -> None:
    (tmp_path / "demo.toml").write_text(patched())
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "fix.patch").write_text(PATCH)
    parsed = load_recipe(tmp_path / "demo.toml")
    (patch,) = parsed.versions[0].patches
    assert (patch.name, patch.sha256, patch.strip, patch.text) == ("fix.patch", PATCH_SHA, 1, PATCH)
    (tmp_path / "demo" / "fix.patch").write_text(PATCH + "+more\n")
    with pytest.raises(RecipeError, match=r"demo.toml: \[\[versions\]\] #1.patches\[0\]: patch file fix.patch has sha256"):
        load_recipe(tmp_path / "demo.toml")
    (tmp_path / "demo" / "fix.patch").unlink()
    with pytest.raises(RecipeError, match=r"patch file fix.patch not found.*demo/fix.patch"):
        load_recipe(tmp_path / "demo.toml")


def test_the_bundle_is_a_self_contained_recipe_text(tmp_path: Path) -> None:
    """What the catalog stores: the recipe's TOML plus its patch texts, parseable with no directory beside it."""
    odd = PATCH + '+"quoted" \\ back\tslash \x7f and ünïcode\r\n'
    sha = hashlib.sha256(odd.encode()).hexdigest()
    (tmp_path / "demo.toml").write_text(patched(sha=sha))
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "fix.patch").write_bytes(odd.encode())
    bundle = bundle_recipe_text(tmp_path / "demo.toml")
    assert tomllib.loads(bundle)[PATCH_TEXTS_KEY] == {"fix.patch": odd}
    parsed = parse_recipe(bundle, source="demo.toml")
    assert parsed.versions[0].patches[0].text == odd
    # Bundling a bundle changes nothing; a recipe without patch files is sent as it is.
    (tmp_path / "demo.toml").write_text(bundle)
    assert bundle_recipe_text(tmp_path / "demo.toml") == bundle
    (tmp_path / "plain.toml").write_text(recipe())
    assert bundle_recipe_text(tmp_path / "plain.toml") == recipe()


@pytest.mark.parametrize("name", ["../x.patch", "sub/x.patch", ".hidden", "a b.patch"])
def test_patch_file_names_are_plain_file_names(name: str) -> None:
    assert "is not a plain file name" in error(patched(name=name))


def test_patch_strip_and_series_are_checked() -> None:
    assert "strip must be 0 to 5" in error(patched(strip=9), files={"fix.patch": PATCH})
    bad_kind = recipe(version_extra=f'series = {{ kind = "rpm", sha256 = "{SHA}", urls = ["https://x/y"] }}\n')
    assert "unknown kind 'rpm'" in error(bad_kind)
    no_url = recipe(version_extra=f'series = {{ sha256 = "{SHA}" }}\n')
    assert "series: give at least one URL or mirror" in error(no_url)
    bad_sha = recipe(version_extra='series = { sha256 = "abc", mirrors = ["mirror://debian/x"] }\n')
    assert "series: sha256 must be 64 lower-case hex digits" in error(bad_sha)


def test_patches_and_series_travel_in_the_spec_and_enter_the_key() -> None:
    unpatched = plan(parse_recipe(recipe()))
    with_patch = plan(parse_recipe(patched(), files={"fix.patch": PATCH}))
    assert "patches" not in unpatched.recipe_content
    assert with_patch.key != unpatched.key
    assert with_patch.recipe_content["patches"] == [{"name": "fix.patch", "sha256": PATCH_SHA, "strip": 1}]
    strip0 = plan(parse_recipe(patched(strip=0), files={"fix.patch": PATCH}))
    assert strip0.key != with_patch.key
    series_text = recipe(version_extra=f'series = {{ sha256 = "{"b" * 64}", mirrors = ["mirror://debian/p/x.debian.tar.xz"] }}\n')
    with_series = plan(parse_recipe(series_text))
    assert with_series.key not in (unpatched.key, with_patch.key)
    for spec in (with_patch, with_series):
        again = BuildSpec.from_json(json.loads(json.dumps(spec.to_json())))
        assert again.source == spec.source and again.key == spec.key


def test_a_payload_whose_patch_text_differs_from_its_digest_is_refused() -> None:
    payload = plan(parse_recipe(patched(), files={"fix.patch": PATCH})).to_json()
    payload["source"]["patches"][0]["text"] = PATCH.replace("new", "evil")
    with pytest.raises(UsageError, match="does not match its key"):
        BuildSpec.from_json(payload)


def test_keys_of_recipes_without_new_features_are_unchanged() -> None:
    """The new fields enter the key document only when set: the same plain recipe, the same content as before."""
    content = parse_recipe(recipe()).build_relevant(parse_recipe(recipe()).versions[0])
    assert set(content) == {"name", "build", "variants", "build_dependencies", "runtime_dependencies"}
    assert set(content["build"]) == {
        "system", "configure_args", "make_args", "install_args", "steps", "subdir", "env"
    }
