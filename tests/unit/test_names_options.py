"""Package names, NAME@VERSION specs and build options (pkgc.core.names, pkgc.core.options)."""

from __future__ import annotations

import pytest

from pkgc.core.errors import UsageError
from pkgc.core.names import parse_spec, validate_name
from pkgc.core.options import (
    CPU_TARGETS,
    GLOBAL_OPTION_NAMES,
    NormalisedOptions,
    OptionSpec,
    compiler_flags,
    global_option_specs,
    normalise_options,
    parse_option_assignments,
)

# --- names ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["hello", "libfoo2", "gtk+3", "python3.11", "a", "0ad", "x_y-z", "a" * 64])
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "Hello", "a/b", "..", "a..b", "../etc", "-x", "a" * 65, ".hidden", "a.", "a b", "a\\b", "+x"]
)
def test_invalid_names(name: str) -> None:
    with pytest.raises(UsageError):
        validate_name(name)


def test_upper_case_name_hints_at_lower_case() -> None:
    with pytest.raises(UsageError) as info:
        validate_name("Hello")
    assert info.value.hint is not None
    assert "'hello'" in info.value.hint
    assert "'hello'" in str(info.value)


def test_empty_and_long_names_say_why() -> None:
    with pytest.raises(UsageError, match="empty"):
        validate_name("")
    with pytest.raises(UsageError, match="64"):
        validate_name("a" * 65)


def test_path_like_name_has_no_lower_case_hint() -> None:
    with pytest.raises(UsageError) as info:
        validate_name("../etc")
    assert info.value.hint is not None
    assert "did you mean" not in info.value.hint


def test_name_with_trailing_newline_is_rejected() -> None:
    # Guards: `$` also matches before a trailing newline, so a regex search would let "hello\n" through,
    # although names are used verbatim in file names, URL segments and database keys; validate_name uses
    # fullmatch, which refuses it.
    with pytest.raises(UsageError, match="invalid package name"):
        validate_name("hello\n")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("hello@2.10", ("hello", "2.10")),
        ("hello", ("hello", None)),
        ("zlib@1.2.13", ("zlib", "1.2.13")),
        ("gtk+3@3.24.38", ("gtk+3", "3.24.38")),
        ("python3.11@3.11.7", ("python3.11", "3.11.7")),
    ],
)
def test_parse_spec(spec: str, expected: tuple[str, str | None]) -> None:
    assert parse_spec(spec) == expected


@pytest.mark.parametrize("spec", ["hello@", "@2.10", "Hello@2.10", "../x@1", ""])
def test_parse_spec_errors(spec: str) -> None:
    with pytest.raises(UsageError):
        parse_spec(spec)


# --- options --------------------------------------------------------------------------------------

NLS = OptionSpec("nls", True, args={"true": ("--enable-nls",), "false": ("--disable-nls",)})
LIBS = OptionSpec("libs", "shared", ("shared", "static", "both"))
VARIANTS = {"nls": NLS, "libs": LIBS}


def test_defaults_are_filled_and_sorted() -> None:
    options = normalise_options({}, VARIANTS, "x86_64", package="demo")
    assert options.as_dict() == {
        "cpu": "x86-64",
        "debug": "false",
        "libs": "shared",
        "lto": "false",
        "nls": "true",
        "opt": "O2",
    }
    assert [k for k, _ in options.items] == sorted(options.as_dict())
    assert options.globals_only() == {"cpu": "x86-64", "debug": "false", "lto": "false", "opt": "O2"}
    assert set(options.globals_only()) == GLOBAL_OPTION_NAMES


def test_defaults_without_variants() -> None:
    options = normalise_options({}, {}, "x86_64", package="demo")
    assert options.items == (("cpu", "x86-64"), ("debug", "false"), ("lto", "false"), ("opt", "O2"))


def test_aarch64_default_cpu() -> None:
    options = normalise_options({}, {}, "aarch64", package="demo")
    assert options.get("cpu") == "armv8-a"


@pytest.mark.parametrize("spelling", [True, "true", "yes", "on", "1", "YES", " On ", "True"])
def test_true_spellings(spelling: str | bool) -> None:
    options = normalise_options({"debug": spelling, "nls": spelling}, VARIANTS, "x86_64", package="demo")
    assert options.get("debug") == "true"
    assert options.get("nls") == "true"


@pytest.mark.parametrize("spelling", [False, "false", "no", "off", "0", "NO", "Off"])
def test_false_spellings(spelling: str | bool) -> None:
    options = normalise_options({"lto": spelling, "nls": spelling}, VARIANTS, "x86_64", package="demo")
    assert options.get("lto") == "false"
    assert options.get("nls") == "false"


def test_equal_requests_spelled_differently_normalise_equal() -> None:
    a = normalise_options({"debug": "yes", "opt": "O3", "nls": False}, VARIANTS, "x86_64", package="demo")
    b = normalise_options({"nls": "off", "opt": "O3", "debug": True}, VARIANTS, "x86_64", package="demo")
    assert a == b
    assert a.items == b.items


def test_input_key_order_does_not_matter() -> None:
    forward = {"opt": "O3", "cpu": "x86-64-v3", "debug": "true", "lto": "true", "libs": "static"}
    backward = dict(reversed(list(forward.items())))
    assert list(forward) != list(backward)
    a = normalise_options(forward, VARIANTS, "x86_64", package="demo")
    b = normalise_options(backward, VARIANTS, "x86_64", package="demo")
    assert a == b


def test_unknown_option_names_option_and_lists_allowed() -> None:
    with pytest.raises(UsageError) as info:
        normalise_options({"colour": "red"}, VARIANTS, "x86_64", package="demo")
    text = str(info.value)
    assert "'colour'" in text
    assert "demo" in text
    for allowed in ("cpu", "debug", "libs", "lto", "nls", "opt"):
        assert allowed in (info.value.hint or "")


def test_variant_of_another_package_is_unknown() -> None:
    with pytest.raises(UsageError, match="nls"):
        normalise_options({"nls": "false"}, {}, "x86_64", package="zlib")


@pytest.mark.parametrize(
    ("option", "value", "allowed"),
    [
        ("opt", "O4", ["O0", "O1", "O2", "O3", "Os"]),
        ("opt", "o3", ["O3"]),
        ("cpu", "x86-64-v5", ["x86-64", "x86-64-v2", "x86-64-v3", "x86-64-v4"]),
        ("debug", "maybe", ["true or false"]),
        ("nls", "2", ["true or false"]),
        ("libs", "dynamic", ["shared", "static", "both"]),
        ("libs", True, ["shared"]),
    ],
)
def test_bad_value_names_option_and_allowed_values(option: str, value: object, allowed: list[str]) -> None:
    with pytest.raises(UsageError) as info:
        normalise_options({option: value}, VARIANTS, "x86_64", package="demo")  # type: ignore[dict-item]
    assert f"'{option}'" in str(info.value)
    for word in allowed:
        assert word in (info.value.hint or "")


def test_cpu_targets_depend_on_arch() -> None:
    assert normalise_options({"cpu": "x86-64-v3"}, {}, "x86_64", package="d").get("cpu") == "x86-64-v3"
    with pytest.raises(UsageError) as info:
        normalise_options({"cpu": "x86-64-v3"}, {}, "aarch64", package="d")
    assert "armv8-a" in (info.value.hint or "")
    assert normalise_options({"cpu": "armv9-a"}, {}, "aarch64", package="d").get("cpu") == "armv9-a"
    with pytest.raises(UsageError):
        normalise_options({"cpu": "armv9-a"}, {}, "x86_64", package="d")
    assert global_option_specs("aarch64")["cpu"].values == CPU_TARGETS["aarch64"]


def test_unsupported_arch() -> None:
    with pytest.raises(UsageError, match="riscv64"):
        normalise_options({}, {}, "riscv64", package="d")


def test_parse_option_assignments() -> None:
    assert parse_option_assignments([]) == {}
    assert parse_option_assignments(["opt=O3", " debug = yes ", "cpu=x86-64-v3"]) == {
        "opt": "O3",
        "debug": "yes",
        "cpu": "x86-64-v3",
    }
    # Only the first '=' splits.
    assert parse_option_assignments(["libs=a=b"]) == {"libs": "a=b"}


@pytest.mark.parametrize(
    ("assignments", "fragment"),
    [
        (["foo"], "KEY=VALUE"),
        (["=x"], "KEY=VALUE"),
        ([" =x"], "KEY=VALUE"),
        (["opt=O3", "opt=O2"], "twice"),
        (["opt=O3", " opt =O3"], "twice"),
    ],
)
def test_parse_option_assignment_errors(assignments: list[str], fragment: str) -> None:
    with pytest.raises(UsageError, match=fragment):
        parse_option_assignments(assignments)


def _flags(**requested: str | bool) -> dict[str, str]:
    return compiler_flags(normalise_options(requested, {}, "x86_64", package="demo"))


def test_compiler_flags_defaults() -> None:
    assert _flags() == {"CFLAGS": "-O2 -march=x86-64", "CXXFLAGS": "-O2 -march=x86-64", "LDFLAGS": ""}


def test_compiler_flags_everything_on() -> None:
    flags = _flags(opt="O3", cpu="x86-64-v3", debug="yes", lto=True)
    assert flags["CFLAGS"] == "-O3 -march=x86-64-v3 -g -flto=auto"
    assert flags["CXXFLAGS"] == flags["CFLAGS"]
    assert flags["LDFLAGS"] == "-flto=auto"


def test_compiler_flags_debug_without_lto() -> None:
    flags = _flags(opt="Os", debug="on")
    assert flags["CFLAGS"].split() == ["-Os", "-march=x86-64", "-g"]
    assert flags["LDFLAGS"] == ""


def test_compiler_flags_come_only_from_enum_values() -> None:
    allowed_tokens = (
        {f"-{level}" for level in ("O0", "O1", "O2", "O3", "Os")}
        | {f"-march={cpu}" for cpus in CPU_TARGETS.values() for cpu in cpus}
        | {"-g", "-flto=auto"}
    )
    for opt in ("O0", "O1", "O2", "O3", "Os"):
        for cpu in CPU_TARGETS["x86_64"]:
            for debug in ("true", "false"):
                for lto in ("true", "false"):
                    flags = _flags(opt=opt, cpu=cpu, debug=debug, lto=lto)
                    for value in flags.values():
                        assert set(value.split()) <= allowed_tokens


@pytest.mark.parametrize(
    "requested",
    [
        {"opt": "-fplugin=evil.so"},
        {"opt": "O2 -fplugin=evil.so"},
        {"cpu": "native; rm -rf /"},
        {"cpu": "native"},
        {"cpu": "x86-64 -specs=evil"},
        {"debug": "-wrapper,evil"},
        {"lto": "@file"},
        {"cflags": "-O3"},
        {"CFLAGS": "-O3"},
    ],
)
def test_free_form_flags_are_refused(requested: dict[str, str]) -> None:
    with pytest.raises(UsageError):
        normalise_options(requested, {}, "x86_64", package="demo")


def test_option_spec_canonical() -> None:
    assert NLS.is_bool and not LIBS.is_bool
    assert NLS.canonical(True) == "true"
    assert NLS.canonical("off") == "false"
    assert LIBS.canonical("both") == "both"
    assert NLS.allowed() == "true or false"
    assert LIBS.allowed() == "shared, static, both"


def test_normalised_options_accessors() -> None:
    options = NormalisedOptions((("a", "1"), ("opt", "O2")))
    assert options.get("a") == "1"
    assert options.as_dict() == {"a": "1", "opt": "O2"}
    assert options.globals_only() == {"opt": "O2"}
    with pytest.raises(KeyError):
        options.get("missing")
