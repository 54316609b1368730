"""Recipes: one TOML file per package saying where its source is and how it builds (see docs/recipes.md).

A recipe is data, never code: build steps are argument lists with a small set of `{placeholders}` that the worker
fills with values it controls, so nothing a user types can become part of a command line.
"""

from __future__ import annotations

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
        return table


@dataclass(frozen=True)
class SmokeTest:
    """One smoke test: a command run in an installed prefix, with optional stdin and environment, whose output
    must contain `expect`."""

    command: tuple[str, ...]
    expect: str = ""
    stdin: str = ""
    env: tuple[tuple[str, str], ...] = ()


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

    def build_relevant(self) -> dict[str, Any]:
        """What of the recipe can change the binary: build steps, variant declarations, dependencies."""
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
        if self.origin != "curated":  # in the key only when set: curated recipes keep their keys
            content["origin"] = self.origin
        return content


def _check_keys(table: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise RecipeError(f"{where}: unknown key '{unknown[0]}'", hint=f"allowed: {', '.join(sorted(allowed))}")


def _strings(value: Any, where: str, *, templates: bool = True) -> tuple[str, ...]:
    """A list of strings; with `templates`, each an argument template whose placeholders and braces are checked
    (the build's arguments and environment; a smoke command is run as written, braces and all)."""
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise RecipeError(f"{where} must be a list of strings")
    for item in value if templates else ():
        try:
            placeholders = template_placeholders(item)
        except TemplateError as exc:
            raise RecipeError(f"{where}: {exc} in {item[:80]!r}") from None
        for placeholder in placeholders:
            if placeholder not in TEMPLATE_NAMES:
                raise RecipeError(
                    f"{where}: unknown placeholder {{{placeholder}}}",
                    hint=f"allowed: {', '.join(sorted(TEMPLATE_NAMES))}",
                )
    return tuple(value)


def _text(table: dict[str, Any], key: str, where: str, *, required: bool = True) -> str:
    value = table.get(key, None if required else "")
    if not isinstance(value, str):
        raise RecipeError(f"{where}: '{key}' must be a string")
    if has_control_characters(value):  # it is shown on users' terminals (search, info)
        raise RecipeError(f"{where}: '{key}' holds control characters")
    return value


def _parse_version(entry: Any, where: str) -> SourceVersion:
    if not isinstance(entry, dict):
        raise RecipeError(f"{where} must be a table")
    _check_keys(entry, {"version", "sha256", "urls", "mirrors", "strip_components"}, where)
    version = _text(entry, "version", where)
    Version(version)
    sha256 = _text(entry, "sha256", where)
    if not _SHA256.fullmatch(sha256):
        raise RecipeError(f"{where}: sha256 must be 64 lower-case hex digits")
    urls = _strings(entry.get("urls", []), f"{where}.urls")
    mirrors = _strings(entry.get("mirrors", []), f"{where}.mirrors")
    if not urls + mirrors:
        raise RecipeError(f"{where}: give at least one URL or mirror")
    for url in urls + mirrors:
        if not url.startswith(_URL_SCHEMES):
            raise RecipeError(f"{where}: URL {url!r} must start with http://, https:// or mirror://")
    strip = entry.get("strip_components", 1)
    if not isinstance(strip, int) or not 0 <= strip <= 3:
        raise RecipeError(f"{where}: strip_components must be 0 to 3")
    return SourceVersion(version, sha256, urls, mirrors, strip)


def _parse_build(table: Any) -> BuildInstructions:
    if not isinstance(table, dict):
        raise RecipeError("[build] is missing")
    allowed = {"system", "configure_args", "make_args", "install_args", "steps", "subdir", "env", "tools"}
    _check_keys(table, allowed, "[build]")
    system = _text(table, "system", "[build]")
    if system not in BUILD_SYSTEMS:
        raise RecipeError(f"[build]: unknown system {system!r}", hint=f"allowed: {', '.join(BUILD_SYSTEMS)}")
    raw_steps = table.get("steps", [])
    if not isinstance(raw_steps, list):
        raise RecipeError("[build]: steps must be a list of argument lists")
    steps = tuple(_strings(step, f"[build].steps[{i}]") for i, step in enumerate(raw_steps))
    if system == "steps" and not steps:
        raise RecipeError("[build]: system 'steps' needs at least one step")
    if any(not step for step in steps):
        raise RecipeError("[build]: a step must not be empty")
    subdir = _text(table, "subdir", "[build]", required=False)
    if subdir.startswith("/") or ".." in Path(subdir).parts:
        raise RecipeError("[build]: subdir must be a relative path inside the source")
    env = table.get("env", {})
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise RecipeError("[build]: env must be a table of strings")
    for value in env.values():
        _strings([value], "[build].env")
    tools = _strings(table.get("tools", []), "[build].tools", templates=False)
    for tool in tools:
        if tool not in TOOL_NAMES:
            raise RecipeError(f"[build].tools: unknown tool {tool!r}", hint=f"allowed: {', '.join(sorted(TOOL_NAMES))}")
    return BuildInstructions(
        system=system,
        configure_args=_strings(table.get("configure_args", []), "[build].configure_args"),
        make_args=_strings(table.get("make_args", []), "[build].make_args"),
        install_args=_strings(table.get("install_args", []), "[build].install_args"),
        steps=steps,
        subdir=subdir,
        env=tuple(sorted(env.items())),
        tools=tuple(sorted(set(tools))),
    )


def _parse_variant(name: str, table: Any) -> OptionSpec:
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
    args = {str(key): _strings(value, f"{where}.args.{key}") for key, value in raw_args.items()}
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


def parse_recipe(text: str, *, source: str = "recipe") -> Recipe:
    """Parse and validate a recipe; every error names the table and key that is wrong."""
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
    }
    _check_keys(data, allowed, source)
    name = validate_name(_text(data, "name", source))
    raw_versions = data.get("versions")
    if not isinstance(raw_versions, list) or not raw_versions:
        raise RecipeError(f"{source}: at least one [[versions]] entry is needed")
    versions = tuple(_parse_version(entry, f"[[versions]] #{i + 1}") for i, entry in enumerate(raw_versions))
    if len({Version(v.version) for v in versions}) != len(versions):
        raise RecipeError(f"{source}: a version is listed twice")
    raw_variants = data.get("variants", {})
    if not isinstance(raw_variants, dict):
        raise RecipeError(f"{source}: [variants] must be a table")
    variants = {vname: _parse_variant(vname, table) for vname, table in sorted(raw_variants.items())}
    deps = data.get("dependencies", {})
    if not isinstance(deps, dict):
        raise RecipeError(f"{source}: [dependencies] must be a table")
    _check_keys(deps, {"build", "runtime"}, "[dependencies]")
    build_deps = tuple(validate_name(d) for d in _strings(deps.get("build", []), "[dependencies].build", templates=False))
    runtime_deps = tuple(validate_name(d) for d in _strings(deps.get("runtime", []), "[dependencies].runtime", templates=False))
    if name in build_deps + runtime_deps:
        raise RecipeError(f"{source}: {name} depends on itself")
    smoke = data.get("smoke", {})
    if not isinstance(smoke, dict):
        raise RecipeError(f"{source}: [smoke] must be a table")
    _check_keys(smoke, {"command", "expect"}, "[smoke]")
    return Recipe(
        name=name,
        summary=_text(data, "summary", source, required=False),
        homepage=_text(data, "homepage", source, required=False),
        license=_text(data, "license", source, required=False),
        versions=versions,
        build=_parse_build(data.get("build")),
        variants=variants,
        build_dependencies=build_deps,
        runtime_dependencies=runtime_deps,
        smoke_command=_strings(smoke.get("command", []), "[smoke].command", templates=False),
        smoke_expect=_text(smoke, "expect", "[smoke]", required=False),
    )


def load_recipe(path: Path) -> Recipe:
    recipe = parse_recipe(path.read_text(encoding="utf-8"), source=path.name)
    if path.stem != recipe.name:
        raise RecipeError(f"{path.name}: file name must be the package name ({recipe.name}.toml)")
    return recipe
