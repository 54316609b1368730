"""Recipes: one TOML file per package saying where its source is and how it builds (see docs/recipes.md).

A recipe is data, never code: build steps are argument lists with a small set of `{placeholders}` that the worker
fills with values it controls, so nothing a user types can become part of a command line.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pkgc.core.errors import NotFound, UsageError
from pkgc.core.names import validate_name
from pkgc.core.options import GLOBAL_OPTION_NAMES, MAX_OPTION_VALUES, OptionSpec, is_valid_option_value
from pkgc.core.text import has_control_characters
from pkgc.core.toolchain import TOOL_NAMES
from pkgc.core.versions import Version

BUILD_SYSTEMS = ("autotools", "cmake", "meson", "make", "steps", "auto")  # auto: detected by the worker
TEMPLATE_NAMES = frozenset(
    {"prefix", "jobs", "cc", "cxx", "cflags", "cxxflags", "cppflags", "ldflags", "destdir", "srcdir"}
)
# Placeholders that stand for several arguments: written as a whole argument (`{*cflags}`), in argument lists only.
LIST_TEMPLATE_NAMES = frozenset({"cflags", "cxxflags", "cppflags", "ldflags"})
_LIST_PLACEHOLDER = re.compile(r"\{\*([^{}]*)\}")
_DEP_PLACEHOLDER = re.compile(r"dep\.([a-z0-9][a-z0-9+._-]*)\.prefix")
# A patch file beside the recipe: a plain file name, no directory, no leading dot.
_PATCH_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
PATCH_TEXTS_KEY = "patch_texts"  # the table in which a self-contained recipe text carries its patch files
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_PATCH_STRIP = 5
# A template's pieces: `{{` and `}}` stand for one literal brace (a JSON argument, a shell's `${VAR}` written
# `${{VAR}}`), `{name}` is a placeholder, and any other brace is an error (it used to pass through unnoticed).
_TEMPLATE_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


class TemplateError(ValueError):
    """A stray brace in an argument template: neither doubled (a literal brace) nor part of a `{placeholder}`."""


def template_placeholders(text: str) -> list[str]:
    """The placeholder names `text` uses, in order; raises TemplateError for a stray brace."""
    names: list[str] = []
    for match in _TEMPLATE_TOKEN.finditer(text):
        token = match.group(0)
        if match.group(1) is not None:
            names.append(match.group(1))
        elif token not in ("{{", "}}"):
            raise TemplateError(f"a lone '{token}' (write '{token}{token}' for a literal brace)")
    return names


def fill_template(text: str, values: Mapping[str, str]) -> str:
    """`text` with each `{name}` replaced by `values[name]` and each doubled brace made single.

    The loader has checked every name (unknown ones and stray braces are recipe errors), so a KeyError here is a
    bug, not bad input.
    """

    def piece(match: re.Match[str]) -> str:
        token = match.group(0)
        if match.group(1) is not None:
            return values[match.group(1)]
        if token in ("{{", "}}"):
            return token[0]
        raise TemplateError(f"a lone '{token}' (write '{token}{token}' for a literal brace)")

    return _TEMPLATE_TOKEN.sub(piece, text)


def list_placeholder(text: str) -> str | None:
    """The inside of a whole-argument list placeholder (`{*cflags}` -> "cflags", `{*glob:src/*.c}` ->
    "glob:src/*.c"), or None when `text` is an ordinary argument template."""
    match = _LIST_PLACEHOLDER.fullmatch(text)
    return match.group(1) if match else None


def dependency_placeholder(name: str) -> str | None:
    """The dependency a `dep.NAME.prefix` placeholder names, or None for any other placeholder."""
    match = _DEP_PLACEHOLDER.fullmatch(name)
    return match.group(1) if match else None


def check_glob_pattern(pattern: str) -> str | None:
    """Why a `{*glob:PATTERN}` pattern is refused (it must stay inside the source), or None when it is fine."""
    if not pattern:
        return "an empty pattern"
    if pattern.startswith("/") or "\\" in pattern or "\0" in pattern:
        return "an absolute pattern"
    if ".." in pattern.split("/"):
        return "a pattern with '..'"
    return None


_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_URL_SCHEMES = ("http://", "https://", "mirror://")


class RecipeError(UsageError):
    code = "invalid_recipe"


@dataclass(frozen=True)
class PatchFile:
    """A patch shipped beside the recipe (`recipes/NAME/FILE`): its text travels in the build spec and its digest in
    the key, so a worker never reads the recipe directory."""

    name: str  # a plain file name, no directories
    sha256: str  # of `text`, UTF-8 encoded
    strip: int  # patch -pN
    text: str


@dataclass(frozen=True)
class PatchSeries:
    """A distribution's patch series (Debian's `*.debian.tar.*` with `debian/patches/series`), fetched like the
    source and checked by digest."""

    kind: str  # "debian"
    sha256: str
    urls: tuple[str, ...] = ()
    mirrors: tuple[str, ...] = ()


@dataclass(frozen=True)
class SourceVersion:
    version: str
    sha256: str
    urls: tuple[str, ...]
    mirrors: tuple[str, ...] = ()
    strip_components: int = 1
    patches: tuple[PatchFile, ...] = ()  # applied in order, after the series
    series: PatchSeries | None = None

    @property
    def all_urls(self) -> tuple[str, ...]:
        return self.urls + self.mirrors


@dataclass(frozen=True)
class BuildInstructions:
    system: str
    configure_args: tuple[str, ...] = ()
    make_args: tuple[str, ...] = ()
    install_args: tuple[str, ...] = ()
    steps: tuple[tuple[str, ...], ...] = ()
    subdir: str = ""
    env: tuple[tuple[str, str], ...] = ()
    bootstrap: tuple[tuple[str, ...], ...] = ()  # argument lists run before the standard system's configure
    post_install: tuple[tuple[str, ...], ...] = ()  # argument lists run after the standard system's install
    tools: tuple[str, ...] = ()  # platform tools (pkgc/core/toolchains/*.toml [tools]) the build needs

    def as_dict(self) -> dict[str, Any]:
        """The build table as it enters the key; a newer key is present only when set, so recipes that do not
        use a newer feature keep their keys (and their builds)."""
        table: dict[str, Any] = {
            "system": self.system,
            "configure_args": list(self.configure_args),
            "make_args": list(self.make_args),
            "install_args": list(self.install_args),
            "steps": [list(step) for step in self.steps],
            "subdir": self.subdir,
            "env": dict(self.env),
        }
        if self.tools:
            table["tools"] = list(self.tools)
        if self.bootstrap:
            table["bootstrap"] = [list(step) for step in self.bootstrap]
        if self.post_install:
            table["post_install"] = [list(step) for step in self.post_install]
        return table


@dataclass(frozen=True)
class SmokeTest:
    """One smoke test: a command run in an installed prefix, with optional stdin and environment, whose output
    must contain `expect`."""

    command: tuple[str, ...]
    expect: str = ""
    stdin: str = ""
    env: tuple[tuple[str, str], ...] = ()
    status: int = 0  # the exit status it must end with (a checker that reports bad input exits non-zero)

    def as_dict(self) -> dict[str, Any]:
        """The test as it travels (build spec payload, artifact manifest)."""
        return {
            "command": list(self.command),
            "expect": self.expect,
            "stdin": self.stdin,
            "env": dict(self.env),
            "status": self.status,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SmokeTest:
        return cls(
            tuple(str(arg) for arg in data["command"]),
            str(data.get("expect", "")),
            str(data.get("stdin", "")),
            tuple(sorted((str(k), str(v)) for k, v in dict(data.get("env", {})).items())),
            int(data.get("status", 0)),
        )


def source_patches_dict(source: SourceVersion) -> dict[str, Any]:
    """What of a version's patches enters the build key: names, digests and strip levels of the patch files, the
    series' kind and digest. Empty when the version has none, so unpatched versions keep their keys."""
    table: dict[str, Any] = {}
    if source.patches:
        table["patches"] = [{"name": p.name, "sha256": p.sha256, "strip": p.strip} for p in source.patches]
    if source.series is not None:
        table["series"] = {"kind": source.series.kind, "sha256": source.series.sha256}
    return table


@dataclass(frozen=True)
class Recipe:
    name: str
    summary: str
    homepage: str
    license: str
    versions: tuple[SourceVersion, ...]
    build: BuildInstructions
    variants: dict[str, OptionSpec] = field(default_factory=dict)
    build_dependencies: tuple[str, ...] = ()
    runtime_dependencies: tuple[str, ...] = ()
    smoke_command: tuple[str, ...] = ()
    smoke_expect: str = ""
    smoke_tests: tuple[SmokeTest, ...] = ()  # every smoke test; smoke_command/expect are the first one's
    origin: str = "curated"  # "curated" (a file in a recipe directory) or "generated" (from the Debian catalog)

    @property
    def dependencies(self) -> tuple[str, ...]:
        """Every dependency, build and runtime, each once, in declaration order."""
        return tuple(dict.fromkeys(self.build_dependencies + self.runtime_dependencies))

    def newest_version(self) -> SourceVersion:
        return max(self.versions, key=lambda v: Version(v.version))

    def version(self, wanted: str | None) -> SourceVersion:
        if wanted is None:
            return self.newest_version()
        for candidate in self.versions:
            if Version(candidate.version) == Version(wanted):
                return candidate
        known = ", ".join(v.version for v in sorted(self.versions, key=lambda v: Version(v.version)))
        raise NotFound(f"{self.name} has no version {wanted}", hint=f"known versions: {known}")

    def build_relevant(self, source: SourceVersion | None = None) -> dict[str, Any]:
        """What of the recipe can change the binary: build steps, variant declarations, dependencies, and the
        patches of the version being built (present only when it has any, so unpatched recipes keep their keys)."""
        content: dict[str, Any] = {
            "name": self.name,
            "build": self.build.as_dict(),
            "variants": {
                name: {
                    "default": spec.canonical(spec.default),
                    "values": list(spec.values),
                    "args": {k: list(v) for k, v in sorted(spec.args.items())},
                }
                for name, spec in sorted(self.variants.items())
            },
            "build_dependencies": list(self.build_dependencies),
            "runtime_dependencies": list(self.runtime_dependencies),
        }
        if source is not None:
            content.update(source_patches_dict(source))
        if self.origin != "curated":  # in the key only when set: curated recipes keep their keys
            content["origin"] = self.origin
        return content


def _check_keys(table: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise RecipeError(f"{where}: unknown key '{unknown[0]}'", hint=f"allowed: {', '.join(sorted(allowed))}")


def _check_template(item: str, where: str, dependencies: frozenset[str], *, lists: bool) -> None:
    """One argument template: its braces, and each placeholder's name (a list placeholder only where `lists`)."""
    inner = list_placeholder(item)
    if inner is not None:
        if not lists:
            raise RecipeError(f"{where}: {{*{inner}}} stands for several arguments and is allowed in argument lists only")
        kind, _, pattern = inner.partition(":")
        if kind == "glob":
            problem = check_glob_pattern(pattern)
            if problem:
                raise RecipeError(f"{where}: {{*glob:{pattern}}} is {problem}", hint="a glob stays inside the source")
            return
        if inner not in LIST_TEMPLATE_NAMES:
            allowed = ", ".join([*(f"{{*{n}}}" for n in sorted(LIST_TEMPLATE_NAMES)), "{*glob:PATTERN}"])
            raise RecipeError(f"{where}: unknown list placeholder {{*{inner}}}", hint=f"allowed: {allowed}")
        return
    try:
        placeholders = template_placeholders(item)
    except TemplateError as exc:
        raise RecipeError(f"{where}: {exc} in {item[:80]!r}") from None
    for placeholder in placeholders:
        dependency = dependency_placeholder(placeholder)
        if dependency is not None:
            if dependency not in dependencies:
                raise RecipeError(
                    f"{where}: {{{placeholder}}} names {dependency!r}, which is not a dependency of this recipe",
                    hint=f"its dependencies: {', '.join(sorted(dependencies)) or 'none'}",
                )
            continue
        if placeholder not in TEMPLATE_NAMES:
            raise RecipeError(
                f"{where}: unknown placeholder {{{placeholder}}}",
                hint=f"allowed: {', '.join(sorted(TEMPLATE_NAMES))}, dep.NAME.prefix (NAME a dependency); "
                "as a whole argument: {*cflags} {*cxxflags} {*cppflags} {*ldflags} {*glob:PATTERN}",
            )


def _strings(
    value: Any,
    where: str,
    *,
    templates: bool = True,
    dependencies: frozenset[str] = frozenset(),
    lists: bool = False,
) -> tuple[str, ...]:
    """A list of strings; with `templates`, each an argument template whose placeholders and braces are checked
    (the build's arguments and environment; a smoke command is run as written, braces and all). `lists` allows
    the whole-argument list placeholders (argument lists, not single values such as an environment variable)."""
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise RecipeError(f"{where} must be a list of strings")
    for item in value if templates else ():
        _check_template(item, where, dependencies, lists=lists)
    return tuple(value)


def _argument_lists(value: Any, where: str, dependencies: frozenset[str]) -> tuple[tuple[str, ...], ...]:
    """A list of non-empty argument lists (steps, bootstrap, post_install)."""
    if not isinstance(value, list):
        raise RecipeError(f"{where} must be a list of argument lists", hint='e.g. [["autoreconf", "-fi"]]')
    lists = tuple(
        _strings(step, f"{where}[{i}]", dependencies=dependencies, lists=True) for i, step in enumerate(value)
    )
    if any(not step for step in lists):
        raise RecipeError(f"{where}: an argument list must not be empty")
    return lists


def _text(table: dict[str, Any], key: str, where: str, *, required: bool = True) -> str:
    value = table.get(key, None if required else "")
    if not isinstance(value, str):
        raise RecipeError(f"{where}: '{key}' must be a string")
    if has_control_characters(value):  # it is shown on users' terminals (search, info)
        raise RecipeError(f"{where}: '{key}' holds control characters")
    return value


def _sha256(table: dict[str, Any], where: str) -> str:
    value = _text(table, "sha256", where)
    if not _SHA256.fullmatch(value):
        raise RecipeError(f"{where}: sha256 must be 64 lower-case hex digits")
    return value


def _urls(entry: dict[str, Any], where: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    urls = _strings(entry.get("urls", []), f"{where}.urls", templates=False)
    mirrors = _strings(entry.get("mirrors", []), f"{where}.mirrors", templates=False)
    if not urls + mirrors:
        raise RecipeError(f"{where}: give at least one URL or mirror")
    for url in urls + mirrors:
        if not url.startswith(_URL_SCHEMES) or has_control_characters(url) or " " in url:
            raise RecipeError(f"{where}: URL {url[:80]!r} must start with http://, https:// or mirror://")
    return urls, mirrors


def _parse_patch(entry: Any, where: str, texts: Mapping[str, str], recipe_name: str) -> PatchFile:
    if isinstance(entry, str):
        raise RecipeError(f"{where} must be a table", hint='e.g. {file = "fix.patch", sha256 = "...", strip = 1}')
    if not isinstance(entry, dict):
        raise RecipeError(f"{where} must be a table")
    _check_keys(entry, {"file", "sha256", "strip"}, where)
    name = _text(entry, "file", where)
    if not _PATCH_FILE_NAME.fullmatch(name):
        raise RecipeError(
            f"{where}: file {name[:80]!r} is not a plain file name",
            hint=f"a file in recipes/{recipe_name}/: letters, digits and '._+-', no directories",
        )
    sha256 = _sha256(entry, where)
    strip = entry.get("strip", 1)
    if not isinstance(strip, int) or isinstance(strip, bool) or not 0 <= strip <= MAX_PATCH_STRIP:
        raise RecipeError(f"{where}: strip must be 0 to {MAX_PATCH_STRIP} (patch -pN)")
    text = texts.get(name)
    if text is None:
        raise RecipeError(f"{where}: patch file {name} not found", hint=f"put it beside the recipe: {recipe_name}/{name}")
    actual = hashlib.sha256(text.encode("utf-8")).hexdigest()
    if actual != sha256:
        raise RecipeError(f"{where}: patch file {name} has sha256 {actual}, the recipe says {sha256}")
    return PatchFile(name, sha256, strip, text)


def _parse_series(entry: Any, where: str) -> PatchSeries:
    if not isinstance(entry, dict):
        raise RecipeError(f"{where} must be a table", hint='e.g. {sha256 = "...", urls = ["mirror://debian/..."]}')
    _check_keys(entry, {"kind", "sha256", "urls", "mirrors"}, where)
    kind = _text(entry, "kind", where, required=False) or "debian"
    if kind != "debian":
        raise RecipeError(f"{where}: unknown kind {kind!r}", hint="allowed: debian (a *.debian.tar.* with debian/patches/series)")
    sha256 = _sha256(entry, where)
    urls, mirrors = _urls(entry, where)
    return PatchSeries(kind, sha256, urls, mirrors)


def _parse_version(entry: Any, where: str, texts: Mapping[str, str], recipe_name: str) -> SourceVersion:
    if not isinstance(entry, dict):
        raise RecipeError(f"{where} must be a table")
    _check_keys(entry, {"version", "sha256", "urls", "mirrors", "strip_components", "patches", "series"}, where)
    version = _text(entry, "version", where)
    Version(version)
    sha256 = _sha256(entry, where)
    urls, mirrors = _urls(entry, where)
    strip = entry.get("strip_components", 1)
    if not isinstance(strip, int) or not 0 <= strip <= 3:
        raise RecipeError(f"{where}: strip_components must be 0 to 3")
    raw_patches = entry.get("patches", [])
    if not isinstance(raw_patches, list):
        raise RecipeError(f"{where}.patches must be a list of tables", hint='e.g. [{file = "fix.patch", sha256 = "..."}]')
    patches = tuple(
        _parse_patch(patch, f"{where}.patches[{i}]", texts, recipe_name) for i, patch in enumerate(raw_patches)
    )
    if len({p.name for p in patches}) != len(patches):
        raise RecipeError(f"{where}.patches: a patch file is listed twice")
    series = _parse_series(entry["series"], f"{where}.series") if "series" in entry else None
    return SourceVersion(version, sha256, urls, mirrors, strip, patches, series)


def _parse_build(table: Any, dependencies: frozenset[str]) -> BuildInstructions:
    if not isinstance(table, dict):
        raise RecipeError("[build] is missing")
    allowed = {
        "system",
        "configure_args",
        "make_args",
        "install_args",
        "steps",
        "subdir",
        "env",
        "tools",
        "bootstrap",
        "post_install",
    }
    _check_keys(table, allowed, "[build]")
    system = _text(table, "system", "[build]")
    if system not in BUILD_SYSTEMS:
        raise RecipeError(f"[build]: unknown system {system!r}", hint=f"allowed: {', '.join(BUILD_SYSTEMS)}")
    steps = _argument_lists(table.get("steps", []), "[build].steps", dependencies)
    if system == "steps" and not steps:
        raise RecipeError("[build]: system 'steps' needs at least one step")
    subdir = _text(table, "subdir", "[build]", required=False)
    if subdir.startswith("/") or ".." in Path(subdir).parts:
        raise RecipeError("[build]: subdir must be a relative path inside the source")
    env = table.get("env", {})
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise RecipeError("[build]: env must be a table of strings")
    for env_name, value in env.items():
        if not _ENV_NAME.fullmatch(env_name):
            raise RecipeError(f"[build].env: {env_name[:80]!r} is not a variable name", hint="letters, digits and '_'")
        _strings([value], f"[build].env.{env_name}", dependencies=dependencies)
    tools = _strings(table.get("tools", []), "[build].tools", templates=False)
    for tool in tools:
        if tool not in TOOL_NAMES:
            raise RecipeError(f"[build].tools: unknown tool {tool!r}", hint=f"allowed: {', '.join(sorted(TOOL_NAMES))}")

    def arguments(key: str) -> tuple[str, ...]:
        return _strings(table.get(key, []), f"[build].{key}", dependencies=dependencies, lists=True)

    return BuildInstructions(
        system=system,
        configure_args=arguments("configure_args"),
        make_args=arguments("make_args"),
        install_args=arguments("install_args"),
        steps=steps,
        subdir=subdir,
        env=tuple(sorted(env.items())),
        bootstrap=_argument_lists(table.get("bootstrap", []), "[build].bootstrap", dependencies),
        post_install=_argument_lists(table.get("post_install", []), "[build].post_install", dependencies),
        tools=tuple(sorted(set(tools))),
    )


def _parse_variant(name: str, table: Any, dependencies: frozenset[str]) -> OptionSpec:
    where = f"[variants.{name}]"
    if name in GLOBAL_OPTION_NAMES:
        raise RecipeError(f"{where}: '{name}' is a global option and cannot be a variant")
    validate_name(name)
    if not isinstance(table, dict):
        raise RecipeError(f"{where} must be a table")
    _check_keys(table, {"description", "default", "values", "args"}, where)
    default = table.get("default")
    raw_args = table.get("args", {})
    if not isinstance(raw_args, dict):
        raise RecipeError(f"{where}: args must be a table")
    args = {
        str(key): _strings(value, f"{where}.args.{key}", dependencies=dependencies, lists=True)
        for key, value in raw_args.items()
    }
    if isinstance(default, bool):
        if "values" in table:
            raise RecipeError(f"{where}: a boolean variant has no 'values'")
        values: tuple[str, ...] = ()
        allowed_keys = {"true", "false"}
    elif isinstance(default, str):
        values = _strings(table.get("values", []), f"{where}.values")
        if len(values) > MAX_OPTION_VALUES:
            raise RecipeError(f"{where}.values: at most {MAX_OPTION_VALUES} values")
        for value in values:
            if not is_valid_option_value(value):
                raise RecipeError(
                    f"{where}.values: {value[:80]!r} is not a valid option value",
                    hint="letters, digits, '.', '+', '_' and '-', starting with a letter or digit, at most 64",
                )
        if default not in values:
            raise RecipeError(f"{where}: default {default!r} is not one of its values")
        allowed_keys = set(values)
    else:
        raise RecipeError(f"{where}: default must be true/false or one of 'values'")
    stray = sorted(set(args) - allowed_keys)
    if stray:
        raise RecipeError(f"{where}: args for unknown value {stray[0]!r}")
    return OptionSpec(name, default, values, _text(table, "description", where, required=False), args)


def _parse_smoke_test(table: Any, where: str) -> SmokeTest:
    if not isinstance(table, dict):
        raise RecipeError(f"{where} must be a table")
    _check_keys(table, {"command", "expect", "stdin", "env", "status"}, where)
    command = _strings(table.get("command", []), f"{where}.command", templates=False)
    if not command or not command[0]:
        raise RecipeError(f"{where}: command must be a non-empty list of strings", hint='e.g. ["jq", "--version"]')
    stdin = table.get("stdin", "")
    if not isinstance(stdin, str):
        raise RecipeError(f"{where}: 'stdin' must be a string")
    env = table.get("env", {})
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise RecipeError(f"{where}: env must be a table of strings")
    for env_name in env:
        if not _ENV_NAME.fullmatch(env_name) or env_name in SMOKE_RESERVED_ENV or env_name.startswith("LD_"):
            raise RecipeError(
                f"{where}.env: {env_name[:80]!r} cannot be set",
                hint=f"a variable name (letters, digits, '_'), not {', '.join(sorted(SMOKE_RESERVED_ENV))} or LD_*",
            )
    status = table.get("status", 0)
    if not isinstance(status, int) or isinstance(status, bool) or not 0 <= status <= 255:
        raise RecipeError(f"{where}: status must be an exit status, 0 to 255")
    expect = _text(table, "expect", where, required=False)
    return SmokeTest(command, expect, stdin, tuple(sorted(env.items())), status)


# Set by the smoke-test runner itself (pkgc/worker/smoke.py): a recipe cannot point them elsewhere.
SMOKE_RESERVED_ENV = frozenset({"PATH", "PKG_CONFIG_PATH", "PKG_CONFIG_LIBDIR", "PKG_CONFIG_SYSROOT_DIR"})


def _parse_smoke(smoke: Any, source: str) -> tuple[SmokeTest, ...]:
    """`[smoke] command/expect` (one test, the shorthand) and `[[smoke.tests]]` (any number), in that order."""
    if not isinstance(smoke, dict):
        raise RecipeError(f"{source}: [smoke] must be a table")
    _check_keys(smoke, {"command", "expect", "tests"}, "[smoke]")
    tests: list[SmokeTest] = []
    if "command" in smoke:
        tests.append(_parse_smoke_test({k: smoke[k] for k in ("command", "expect") if k in smoke}, "[smoke]"))
    elif "expect" in smoke:
        raise RecipeError("[smoke]: 'expect' needs a 'command'")
    raw_tests = smoke.get("tests", [])
    if not isinstance(raw_tests, list):
        raise RecipeError("[smoke].tests must be an array of tables", hint="write [[smoke.tests]]")
    tests.extend(_parse_smoke_test(t, f"[[smoke.tests]] #{i + 1}") for i, t in enumerate(raw_tests))
    return tuple(tests)


def _patch_texts(data: dict[str, Any], files: Mapping[str, str] | None) -> dict[str, str]:
    """The patch files' texts: those a self-contained recipe carries, then those read beside its file."""
    embedded = data.get(PATCH_TEXTS_KEY, {})
    if not isinstance(embedded, dict) or not all(isinstance(v, str) for v in embedded.values()):
        raise RecipeError(f"[{PATCH_TEXTS_KEY}] must be a table of file name = patch text")
    for name in embedded:
        if not _PATCH_FILE_NAME.fullmatch(name):
            raise RecipeError(f"[{PATCH_TEXTS_KEY}]: {name[:80]!r} is not a plain file name")
    return {**embedded, **(files or {})}


def parse_recipe(text: str, *, source: str = "recipe", files: Mapping[str, str] | None = None) -> Recipe:
    """Parse and validate a recipe; every error is one line naming the file (`source`), the table and key that
    is wrong, and what is allowed. `files` are patch texts by file name (read beside the recipe); a
    self-contained recipe text carries them in its `[patch_texts]` table instead (see `bundle_recipe_text`)."""
    try:
        return _parse_recipe(text, source, files)
    except UsageError as exc:  # RecipeError, and the checks of names and versions it calls
        if exc.message.startswith(f"{source}:"):
            raise
        raise RecipeError(f"{source}: {exc.message}", hint=exc.hint) from None


def _parse_recipe(text: str, source: str, files: Mapping[str, str] | None) -> Recipe:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{source}: not valid TOML: {exc}") from None
    allowed = {
        "name",
        "summary",
        "homepage",
        "license",
        "versions",
        "build",
        "variants",
        "dependencies",
        "smoke",
        PATCH_TEXTS_KEY,
    }
    _check_keys(data, allowed, source)
    name = validate_name(_text(data, "name", source))
    deps = data.get("dependencies", {})
    if not isinstance(deps, dict):
        raise RecipeError(f"{source}: [dependencies] must be a table")
    _check_keys(deps, {"build", "runtime"}, "[dependencies]")
    build_deps = tuple(validate_name(d) for d in _strings(deps.get("build", []), "[dependencies].build", templates=False))
    runtime_deps = tuple(validate_name(d) for d in _strings(deps.get("runtime", []), "[dependencies].runtime", templates=False))
    if name in build_deps + runtime_deps:
        raise RecipeError(f"{source}: {name} depends on itself")
    dependencies = frozenset(build_deps + runtime_deps)
    texts = _patch_texts(data, files)
    raw_versions = data.get("versions")
    if not isinstance(raw_versions, list) or not raw_versions:
        raise RecipeError(f"{source}: at least one [[versions]] entry is needed")
    versions = tuple(
        _parse_version(entry, f"[[versions]] #{i + 1}", texts, name) for i, entry in enumerate(raw_versions)
    )
    if len({Version(v.version) for v in versions}) != len(versions):
        raise RecipeError(f"{source}: a version is listed twice")
    raw_variants = data.get("variants", {})
    if not isinstance(raw_variants, dict):
        raise RecipeError(f"{source}: [variants] must be a table")
    variants = {vname: _parse_variant(vname, table, dependencies) for vname, table in sorted(raw_variants.items())}
    smoke_tests = _parse_smoke(data.get("smoke", {}), source)
    first = smoke_tests[0] if smoke_tests else SmokeTest(())
    return Recipe(
        name=name,
        summary=_text(data, "summary", source, required=False),
        homepage=_text(data, "homepage", source, required=False),
        license=_text(data, "license", source, required=False),
        versions=versions,
        build=_parse_build(data.get("build"), dependencies),
        variants=variants,
        build_dependencies=build_deps,
        runtime_dependencies=runtime_deps,
        smoke_command=first.command,
        smoke_expect=first.expect,
        smoke_tests=smoke_tests,
    )


def patch_dir(path: Path) -> Path:
    """Where the patch files of the recipe at `path` live: `recipes/NAME/` beside `recipes/NAME.toml`."""
    return path.parent / path.stem


def _patch_names(text: str) -> list[str]:
    """The patch file names a recipe text lists (read leniently: the parser reports any problem later)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return []
    names: list[str] = []
    versions = data.get("versions")
    for entry in versions if isinstance(versions, list) else []:
        patches = entry.get("patches") if isinstance(entry, dict) else None
        for patch in patches if isinstance(patches, list) else []:
            file = patch.get("file") if isinstance(patch, dict) else None
            if isinstance(file, str) and _PATCH_FILE_NAME.fullmatch(file) and file not in names:
                names.append(file)
    return names


def read_patch_files(path: Path, text: str) -> dict[str, str]:
    """The texts of the patch files the recipe at `path` names, read from `recipes/NAME/` (plain file names only,
    so nothing outside that directory is read); a missing one is left for the parser to name."""
    directory = patch_dir(path)
    found: dict[str, str] = {}
    for name in _patch_names(text):
        candidate = directory / name
        if candidate.is_file() and not candidate.is_symlink():
            try:
                found[name] = candidate.read_bytes().decode("utf-8")
            except UnicodeDecodeError as exc:
                raise RecipeError(f"{path.name}: patch file {path.stem}/{name} is not UTF-8 text (byte {exc.start})") from None
    return found


def _toml_string(value: str) -> str:
    """A TOML basic string for any text (JSON's escapes are TOML's; DEL is a control character TOML wants escaped)."""
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def bundle_recipe_text(path: Path) -> str:
    """The recipe at `path` as one self-contained text: its TOML with its patch files' texts appended in a
    `[patch_texts]` table. The catalog stores recipe texts, and a farm (or a worker) never sees the recipe's
    directory, so this is what every publish path sends and stores; a recipe without patch files is unchanged."""
    text = path.read_text(encoding="utf-8")
    if f"[{PATCH_TEXTS_KEY}]" in text:  # it carries its patch texts already
        return text
    files = read_patch_files(path, text)
    missing = [name for name in _patch_names(text) if name not in files]
    if missing:
        raise RecipeError(
            f"{path.name}: patch file {missing[0]} not found",
            hint=f"put it beside the recipe: {patch_dir(path).name}/{missing[0]}",
        )
    if not files:
        return text
    lines = [text if text.endswith("\n") else text + "\n", f"\n[{PATCH_TEXTS_KEY}]\n"]
    lines.extend(f"{_toml_string(name)} = {_toml_string(body)}\n" for name, body in sorted(files.items()))
    return "".join(lines)


def load_recipe(path: Path) -> Recipe:
    """The recipe at `path`, with its patch files read from beside it (`recipes/NAME/FILE`)."""
    recipe = parse_recipe(bundle_recipe_text(path), source=path.name)
    if path.stem != recipe.name:
        raise RecipeError(f"{path.name}: file name must be the package name ({recipe.name}.toml)")
    return recipe
