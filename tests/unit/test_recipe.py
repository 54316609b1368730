"""Recipe parsing and validation (pkgc.core.recipe)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pkgc.core.errors import NotFound, UsageError
from pkgc.core.recipe import RecipeError, TemplateError, fill_template, load_recipe, parse_recipe, template_placeholders

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
RECIPE_FILES = sorted(RECIPES.glob("*.toml"))

SHA = "a" * 64

MINIMAL = f"""
name = "demo"
summary = "A demo"

[[versions]]
version = "1.0"
sha256 = "{SHA}"
urls = ["https://example.org/demo-1.0.tar.gz"]

[build]
system = "autotools"
"""


def test_real_recipes_exist() -> None:
    names = {path.stem for path in RECIPE_FILES}
    assert {"hello", "pigz", "zlib"} <= names


@pytest.mark.parametrize("path", RECIPE_FILES, ids=lambda p: p.stem)
def test_real_recipes_parse(path: Path) -> None:
    recipe = load_recipe(path)
    assert recipe.name == path.stem
    assert recipe.versions
    for version in recipe.versions:
        assert len(version.sha256) == 64
        assert version.all_urls


def test_hello_recipe() -> None:
    hello = load_recipe(RECIPES / "hello.toml")
    assert set(hello.variants) == {"nls"}
    nls = hello.variants["nls"]
    assert nls.is_bool
    assert nls.default is True
    assert dict(nls.args) == {"true": ("--enable-nls",), "false": ("--disable-nls",)}
    assert hello.build.system == "autotools"
    assert hello.newest_version().version == "2.10"
    assert hello.dependencies == ()
    assert hello.smoke_command == ("bin/hello",)
    assert hello.smoke_expect == "Hello, world!"


def test_pigz_depends_on_zlib() -> None:
    pigz = load_recipe(RECIPES / "pigz.toml")
    assert "zlib" in pigz.dependencies
    assert pigz.runtime_dependencies == ("zlib",)
    assert pigz.build.system == "steps"
    assert pigz.build.steps[0][0] == "make"


def test_minimal_recipe_and_defaults() -> None:
    recipe = parse_recipe(MINIMAL)
    assert recipe.name == "demo"
    assert recipe.summary == "A demo"
    assert recipe.homepage == ""
    assert recipe.variants == {}
    assert recipe.build.configure_args == ()
    assert recipe.versions[0].strip_components == 1
    assert recipe.versions[0].mirrors == ()


def test_version_lookup() -> None:
    text = MINIMAL.replace(
        "[build]",
        f'[[versions]]\nversion = "1.10"\nsha256 = "{"b" * 64}"\nurls = ["https://example.org/x"]\n\n[build]',
    )
    recipe = parse_recipe(text)
    assert recipe.newest_version().version == "1.10"
    assert recipe.version(None).version == "1.10"
    assert recipe.version("1.0").sha256 == SHA
    with pytest.raises(NotFound) as info:
        recipe.version("2.0")
    assert "1.0, 1.10" in (info.value.hint or "")


def test_dependencies_are_deduplicated_in_order() -> None:
    text = MINIMAL + '\n[dependencies]\nbuild = ["b", "a"]\nruntime = ["a", "c"]\n'
    assert parse_recipe(text).dependencies == ("b", "a", "c")


def _replace(old: str, new: str) -> str:
    assert old in MINIMAL
    return MINIMAL.replace(old, new)


ERROR_CASES = {
    "unknown top-level key": ('colour = "red"\n' + MINIMAL, ["recipe: unknown key 'colour'"]),
    "missing build": (MINIMAL.replace('[build]\nsystem = "autotools"\n', ""), ["[build]", "missing"]),
    "unknown build system": (
        _replace('system = "autotools"', 'system = "scons"'),
        ["unknown system", "scons"],
    ),
    "bad sha256 (upper case)": (_replace(SHA, "A" * 64), ["sha256"]),
    "bad sha256 (short)": (_replace(SHA, "a" * 63), ["sha256"]),
    "ftp url": (_replace("https://example.org", "ftp://example.org"), ["ftp://example.org", "http"]),
    "file url": (
        _replace("https://example.org/demo-1.0.tar.gz", "file:///etc/passwd"),
        ["file:///etc/passwd"],
    ),
    "no url": (_replace('urls = ["https://example.org/demo-1.0.tar.gz"]', "urls = []"), ["URL"]),
    "unknown placeholder": (
        MINIMAL + 'configure_args = ["--with-home={home}"]\n',
        ["{home}", "configure_args"],
    ),
    "unknown placeholder in steps": (
        _replace('system = "autotools"', 'system = "steps"\nsteps = [["make", "{user}"]]'),
        ["{user}"],
    ),
    "steps without steps": (_replace('system = "autotools"', 'system = "steps"'), ["step"]),
    "empty step": (_replace('system = "autotools"', 'system = "steps"\nsteps = [[]]'), ["empty"]),
    "unknown build key": (MINIMAL + 'prefix = "/usr"\n', ["unknown key 'prefix'"]),
    "variant named opt": (MINIMAL + "\n[variants.opt]\ndefault = true\n", ["'opt'", "global option"]),
    "variant named cpu": (
        MINIMAL + '\n[variants.cpu]\ndefault = "a"\nvalues = ["a"]\n',
        ["'cpu'", "global option"],
    ),
    "choice default not in values": (
        MINIMAL + '\n[variants.libs]\ndefault = "dynamic"\nvalues = ["shared", "static"]\n',
        ["'dynamic'", "libs"],
    ),
    "args for unknown value (choice)": (
        MINIMAL + '\n[variants.libs]\ndefault = "shared"\nvalues = ["shared"]\n[variants.libs.args]\nboth = []\n',
        ["'both'", "libs"],
    ),
    "args for unknown value (bool)": (
        MINIMAL + '\n[variants.nls]\ndefault = true\n[variants.nls.args]\nyes = ["--enable-nls"]\n',
        ["'yes'", "nls"],
    ),
    "bool variant with values": (
        MINIMAL + '\n[variants.nls]\ndefault = true\nvalues = ["x"]\n',
        ["values"],
    ),
    "variant without default": (MINIMAL + '\n[variants.nls]\ndescription = "x"\n', ["default"]),
    "duplicate version": (
        MINIMAL.replace(
            "[build]",
            f'[[versions]]\nversion = "1.0"\nsha256 = "{"b" * 64}"\nurls = ["https://example.org/x"]\n\n[build]',
        ),
        ["twice"],
    ),
    "duplicate version spelled differently": (
        MINIMAL.replace(
            "[build]",
            f'[[versions]]\nversion = "1-0"\nsha256 = "{"b" * 64}"\nurls = ["https://example.org/x"]\n\n[build]',
        ),
        ["twice"],
    ),
    "self dependency": (MINIMAL + '\n[dependencies]\nruntime = ["demo"]\n', ["demo depends on itself"]),
    "self build dependency": (MINIMAL + '\n[dependencies]\nbuild = ["demo"]\n', ["itself"]),
    "subdir escapes": (MINIMAL + 'subdir = "../x"\n', ["subdir"]),
    "subdir escapes deeper": (MINIMAL + 'subdir = "src/../../x"\n', ["subdir"]),
    "subdir absolute": (MINIMAL + 'subdir = "/etc"\n', ["subdir"]),
    "strip_components too large": (
        _replace(
            'urls = ["https://example.org/demo-1.0.tar.gz"]',
            'urls = ["https://e.org/x"]\nstrip_components = 4',
        ),
        ["strip_components"],
    ),
    "env not strings": (MINIMAL + "env = { CC = 1 }\n", ["env"]),
    "env placeholder": (MINIMAL + 'env = { X = "{home}" }\n', ["{home}"]),
    "no versions": (MINIMAL.split("[[versions]]")[0] + '[build]\nsystem = "make"\n', ["[[versions]]"]),
    "not toml": ("name = ", ["not valid TOML"]),
    "smoke unknown key": (MINIMAL + '\n[smoke]\nrun = "x"\n', ["unknown key 'run'"]),
    "dependencies unknown key": (MINIMAL + '\n[dependencies]\ntest = ["x"]\n', ["unknown key 'test'"]),
    "configure_args not a list": (MINIMAL + 'configure_args = "--foo"\n', ["configure_args", "list"]),
}


@pytest.mark.parametrize(("text", "fragments"), list(ERROR_CASES.values()), ids=list(ERROR_CASES))
def test_parse_recipe_errors(text: str, fragments: list[str]) -> None:
    with pytest.raises(RecipeError) as info:
        parse_recipe(text)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert info.value.code == "invalid_recipe"
    assert isinstance(info.value, UsageError)


def test_file_name_must_match_package_name(tmp_path: Path) -> None:
    path = tmp_path / "other.toml"
    path.write_text(MINIMAL, encoding="utf-8")
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert "demo.toml" in str(info.value)
    assert "other.toml" in str(info.value)


def test_load_recipe_names_file_in_errors(tmp_path: Path) -> None:
    path = tmp_path / "demo.toml"
    path.write_text('colour = "red"\n' + MINIMAL, encoding="utf-8")
    with pytest.raises(RecipeError, match=r"demo\.toml"):
        load_recipe(path)


def test_load_recipe_from_matching_file(tmp_path: Path) -> None:
    path = tmp_path / "demo.toml"
    path.write_text(MINIMAL, encoding="utf-8")
    assert load_recipe(path).name == "demo"


def test_build_relevant_excludes_metadata() -> None:
    recipe = parse_recipe(MINIMAL)
    content = recipe.build_relevant()
    assert set(content) == {"name", "build", "variants", "build_dependencies", "runtime_dependencies"}
    flat = repr(content)
    assert "example.org" not in flat
    assert "A demo" not in flat
    assert SHA not in flat


@pytest.mark.parametrize("value", ["with space", "-leading-dash", "a/b", "tab\there", "x" * 65, "ünïcode"])
def test_a_variant_value_the_protocol_cannot_carry_is_refused(value: str) -> None:
    # The farm's answers carry variant values (details, build options); a value that the protocol refuses would
    # make every answer about the package a 500, so the recipe is refused when it is read, naming the variant.
    text = MINIMAL + f'\n[variants.flavour]\ndefault = "plain"\nvalues = ["plain", {value!r}]\n'.replace("'", '"')
    with pytest.raises(RecipeError, match=r"\[variants\.flavour\]\.values.*not a valid option value"):
        parse_recipe(text, source="demo.toml")


def test_a_variant_with_too_many_values_is_refused() -> None:
    values = ", ".join(f'"v{i}"' for i in range(65))
    text = MINIMAL + f'\n[variants.flavour]\ndefault = "v0"\nvalues = [{values}]\n'
    with pytest.raises(RecipeError, match=r"at most 64 values"):
        parse_recipe(text, source="demo.toml")


def test_a_summary_with_terminal_escapes_is_refused() -> None:
    # `pkgc search` and `pkgc info` print summaries on users' terminals; an escape there would act on the terminal.
    text = MINIMAL.replace('summary = "A demo"', 'summary = "A demo\\u001b]0;owned\\u0007"')
    assert text != MINIMAL
    with pytest.raises(RecipeError, match=r"summary.*control characters"):
        parse_recipe(text, source="demo.toml")


# ----------------------------------------------------------------------------------------- argument templates


@pytest.mark.parametrize(
    ("template", "filled"),
    [
        ("{destdir}{prefix}/bin", "/stage/__p__/bin"),
        ('{{"level": {jobs}}}', '{"level": 4}'),  # a JSON argument
        ("${{HOME}}/x", "${HOME}/x"),  # a shell's variable, not a placeholder
        ("${prefix}", "$/__p__"),  # a placeholder right after a dollar sign is still one
        ("{{prefix}}", "{prefix}"),  # doubled: literal braces around a literal word
        ("{{{prefix}}}", "{/__p__}"),
        ("plain", "plain"),
    ],
)
def test_templates_fill_placeholders_and_doubled_braces(template: str, filled: str) -> None:
    values = {"destdir": "/stage", "prefix": "/__p__", "jobs": "4"}
    assert fill_template(template, values) == filled


@pytest.mark.parametrize("stray", ["{", "}", "a}b", "{prefix", "prefix}", "{{prefix}", "x{y"])
def test_a_stray_brace_is_a_template_error(stray: str) -> None:
    with pytest.raises(TemplateError, match="lone"):
        template_placeholders(stray)
    with pytest.raises(TemplateError):
        fill_template(stray, {"prefix": "/p", "y": "1"})


def test_a_recipe_with_a_stray_brace_names_the_key_and_the_way_out() -> None:
    text = MINIMAL.replace('system = "autotools"', 'system = "steps"\nsteps = [["sh", "-c", "echo ${HOME}"]]')
    with pytest.raises(RecipeError) as caught:
        parse_recipe(text, source="demo.toml")
    message = str(caught.value)
    assert "steps" in message and "unknown placeholder {HOME}" in message
    escaped = parse_recipe(text.replace("${HOME}", "${{HOME}}"), source="demo.toml")
    assert escaped.build.steps == (("sh", "-c", "echo ${{HOME}}"),)
    lone = text.replace("${HOME}", "{ oops")
    with pytest.raises(RecipeError, match=r"lone '\{'.*write '\{\{'"):
        parse_recipe(lone, source="demo.toml")


def test_a_smoke_command_is_run_as_written_braces_and_all() -> None:
    """Smoke commands are not templates (nothing fills them): a JSON argument needs no escaping there."""
    text = MINIMAL + '\n[smoke]\ncommand = ["bin/demo", "--config", "{\\"level\\": 1}"]\nexpect = "ok"\n'
    recipe = parse_recipe(text, source="demo.toml")
    assert recipe.smoke_command == ("bin/demo", "--config", '{"level": 1}')
