"""Build specs and build keys.

A BuildSpec is everything a worker needs to produce one artifact, and nothing else: it travels as the job's
payload, so a worker never needs the catalog. Its key is a hash of everything that can change the binary (the
recipe's build-relevant content, version, source checksum, normalised options, platform, builder ABI and the keys
of its dependencies) and of nothing that cannot (summaries, download URLs), so that equal requests meet at the
same artifact and any real difference gets its own.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pkgc.core.errors import UsageError
from pkgc.core.options import NormalisedOptions, OptionSpec, OptionValue, normalise_options
from pkgc.core.platform import Platform
from pkgc.core.recipe import (
    BuildInstructions,
    PatchFile,
    PatchSeries,
    Recipe,
    SmokeTest,
    SourceVersion,
    source_patches_dict,
)
from pkgc.core.relocation import PLACEHOLDER
from pkgc.core.toolchain import ToolchainDefinition, toolchain_for_platform

# Bump when the worker changes how a spec becomes a binary (flags, placeholder, packing): old keys must not match.
# 2: hermetic builds (the build sees only its toolchain's packages and its dependencies), the NEEDED check.
BUILDER_ABI = 2
# /2: the platform hashes as os, arch, libc family and libc version (the version was part of the libc name before).
KEY_SCHEMA = "pkgc-build-key/2"


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def compute_build_key(
    *,
    recipe_content: Mapping[str, Any],
    version: str,
    source_sha256: str,
    options: NormalisedOptions,
    platform: Platform,
    dependency_keys: Mapping[str, str],
    toolchain: Mapping[str, Any],
) -> str:
    """The key of one build. `toolchain` is the build platform's toolchain identity (name and version): what the
    build can see besides its source and its dependencies."""
    document = {
        "schema": KEY_SCHEMA,
        "builder_abi": BUILDER_ABI,
        "placeholder": PLACEHOLDER,
        "recipe": recipe_content,
        "version": version,
        "source_sha256": source_sha256,
        "options": options.as_dict(),
        "platform": platform.as_dict(),
        "toolchain": dict(toolchain),
        "dependencies": dict(sorted(dependency_keys.items())),
    }
    return hashlib.sha256(canonical_json(document).encode()).hexdigest()


@dataclass(frozen=True)
class BuildSpec:
    name: str
    version: str
    source: SourceVersion
    build: BuildInstructions
    variant_args: tuple[str, ...]
    options: NormalisedOptions
    platform: Platform
    recipe_content: Mapping[str, Any]
    dependencies: tuple[tuple[str, str], ...]  # (name, build key) of build and runtime dependencies
    runtime_dependencies: tuple[str, ...]
    smoke_command: tuple[str, ...]
    smoke_expect: str
    key: str
    toolchain: Mapping[str, Any]  # the build platform's toolchain identity ({"name", "version"}), in the key
    smoke_tests: tuple[SmokeTest, ...] = ()  # every smoke test (smoke_command/expect are the first one's)

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "source": {
                "version": self.source.version,
                "sha256": self.source.sha256,
                "urls": list(self.source.urls),
                "mirrors": list(self.source.mirrors),
                "strip_components": self.source.strip_components,
                **_patches_json(self.source),
            },
            "build": self.build.as_dict(),
            "variant_args": list(self.variant_args),
            "options": self.options.as_dict(),
            "platform": self.platform.as_dict(),
            "recipe_content": self.recipe_content,
            "dependencies": [list(pair) for pair in self.dependencies],
            "runtime_dependencies": list(self.runtime_dependencies),
            "smoke_command": list(self.smoke_command),
            "smoke_expect": self.smoke_expect,
            "toolchain": dict(self.toolchain),
            "key": self.key,
            **({"smoke_tests": [t.as_dict() for t in self.smoke_tests]} if self.smoke_tests else {}),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BuildSpec:
        """Rebuild a spec from a job payload and check that its key still matches its content."""
        source = data["source"]
        build = data["build"]
        spec = cls(
            name=data["name"],
            version=data["version"],
            source=SourceVersion(
                source["version"],
                source["sha256"],
                tuple(source["urls"]),
                tuple(source["mirrors"]),
                int(source["strip_components"]),
                tuple(
                    PatchFile(str(p["name"]), str(p["sha256"]), int(p["strip"]), str(p["text"]))
                    for p in source.get("patches", ())
                ),
                _series_from_json(source.get("series")),
            ),
            build=BuildInstructions(
                system=build["system"],
                configure_args=tuple(build["configure_args"]),
                make_args=tuple(build["make_args"]),
                install_args=tuple(build["install_args"]),
                steps=tuple(tuple(step) for step in build["steps"]),
                subdir=build["subdir"],
                env=tuple(sorted(build["env"].items())),
                bootstrap=tuple(tuple(step) for step in build.get("bootstrap", ())),
                post_install=tuple(tuple(step) for step in build.get("post_install", ())),
                tools=tuple(build.get("tools", ())),
            ),
            variant_args=tuple(data["variant_args"]),
            options=NormalisedOptions(tuple(sorted(data["options"].items()))),
            platform=Platform.from_dict(data["platform"]),
            recipe_content=data["recipe_content"],
            dependencies=tuple((name, key) for name, key in data["dependencies"]),
            runtime_dependencies=tuple(data["runtime_dependencies"]),
            smoke_command=tuple(data["smoke_command"]),
            smoke_expect=data["smoke_expect"],
            key=data["key"],
            smoke_tests=tuple(SmokeTest.from_dict(t) for t in data.get("smoke_tests", ())),
            toolchain=_toolchain_identity(data["toolchain"]),
        )
        _check_consistent(spec)
        expected = compute_build_key(
            recipe_content=spec.recipe_content,
            version=spec.version,
            source_sha256=spec.source.sha256,
            options=spec.options,
            platform=spec.platform,
            dependency_keys=dict(spec.dependencies),
            toolchain=spec.toolchain,
        )
        if expected != spec.key:
            raise UsageError(f"build spec for {spec.label} does not match its key")
        return spec


def _patches_json(source: SourceVersion) -> dict[str, Any]:
    """A version's patch files (their texts too: a worker builds from the payload alone) and series, when set."""
    table: dict[str, Any] = {}
    if source.patches:
        table["patches"] = [
            {"name": p.name, "sha256": p.sha256, "strip": p.strip, "text": p.text} for p in source.patches
        ]
    if source.series is not None:
        series = source.series
        table["series"] = {
            "kind": series.kind, "sha256": series.sha256, "urls": list(series.urls), "mirrors": list(series.mirrors)
        }
    return table


def _series_from_json(data: Mapping[str, Any] | None) -> PatchSeries | None:
    if data is None:
        return None
    return PatchSeries(str(data["kind"]), str(data["sha256"]), tuple(data["urls"]), tuple(data["mirrors"]))
def _toolchain_identity(value: Any) -> dict[str, Any]:
    """A payload's toolchain identity, checked: a name of letters, digits and dashes and a version number."""
    if not isinstance(value, Mapping) or set(value) != {"name", "version"}:
        raise ValueError("toolchain must be {name, version}")
    name, version = value["name"], value["version"]
    if not isinstance(name, str) or not name or not name.replace("-", "").isalnum() or len(name) > 64:
        raise ValueError(f"invalid toolchain name {name!r}")
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise ValueError(f"invalid toolchain version {version!r}")
    return {"name": name, "version": version}


def _check_consistent(spec: BuildSpec) -> None:
    """The fields a worker builds from must be the ones the key was computed over, and options must be valid."""
    content = spec.recipe_content
    variants = {
        name: OptionSpec(
            name,
            (decl["default"] == "true") if not decl["values"] else decl["default"],
            tuple(decl["values"]),
            args={k: tuple(v) for k, v in decl["args"].items()},
        )
        for name, decl in content["variants"].items()
    }
    options = normalise_options(spec.options.as_dict(), variants, spec.platform.arch, package=spec.name)
    expected_args = tuple(
        arg for name, decl in sorted(variants.items()) for arg in decl.args.get(options.get(name), ())
    )
    if (
        content["name"] != spec.name
        or content["build"] != spec.build.as_dict()
        or options != spec.options
        or expected_args != spec.variant_args
        or tuple(content["runtime_dependencies"]) != spec.runtime_dependencies
        or {k: content[k] for k in ("patches", "series") if k in content} != source_patches_dict(spec.source)
        or any(hashlib.sha256(p.text.encode()).hexdigest() != p.sha256 for p in spec.source.patches)
    ):
        raise UsageError(f"build spec for {spec.label} does not match its key")


@dataclass(frozen=True)
class PackageRequest:
    name: str
    version: str | None = None
    options: Mapping[str, OptionValue] | None = None
    # The global options the dependencies are built with; None: the package's own global options.
    dependency_options: Mapping[str, OptionValue] | None = None


def _variant_args(recipe: Recipe, options: NormalisedOptions) -> tuple[str, ...]:
    args: list[str] = []
    for name, spec in sorted(recipe.variants.items()):
        args.extend(spec.args.get(options.get(name), ()))
    return tuple(args)


def plan_builds(
    requests: list[PackageRequest],
    get_recipe: Callable[[str], Recipe],
    platform: Platform,
    toolchain: ToolchainDefinition | None = None,
) -> tuple[list[BuildSpec], list[str]]:
    """Resolve requests and their dependencies into build specs, dependencies first.

    Returns every spec (each key once) and the keys of the specs that were asked for, in request order.
    Dependencies take the requesting package's global options (optimisation, CPU, debug, LTO: a user who asks
    for -O3 on x86-64-v3 wants the libraries too), or the request's `dependency_options` when it gives them (the
    client's per-package settings are for the package alone), and their own variants' defaults; they use their
    newest version. Every build is made with the build platform's toolchain (`toolchain_for_platform` unless given).
    """
    identity = (toolchain or toolchain_for_platform(platform)).identity()
    ordered: dict[str, BuildSpec] = {}
    requested: list[str] = []
    # A package visited once with the same version and options has the same key wherever it appears: without this
    # memo a graph with shared dependencies (a generated recipe's closure from the Debian catalog) is walked once
    # per path, exponentially often. A cycle through a memoised package would have been found at its first visit.
    visited: dict[str, str] = {}

    def visit(
        name: str,
        version: str | None,
        raw_options: Mapping[str, OptionValue],
        trail: tuple[str, ...],
        dependency_options: Mapping[str, OptionValue] | None = None,
    ) -> str:
        if name in trail:
            raise UsageError(f"dependency cycle: {' -> '.join((*trail, name))}")
        memo = canonical_json(
            [name, version, dict(raw_options), None if dependency_options is None else dict(dependency_options)]
        )
        if memo in visited:
            return visited[memo]
        recipe = get_recipe(name)
        source = recipe.version(version)
        options = normalise_options(raw_options, recipe.variants, platform.arch, package=name)
        inherited = options.globals_only()
        if dependency_options is not None:
            label = f"the dependencies of {name}"
            inherited = normalise_options(dependency_options, {}, platform.arch, package=label).globals_only()
        dep_keys = tuple((dep, visit(dep, None, inherited, (*trail, name))) for dep in recipe.dependencies)
        content = recipe.build_relevant(source)
        key = compute_build_key(
            recipe_content=content,
            version=source.version,
            source_sha256=source.sha256,
            options=options,
            platform=platform,
            dependency_keys=dict(dep_keys),
            toolchain=identity,
        )
        if key not in ordered:
            ordered[key] = BuildSpec(
                name=name,
                version=source.version,
                source=source,
                build=recipe.build,
                variant_args=_variant_args(recipe, options),
                options=options,
                platform=platform,
                recipe_content=content,
                dependencies=dep_keys,
                runtime_dependencies=recipe.runtime_dependencies,
                smoke_command=recipe.smoke_command,
                smoke_expect=recipe.smoke_expect,
                key=key,
                smoke_tests=recipe.smoke_tests,
                toolchain=identity,
            )
        visited[memo] = key
        return key

    for request in requests:
        requested.append(visit(request.name, request.version, request.options or {}, (), request.dependency_options))
    return list(ordered.values()), requested
