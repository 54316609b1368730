"""Debian's source catalog as pkgc recipes: parse apt's `Sources` index and generate a recipe per source package.

Pure code, no network and no file access: the farm fetches the index through apt (whose signature check on the
signed `InRelease` is what makes the index's sha256 sums trustworthy) and hands its text here. Every field that
reaches a recipe is validated like a curated recipe's: names through `validate_name`, versions through `Version`,
file names as plain names, digests as 64 hex digits, pool directories as relative paths without `..`.

The same module derives the `deb-src` entries apt needs from its `deb` entries (deb822 `.sources` files and
one-line `.list` files), so the farm never writes an archive's host name itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from pkgc.core.errors import UsageError
from pkgc.core.names import validate_name
from pkgc.core.recipe import BuildInstructions, PatchSeries, Recipe, SourceVersion
from pkgc.core.text import has_control_characters
from pkgc.core.toolchain import ToolchainDefinition
from pkgc.core.versions import MAX_VERSION_LENGTH, Version

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+~_-]*$")
_DIRECTORY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+~_/-]*$")
# tarfile (Python 3.11) reads these; a .tar.zst orig tarball cannot be unpacked by the worker yet.
_TARBALL_SUFFIXES = (".tar.gz", ".tar.xz", ".tar.bz2", ".tgz", ".tar")
MAX_SUMMARY_LENGTH = 200
GENERATED_MARK = "\x00generated:"  # the prefix of a generated recipe's identity (no TOML text holds a NUL)

# Build-Depends that the platform provides or that only Debian's own packaging needs: dropped, never dependencies.
# Test harnesses count as packaging: the farm does not run upstream test suites (a smoke test checks the result),
# and autopkgtest or a virtual X server would pull a large closure into every build that names them. So does
# bash-completion: builds ask it (pkg-config) only where completion scripts go, and install them under the prefix's
# share/bash-completion without it (datamash, jo). And ca-certificates: the system's CA store, data that the TLS
# libraries read at run time from /etc/ssl (recipes/openssl.toml), not something to build (curl names it).
_PACKAGING = re.compile(
    r"^(debhelper(-compat)?|dh-.*|dpkg-dev|dpkg|quilt|cdbs|build-essential|fakeroot|lintian|po-debconf|"
    r"debconf|lsb-release|chrpath|help2man|devscripts|gem2deb|javahelper|gnome-pkg-tools|pkg-kde-tools|"
    r"autopkgtest|xvfb|xauth|xfonts-base|valgrind|locales|locales-all|bash-completion|ca-certificates)$"
)
# Names that mean a platform tool even though no toolchain entry lists them verbatim.
_TOOL_ALIASES = {
    "pkgconf": "", "pkg-config": "", "autotools-dev": "autotools", "dh-autoreconf": "autotools",
    "python3-dev": "python", "python3-all": "python", "python3-all-dev": "python", "python3-setuptools": "python",
    "libperl-dev": "perl", "gettext-base": "gettext", "ninja-build": "ninja",
}  # fmt: skip


# Binaries of language ecosystems the platform does not have (their interpreters and module trees are not in the
# toolchain): a recipe cannot use them, and mapping them would pull whole ecosystems in as dependencies.
_FOREIGN = re.compile(
    r"^(python3?-.+|pybuild-.+|lib.+-perl|ruby-.+|ruby|node-.+|nodejs|golang-.+|librust-.+|cargo|rustc|libghc-.+|ghc.*|haskell-.+|"
    r"elpa-.+|emacs.*|lib.+-java|default-jdk.*|openjdk-.+|maven-.+|ant|gradle|lib.+-ocaml-dev|ocaml.*|r-cran-.+|"
    r"r-base.*|php.*|lua-.+|tcl-.+|libtcl.+|fp-.+|fpc|gnat.*|gfortran.*|mono-.+|cli-.+|dh-.+|sphinx-.+|"
    r"texlive.*|doxygen.*|graphviz|xsltproc|docbook.*|xmlto|asciidoc.*|pandoc|ronn|scdoc|gtk-doc-tools)$"
)
# Sources that build the platform's own tools and libraries: a dependency on one of their binaries (libltdl-dev,
# libfl-dev, libpython3.11-dev, ...) is that tool ("" for the base toolchain), never a build of the source.
_PLATFORM_SOURCES = (
    (re.compile(r"^(gcc-\d+|gcc-defaults|glibc|binutils|make-dfsg|pkgconf|coreutils|bash|dash|sed|grep|mawk|findutils|"
                r"diffutils|tar|gzip|bzip2|xz-utils|patch|file|m4|linux)$"), ""),
    (re.compile(r"^(python3-defaults|python3\.\d+)$"), "python"),
    (re.compile(r"^perl$"), "perl"),
    (re.compile(r"^(autoconf|automake-1\.\d+|libtool|gettext)$"), "autotools"),
    (re.compile(r"^(bison|flex|texinfo|cmake|meson|ninja-build)$"), ""),
)  # fmt: skip
_SOURCE_TOOL = {"bison": "bison", "flex": "flex", "texinfo": "texinfo", "cmake": "cmake", "meson": "meson",
                "ninja-build": "ninja", "gettext": "gettext"}  # fmt: skip


def platform_tool_of_source(source: str) -> str | None:
    """The platform tool a source package's binaries stand for ("" for the base toolchain); None: not the
    platform's, a catalog package like any other."""
    if source in _SOURCE_TOOL:
        return _SOURCE_TOOL[source]
    for pattern, tool in _PLATFORM_SOURCES:
        if pattern.match(source):
            return tool
    return None


class DebianIndexError(UsageError):
    code = "invalid_debian_index"


@dataclass(frozen=True)
class DebianFile:
    """One file of a source package, as the index names it (plain file name, sha256, size)."""

    name: str
    sha256: str
    size: int


@dataclass(frozen=True)
class SourcePackage:
    """One stanza of the Sources index, validated: what a generated recipe and the catalog need."""

    name: str
    debian_version: str  # as Debian writes it: [epoch:]upstream[-revision]
    version: str  # the upstream version, as pkgc's Version takes it
    format: str
    section: str
    homepage: str
    directory: str  # the pool directory, relative to the archive's base
    orig: DebianFile | None  # the upstream tarball (3.0 (quilt), 1.0 with an orig), or the native tarball
    debian: DebianFile | None  # the Debian tarball (3.0 (quilt)): patches in debian/patches/series
    binaries: tuple[str, ...]
    build_depends: tuple[str, ...]  # raw relations of Build-Depends and Build-Depends-Arch, one per comma group

    @property
    def summary(self) -> str:
        """Sources has no Description: say what the package is and which binaries it builds (searchable)."""
        binaries = ", ".join(self.binaries)
        text = f"Debian source package ({self.section or 'no section'}); builds {binaries or 'nothing'}"
        return text if len(text) <= MAX_SUMMARY_LENGTH else text[: MAX_SUMMARY_LENGTH - 3] + "..."


def parse_stanzas(text: str) -> Iterator[dict[str, str]]:
    """The deb822 paragraphs of `text`, each a dict of field → value (continuation lines joined with newlines)."""
    fields: dict[str, str] = {}
    current = ""
    for line in text.splitlines():
        if not line.strip():
            if fields:
                yield fields
            fields, current = {}, ""
            continue
        if line[0] in " \t":
            if current:
                fields[current] += "\n" + line.strip()
            continue
        if line.startswith("#"):
            continue
        key, sep, value = line.partition(":")
        if not sep:
            continue
        current = key.strip()
        fields[current] = value.strip()
    if fields:
        yield fields


def select_stanzas(text: str, names: Iterable[str]) -> str:
    """The paragraphs of a Sources index whose Package is one of `names`, as they are (a test fixture's excerpt)."""
    wanted = set(names)
    chosen = []
    for paragraph in re.split(r"\n\s*\n", text):
        match = re.search(r"^Package:\s*(\S+)\s*$", paragraph, re.M)
        if match and match.group(1) in wanted:
            chosen.append(paragraph.strip("\n"))
    return "\n\n".join(chosen) + "\n" if chosen else ""


def upstream_version(debian_version: str) -> str:
    """The upstream part of a Debian version: no epoch, no Debian revision (after the last '-')."""
    version = debian_version.partition(":")[2] if ":" in debian_version else debian_version
    if "-" in version:
        version = version.rsplit("-", 1)[0]
    if not version or len(version) > MAX_VERSION_LENGTH:
        raise DebianIndexError(f"version {debian_version[:80]!r} has no usable upstream part")
    Version(version)  # raises UsageError for what pkgc cannot order
    return version


def _files(stanza: Mapping[str, str]) -> list[DebianFile]:
    found = []
    for line in stanza.get("Checksums-Sha256", "").splitlines():
        parts = line.split()
        if len(parts) != 3:
            continue
        sha, size, name = parts
        if _SHA256.fullmatch(sha) and size.isdigit() and _FILE_NAME.fullmatch(name) and len(name) <= 200:
            found.append(DebianFile(name, sha, int(size)))
    return found


def _relations(stanza: Mapping[str, str]) -> tuple[str, ...]:
    joined = ", ".join(v for k in ("Build-Depends", "Build-Depends-Arch") if (v := stanza.get(k, "").strip()))
    return tuple(group.strip() for group in joined.replace("\n", " ").split(",") if group.strip())


def _section(stanza: Mapping[str, str]) -> str:
    """The section that says most about the package: the index's Section is often just "misc", while Package-List
    gives each binary's (libs, utils, net, ...); the first non-documentation binary's wins, then Section."""
    found = []
    for line in stanza.get("Package-List", "").splitlines():
        parts = line.split()
        if len(parts) >= 3 and not parts[0].endswith("-udeb"):
            candidate = parts[2].rsplit("/", 1)[-1]
            if re.fullmatch(r"[a-z0-9+.-]{1,40}", candidate) and candidate not in ("doc", "misc", "oldlibs", "debug"):
                found.append(candidate)
    if found:  # a library's own section before its development files'
        return next((c for c in found if c != "libdevel"), found[0])
    section = stanza.get("Section", "").strip().rsplit("/", 1)[-1]
    return section if re.fullmatch(r"[a-z0-9+.-]{1,40}", section) else ""


def parse_source(stanza: Mapping[str, str]) -> SourcePackage:
    """One stanza as a SourcePackage; raises DebianIndexError naming the package and the field that is unusable."""
    raw_name = stanza.get("Package", "")
    try:
        name = validate_name(raw_name)
    except UsageError:
        raise DebianIndexError(f"source package name {raw_name[:80]!r} is not a pkgc name") from None
    debian_version = stanza.get("Version", "")
    try:
        version = upstream_version(debian_version)
    except UsageError as exc:
        raise DebianIndexError(f"{name}: {exc.message}") from None
    directory = stanza.get("Directory", "")
    if not _DIRECTORY.fullmatch(directory) or ".." in directory.split("/") or len(directory) > 300:
        raise DebianIndexError(f"{name}: Directory {directory[:80]!r} is not a relative pool path")
    files = _files(stanza)
    orig = next((f for f in files if re.search(r"\.orig\.tar\.[a-z0-9]+$", f.name)), None)
    debian = next((f for f in files if re.search(r"\.debian\.tar\.[a-z0-9]+$", f.name)), None)
    if orig is None and debian is None:  # a native package: its one tarball is the source
        orig = next((f for f in files if re.search(r"\.tar\.[a-z0-9]+$", f.name)), None)
    homepage = stanza.get("Homepage", "").strip()
    if has_control_characters(homepage) or not homepage.startswith(("http://", "https://")) or len(homepage) > 500:
        homepage = ""
    section = _section(stanza)
    binaries = tuple(b for b in (part.strip() for part in stanza.get("Binary", "").replace("\n", " ").split(",")) if b)
    return SourcePackage(
        name=name,
        debian_version=debian_version,
        version=version,
        format=stanza.get("Format", "").strip(),
        section=section,
        homepage=homepage,
        directory=directory,
        orig=orig,
        debian=debian,
        binaries=tuple(b for b in binaries if re.fullmatch(r"[a-z0-9][a-z0-9.+-]{0,99}", b)),
        build_depends=_relations(stanza),
    )


@dataclass(frozen=True)
class ParsedIndex:
    """Every usable source package of an index (the newest version of each name) and the stanzas skipped."""

    packages: dict[str, SourcePackage]
    skipped: list[str] = field(default_factory=list)  # one line each: package and reason

    def binary_sources(self) -> dict[str, str]:
        """Binary package name → the source package that builds it."""
        return {binary: pkg.name for pkg in self.packages.values() for binary in pkg.binaries}


def parse_index(text: str) -> ParsedIndex:
    """Parse a whole Sources index; a stanza pkgc cannot use is skipped with its reason, never fatal."""
    packages: dict[str, SourcePackage] = {}
    skipped: list[str] = []
    for stanza in parse_stanzas(text):
        try:
            pkg = parse_source(stanza)
        except DebianIndexError as exc:
            skipped.append(exc.message)
            continue
        old = packages.get(pkg.name)
        if old is None or Version(pkg.version) >= Version(old.version):
            packages[pkg.name] = pkg
    return ParsedIndex(packages, skipped)


# -- Build-Depends → dependencies and tools ----------------------------------------------------------------------
@dataclass(frozen=True)
class MappedDepends:
    """What a package's Build-Depends became: catalog packages (build, runtime), platform tools, and the relations
    that were dropped (packaging helpers, the platform's own packages, names nothing provides), each noted."""

    build: tuple[str, ...]
    runtime: tuple[str, ...]
    tools: tuple[str, ...]
    dropped: tuple[str, ...]


_RELATION = re.compile(r"^\s*([a-z0-9][a-z0-9.+-]*)(?::[a-z0-9-]+)?\s*(\([^)]*\))?\s*(\[[^\]]*\])?\s*(<.*>)?\s*$")


def _applies_to(arch_list: str | None, arch: str) -> bool:
    if not arch_list:
        return True
    items = arch_list.strip("[] ").split()
    negated = [i[1:] for i in items if i.startswith("!")]
    if negated:
        return arch not in negated and not any(i.endswith("-" + arch) or i == "any-" + arch for i in negated)
    return any(i in (arch, "any", "linux-any", "any-" + arch, "linux-" + arch) for i in items)


def map_build_depends(
    package: SourcePackage,
    source_of: Callable[[str], str | None],
    toolchain: ToolchainDefinition,
    *,
    arch: str = "amd64",
) -> MappedDepends:
    """Map Build-Depends to pkgc: a platform tool (toolchain data), nothing (the platform's own packages, Debian's
    packaging helpers, relations limited to a build profile such as <!nocheck>), or the catalog package whose
    Binary list holds the name (a `lib*-dev` binary's source is also needed at run time: its shared library)."""
    tool_of = {pkg: tool for tool, pkgs in toolchain.tools.items() for pkg in pkgs}
    base = set(toolchain.toolchain)
    build: list[str] = []
    runtime: list[str] = []
    tools: list[str] = []
    dropped: list[str] = []
    for group in package.build_depends:
        alternatives = [a for a in group.split("|") if a.strip()]
        mapped = False
        notes: list[str] = []
        for alternative in alternatives:
            match = _RELATION.match(alternative)
            if match is None:
                notes.append(alternative.strip()[:60])
                continue
            name, _, arch_list, profiles = match.groups()
            if not _applies_to(arch_list, arch):
                mapped = True  # not for this architecture: nothing to do
                break
            if profiles:
                notes.append(f"{name} (build profile)")
                mapped = True  # needed only under a profile (tests, docs): the farm builds without it
                break
            if name in base or name.startswith(("gcc-", "g++-", "libc6-dev", "libstdc++-")):
                mapped = True
                break
            if name in tool_of or name in _TOOL_ALIASES:
                tool = tool_of.get(name) or _TOOL_ALIASES[name]
                if tool:
                    tools.append(tool)
                mapped = True
                break
            if _PACKAGING.match(name):
                notes.append(f"{name} (Debian packaging)")
                mapped = True
                break
            if _FOREIGN.match(name):
                notes.append(f"{name} (not on the platform)")
                mapped = True
                break
            source = source_of(name)
            if source is None or source == package.name:
                notes.append(name if source is None else f"{name} (its own binary)")
                continue
            platform_tool = platform_tool_of_source(source)
            if platform_tool is not None:
                if platform_tool:
                    tools.append(platform_tool)
                mapped = True
                break
            (runtime if name.startswith("lib") and name.endswith("-dev") else build).append(source)
            mapped = True
            break
        if not mapped:
            dropped.extend(notes or [group.strip()[:60]])
        elif notes and notes[-1].endswith(("(build profile)", "(Debian packaging)", "(not on the platform)")):
            dropped.append(notes[-1])
    runtime_set = dict.fromkeys(runtime)
    return MappedDepends(
        build=tuple(b for b in dict.fromkeys(build) if b not in runtime_set),
        runtime=tuple(runtime_set),
        tools=tuple(sorted(set(tools))),
        dropped=tuple(dict.fromkeys(dropped)),
    )


def without_cycles(
    name: str, dependencies: tuple[str, ...], dependencies_of: Callable[[str], tuple[str, ...]], limit: int = 3000
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(kept, dropped): the dependencies of `name` from which `name` cannot be reached again, and the others.

    Debian's build graph has cycles (a library's tests need a tool that needs the library); pkgc's plan must not.
    Each package drops exactly the direct dependencies that lead back to it in the whole, unpruned graph, so the
    pruned graph (a subgraph) has no cycle whatever order recipes are generated in. A closure larger than `limit`
    counts as leading back: such a dependency is dropped (noted), not followed for seconds.
    """
    kept: list[str] = []
    dropped: list[str] = []
    for dependency in dependencies:
        seen = {dependency}
        frontier = [dependency]
        reaches = False
        while frontier and not reaches:
            current = frontier.pop()
            for following in dependencies_of(current):
                if following == name or len(seen) > limit:
                    reaches = True
                    break
                if following not in seen:
                    seen.add(following)
                    frontier.append(following)
        (dropped if reaches else kept).append(dependency)
    return tuple(kept), tuple(dropped)


# -- recipes -----------------------------------------------------------------------------------------------------
class NotGeneratable(DebianIndexError):
    """A source package pkgc cannot make a recipe of (no tarball, a compression the worker cannot unpack)."""


def _tarball_ok(file: DebianFile) -> bool:
    return file.name.endswith(_TARBALL_SUFFIXES)


def generate_recipe(
    package: SourcePackage,
    source_of: Callable[[str], str | None],
    toolchain: ToolchainDefinition,
    dependencies_of: Callable[[str], tuple[str, ...]] | None = None,
) -> tuple[Recipe, MappedDepends]:
    """The generated recipe of `package`: its orig tarball (or native tarball) through `mirror://debian/`, the
    Debian patch series (3.0 (quilt)) as a PatchSeries, the build system detected by the worker (`auto`), and
    Build-Depends mapped to dependencies and tools. The sha256 sums come from the signed index. With
    `dependencies_of` (another package's mapped dependencies), the dependencies that lead back to this package
    are dropped (`without_cycles`) and noted in the returned mapping."""
    if package.orig is None:
        raise NotGeneratable(f"{package.name}: the index names no source tarball (format {package.format or '?'})")
    if not _tarball_ok(package.orig):
        raise NotGeneratable(f"{package.name}: {package.orig.name} is in a compression the worker cannot unpack")
    series = None
    if package.debian is not None and package.format.startswith("3.0 (quilt)"):
        if not _tarball_ok(package.debian):
            raise NotGeneratable(f"{package.name}: {package.debian.name} cannot be unpacked by the worker")
        series = PatchSeries(
            kind="debian",
            sha256=package.debian.sha256,
            mirrors=(f"mirror://debian/{package.directory}/{package.debian.name}",),
        )
    mapped = map_build_depends(package, source_of, toolchain)
    if dependencies_of is not None:
        build, cut_build = without_cycles(package.name, mapped.build, dependencies_of)
        runtime, cut_runtime = without_cycles(package.name, mapped.runtime, dependencies_of)
        cut = tuple(f"{name} (a dependency cycle)" for name in cut_build + cut_runtime)
        mapped = MappedDepends(build, runtime, mapped.tools, mapped.dropped + cut)
    recipe = Recipe(
        name=package.name,
        summary=package.summary,
        homepage=package.homepage,
        license="",
        versions=(
            SourceVersion(
                version=package.version,
                sha256=package.orig.sha256,
                urls=(),
                mirrors=(f"mirror://debian/{package.directory}/{package.orig.name}",),
                series=series,
            ),
        ),
        build=BuildInstructions(system="auto", tools=mapped.tools),
        build_dependencies=mapped.build,
        runtime_dependencies=mapped.runtime,
        origin="generated",
    )
    return recipe, mapped


# -- apt's deb-src entries ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AptEntry:
    """One `deb` entry of apt's configuration, as a deb-src entry would repeat it."""

    uri: str
    suite: str
    components: tuple[str, ...]
    signed_by: str = ""

    def one_line(self) -> str:
        """The deb-src entry in apt's one-line format (its options keep the entry's Signed-By)."""
        options = f"[signed-by={self.signed_by}] " if self.signed_by else ""
        return f"deb-src {options}{self.uri} {self.suite} {' '.join(self.components)}".rstrip()


_SAFE_FIELD = re.compile(r"^[A-Za-z0-9:/._~+%@=-]+$")


def deb_src_entries(files: Iterable[tuple[str, str]], *, base_suites_only: bool = True) -> list[AptEntry]:
    """The deb-src entries matching apt's enabled `deb` entries, from (file name, text) pairs of its sources files
    (`*.sources` in deb822, anything else one-line). Only http(s) and file URIs with plain fields are kept: they
    are written into a sources file apt reads, so nothing may inject another entry or option.

    With `base_suites_only` (the default), suites such as `bookworm-updates` or `bookworm-security` are left out:
    a generated recipe fetches through `mirror://debian/`, which resolves against the base suites' archives only
    (pkgc/worker/fetch.py), so a package listed from another archive could not be fetched."""
    entries: list[AptEntry] = []
    for filename, text in files:
        if filename.endswith(".sources"):
            for stanza in parse_stanzas(text):
                if stanza.get("Enabled", "yes").strip().lower() == "no":
                    continue
                if "deb" not in stanza.get("Types", "").split():
                    continue
                signed_by = stanza.get("Signed-By", "").strip()
                if "\n" in signed_by:  # an inline key block: apt cannot take it in a one-line option
                    signed_by = ""
                for uri in stanza.get("URIs", "").split():
                    for suite in stanza.get("Suites", "").split():
                        entries.append(AptEntry(uri, suite, tuple(stanza.get("Components", "").split()), signed_by))
        else:
            for line in text.splitlines():
                line = line.split("#", 1)[0].strip()
                match = re.match(r"^deb\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)\s*(.*)$", line)
                if match is None:
                    continue
                options = dict(opt.split("=", 1) for opt in (match.group(1) or "").split() if "=" in opt)
                entries.append(
                    AptEntry(
                        match.group(2), match.group(3), tuple(match.group(4).split()), options.get("signed-by", "")
                    )
                )
    kept: list[AptEntry] = []
    for entry in entries:
        fields = [entry.uri, entry.suite, *entry.components] + ([entry.signed_by] if entry.signed_by else [])
        if not entry.uri.startswith(("http://", "https://", "file:/")):
            continue
        if base_suites_only and ("-" in entry.suite or "/" in entry.suite):
            continue
        if all(_SAFE_FIELD.fullmatch(f) for f in fields) and entry not in kept:
            kept.append(entry)
    return kept
