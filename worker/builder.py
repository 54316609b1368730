"""Turning a BuildSpec into a staged install tree: unpack sources and dependencies, run the build system's steps.

The build installs under the placeholder prefix with DESTDIR staging, so the artifact can later be relocated to any
prefix. Options become CFLAGS, CXXFLAGS and LDFLAGS in one place (`compiler_flags`); recipe arguments are argument
lists with `{placeholders}` filled from values the worker controls.
"""

from __future__ import annotations

import dataclasses
import tarfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

from pkgc.core.buildspec import BuildSpec
from pkgc.core.options import compiler_flags
from pkgc.core.recipe import check_glob_pattern, fill_template, list_placeholder
from pkgc.core.relocation import PLACEHOLDER
from pkgc.worker.detect import NoBuildSystem, detect_in_tree
from pkgc.worker.layout import (
    LayoutError,
    has_install_rule,
    install_listed_files,
    make_standard_dirs,
    merge_into,
    move_games_to_bin,
    prune_empty_dirs,
    remove_empty,
    reroot_system_layout,
    retarget_symlinks,
)
from pkgc.worker.patching import PatchError, PatchStep, check_step, patch_command, unpack_series
from pkgc.worker.sandbox import Sandbox

BUILD_SUBDIR = "_pkgc_build"


class BuildError(Exception):
    pass


def unpack_source(archive: Path, destination: Path, strip_components: int, *, only_one_top: bool = False) -> Path:
    """Extract a source tarball safely (tarfile's data filter) and drop the top directories.

    With `only_one_top` (a generated recipe, which cannot know the tarball's layout), the top directory is dropped
    only when every member lies under one, as dpkg-source does: some upstream tarballs have their files at the top.
    """
    destination.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        every = tar.getmembers()
        if only_one_top and strip_components == 1:
            tops = {Path(member.name).parts[0] for member in every if Path(member.name).parts not in ((), (".",))}
            single = len(tops) == 1 and all(
                len(Path(m.name).parts) > 1 or m.isdir() for m in every if Path(m.name).parts not in ((), (".",))
            )
            strip_components = 1 if single else 0
        members = []
        for member in every:
            parts = Path(member.name).parts
            if len(parts) <= strip_components:
                continue
            member.name = str(Path(*parts[strip_components:]))
            if member.islnk() and member.linkname:
                link_parts = Path(member.linkname).parts
                member.linkname = (
                    str(Path(*link_parts[strip_components:])) if len(link_parts) > strip_components else ""
                )
            members.append(member)
        tar.extractall(destination, members=members, filter="data")
    return destination


def _fill(template: str, values: Mapping[str, str]) -> str:
    """One argument of a recipe with its placeholders filled (the recipe's loader checked them)."""
    return fill_template(template, values)


def expand_glob(pattern: str, srcdir: Path) -> list[str]:
    """`{*glob:PATTERN}`: the sorted paths under `srcdir` that match, relative to it; each must stay inside the
    source (the loader refused absolute patterns and `..`; a symlink out of the tree is refused here)."""
    problem = check_glob_pattern(pattern)
    if problem:
        raise BuildError(f"{{*glob:{pattern}}} is {problem}")
    root = srcdir.resolve()
    found: list[str] = []
    for match in sorted(srcdir.glob(pattern)):
        if not match.resolve().is_relative_to(root):
            raise BuildError(f"{{*glob:{pattern}}} matches {match.relative_to(srcdir)}, which leads outside the source")
        found.append(match.relative_to(srcdir).as_posix())
    if not found:
        raise BuildError(f"{{*glob:{pattern}}} matches nothing in the source")
    return found


def expand_arguments(args: Sequence[str], values: Mapping[str, str], srcdir: Path) -> list[str]:
    """A recipe's argument list filled in: `{placeholders}` replaced, and a whole-argument list placeholder
    (`{*cflags}`, `{*glob:PATTERN}`) replaced by as many arguments as it stands for (none for empty flags)."""
    out: list[str] = []
    for arg in args:
        inner = list_placeholder(arg)
        if inner is None:
            out.append(_fill(arg, values))
        elif inner.startswith("glob:"):
            out.extend(expand_glob(inner.removeprefix("glob:"), srcdir))
        else:
            out.extend(values[inner].split())
    return out


def build_commands(spec: BuildSpec, srcdir: Path, destdir: Path, values: Mapping[str, str]) -> list[list[str]]:
    """The argument lists of every step, in order: the recipe's bootstrap, its build system's steps, then its
    post-install steps."""
    b = spec.build

    def fill(args: Sequence[str]) -> list[str]:
        return expand_arguments(args, values, srcdir)

    return [
        *(fill(step) for step in b.bootstrap),
        *_system_commands(spec, srcdir, destdir, values, fill),
        *(fill(step) for step in b.post_install),
    ]


def _system_commands(
    spec: BuildSpec,
    srcdir: Path,
    destdir: Path,
    values: Mapping[str, str],
    fill: Callable[[Sequence[str]], list[str]],
) -> list[list[str]]:
    """The standard build system's argument lists (or the recipe's own steps)."""
    b = spec.build

    configure_args = fill((*b.configure_args, *spec.variant_args))
    jobs = values["jobs"]
    builddir = str(srcdir / BUILD_SUBDIR)
    if b.system == "autotools":
        return [
            ["./configure", f"--prefix={PLACEHOLDER}", *configure_args],
            ["make", f"-j{jobs}", *fill(b.make_args)],
            ["make", "install", f"DESTDIR={destdir}", *fill(b.install_args)],
        ]
    if b.system == "cmake":
        return [
            [
                "cmake", "-S", str(srcdir), "-B", builddir,
                f"-DCMAKE_INSTALL_PREFIX={PLACEHOLDER}",
                "-DCMAKE_BUILD_TYPE=None",
                f"-DCMAKE_INSTALL_RPATH={PLACEHOLDER}/lib",
                "-DCMAKE_INSTALL_LIBDIR=lib",
                *configure_args,
            ],
            ["cmake", "--build", builddir, "-j", jobs],
            ["cmake", "--install", builddir],
        ]  # fmt: skip
    if b.system == "meson":
        return [
            [
                "meson",
                "setup",
                builddir,
                f"--prefix={PLACEHOLDER}",
                "--libdir=lib",
                "--buildtype=plain",
                *configure_args,
            ],
            ["meson", "compile", "-C", builddir, "-j", jobs],
            ["meson", "install", "-C", builddir, f"--destdir={destdir}"],
        ]
    if b.system == "make":
        return [
            ["make", f"-j{jobs}", *fill(b.make_args), *fill(spec.variant_args)],
            ["make", "install", f"DESTDIR={destdir}", *fill(b.install_args)],
        ]
    if b.system == "steps":
        return [fill(step) for step in b.steps]
    raise BuildError(f"unknown build system {b.system!r}")


WRAPPERS_DIR = "pkgc-wrappers"
# install(1) for generated recipes' Makefiles, which often say `install -o root -g bin`: a build runs as one user, in a
# sandbox that has no other accounts, and an artifact records no ownership (its files are the installing user's), so
# the owner and group are dropped and the rest goes to the real install, as fakeroot lets Debian's builds ignore them.
INSTALL_WITHOUT_OWNER = """#!/bin/sh
# pkgc: install(1) without -o/--owner and -g/--group (see worker/builder.py)
skip=0
for arg in "$@"; do
  shift
  if [ "$skip" = 1 ]; then skip=0; continue; fi
  case $arg in
    -o|-g|--owner|--group) skip=1; continue ;;
    -o?*|-g?*|--owner=*|--group=*) continue ;;
  esac
  set -- "$@" "$arg"
done
exec /usr/bin/install "$@"
"""


def write_wrappers(workdir: Path) -> None:
    """The commands a generated recipe's build finds first on its PATH (see INSTALL_WITHOUT_OWNER)."""
    wrappers = workdir / WRAPPERS_DIR
    wrappers.mkdir(exist_ok=True)
    install = wrappers / "install"
    install.write_text(INSTALL_WITHOUT_OWNER, encoding="utf-8")
    install.chmod(0o755)


def build_environment(spec: BuildSpec, workdir: Path, depsdir: Path | None) -> dict[str, str]:
    flags = compiler_flags(spec.options)
    # Keep the throwaway build directory out of debug info and __FILE__ strings.
    prefix_map = f" -ffile-prefix-map={workdir}=/pkgc-build"
    cppflags = ""
    ldflags = f"-Wl,-rpath,{PLACEHOLDER}/lib {flags['LDFLAGS']}".strip()
    path = "/usr/local/bin:/usr/bin:/bin"
    env = {
        "PATH": path,
        "HOME": str(workdir / "home"),
        "LANG": "C",
        "LC_ALL": "C",
        "SOURCE_DATE_EPOCH": "1",
        "CC": "gcc",
        "CXX": "g++",
        "CFLAGS": flags["CFLAGS"] + prefix_map,
        "CXXFLAGS": flags["CXXFLAGS"] + prefix_map,
    }
    if depsdir is not None:
        cppflags = f"-I{depsdir}/include"
        ldflags = f"-L{depsdir}/lib {ldflags}"
        env["PATH"] = f"{depsdir}/bin:{path}"
        env["PKG_CONFIG_PATH"] = f"{depsdir}/lib/pkgconfig:{depsdir}/share/pkgconfig"
        env["LD_LIBRARY_PATH"] = f"{depsdir}/lib"
        env["CMAKE_PREFIX_PATH"] = str(depsdir)
    env["CPPFLAGS"] = cppflags
    env["LDFLAGS"] = ldflags
    if spec.build.system == "auto":
        # A generated recipe's Makefile may call the compiler without CPPFLAGS or LDFLAGS (sl: `gcc -O -o sl sl.c
        # -lncurses`). gcc and ld also read these, after the command line's own options: the dependencies' headers
        # and libraries are found, and a program linked without any -rpath still finds its libraries in the prefix.
        env["LD_RUN_PATH"] = f"{PLACEHOLDER}/lib"
        env["PATH"] = f"{workdir / WRAPPERS_DIR}:{env['PATH']}"  # install(1) without owner: INSTALL_WITHOUT_OWNER
        if depsdir is not None:
            env["CPATH"] = f"{depsdir}/include"
            env["LIBRARY_PATH"] = f"{depsdir}/lib"
    return env


def apply_patches(
    spec: BuildSpec,
    srcdir: Path,
    workdir: Path,
    series_archive: Path | None,
    sandbox: Sandbox,
    env: Mapping[str, str],
    log: BinaryIO,
) -> None:
    """The version's Debian series (in its order), then its patch files (in the recipe's order), each checked
    just before it is applied (see pkgc/worker/patching.py) and applied by `patch` in the sandbox."""
    steps: list[PatchStep] = []
    if spec.source.series is not None:
        if series_archive is None:
            raise BuildError("the version has a patch series but none was fetched")
        steps.extend(unpack_series(series_archive, workdir / "series"))
    if spec.source.patches:
        directory = workdir / "patches"
        directory.mkdir(exist_ok=True)
        for patch in spec.source.patches:
            path = directory / patch.name  # a plain file name (the loader checked it)
            path.write_text(patch.text, encoding="utf-8")
            steps.append(PatchStep(patch.name, path, patch.strip))
    for step in steps:
        try:
            check_step(step, srcdir)
        except PatchError as exc:
            raise BuildError(str(exc)) from None
        log.write(f"pkgc: applying {step.label} (-p{step.strip})\n".encode())
        sandbox.run(patch_command(step), cwd=srcdir, env=env, log=log)


def run_build(
    spec: BuildSpec,
    *,
    workdir: Path,
    source_archive: Path,
    depsdir: Path | None,
    sandbox: Sandbox,
    jobs: int,
    log: BinaryIO,
    series_archive: Path | None = None,
) -> Path:
    """Build `spec` inside `workdir`; return the staged tree that holds the placeholder prefix's contents."""
    srcdir = unpack_source(
        source_archive, workdir / "src", spec.source.strip_components, only_one_top=spec.build.system == "auto"
    )
    (workdir / "home").mkdir(exist_ok=True)
    env = build_environment(spec, workdir, depsdir)
    try:
        apply_patches(spec, srcdir, workdir, series_archive, sandbox, env, log)
    except PatchError as exc:
        raise BuildError(str(exc)) from None
    if spec.build.subdir:
        srcdir = srcdir / spec.build.subdir
    generated = spec.build.system == "auto"  # a generated recipe: the tree says how it builds
    skip_install = False
    topdir = srcdir
    if generated:
        write_wrappers(workdir)
        try:
            patched = spec.source.series is not None or bool(spec.source.patches)
            system_root = sandbox.root or Path("/")  # a hermetic build sees its build root as /
            detected = detect_in_tree(srcdir, workdir / "series", patched=patched, system_root=system_root)
        except NoBuildSystem as exc:
            raise BuildError(str(exc)) from None
        srcdir = srcdir / detected.subdir if detected.subdir else srcdir  # topdir stays: debian/install's base
        log.write(f"pkgc: build system {detected.system} ({detected.reason})\n".encode())
        build = dataclasses.replace(
            spec.build, system=detected.system, bootstrap=detected.bootstrap + spec.build.bootstrap
        )
        if detected.system == "make":  # a plain Makefile: the common names of its install prefix, on the command line
            prefix_args = (f"PREFIX={PLACEHOLDER}", f"prefix={PLACEHOLDER}")
            build = dataclasses.replace(
                build, make_args=prefix_args + build.make_args, install_args=prefix_args + build.install_args
            )
        spec = dataclasses.replace(spec, build=build)
    destdir = workdir / "stage"
    destdir.mkdir()
    staged = destdir / PLACEHOLDER.lstrip("/")
    # A build that ignores DESTDIR and writes into the prefix itself (a Makefile's own install paths) finds it
    # writable and lands in `direct` (hermetic sandboxes only; elsewhere the prefix path is read-only or absent).
    direct = workdir / "direct"
    direct.mkdir()
    direct_bound = sandbox.bind_writable(direct, PLACEHOLDER)
    # Likewise a generated recipe's Makefile that installs into /usr/local itself (its man pages, often) finds it
    # writable and empty; what lands there moves into the prefix like an install under DESTDIR/usr/local.
    usr_local = workdir / "usr-local"
    usr_local.mkdir()
    local_bound = generated and sandbox.bind_writable(usr_local, "/usr/local")
    created: list[Path] = []
    if generated:
        created = make_standard_dirs([staged, destdir / "usr", destdir / "usr" / "local"])
        make_standard_dirs([direct, direct / "usr", usr_local])
        for section in range(1, 9):  # /usr/local/man: the old BSD place of man pages, which some Makefiles use
            (usr_local / "man" / f"man{section}").mkdir(parents=True, exist_ok=True)
    values = {
        "prefix": PLACEHOLDER,
        "jobs": str(jobs),
        "cc": env["CC"],
        "cxx": env["CXX"],
        "cflags": env["CFLAGS"],
        "cxxflags": env["CXXFLAGS"],
        "cppflags": env["CPPFLAGS"],
        "ldflags": env["LDFLAGS"],
        "destdir": str(destdir),
        "srcdir": str(srcdir),
    }
    if depsdir is not None:  # every dependency is unpacked into the one depsdir: that is each one's prefix
        values.update({f"dep.{name}.prefix": str(depsdir) for name, _key in spec.dependencies})
    for name, value in spec.build.env:
        env[name] = _fill(value, values)
    if spec.build.system == "cmake":
        env["DESTDIR"] = str(destdir)  # `cmake --install` takes DESTDIR from the environment only
    log.write(f"pkgc: building {spec.label} key {spec.key}\npkgc: {sandbox.describe()}\n".encode())
    log.write(f"pkgc: CFLAGS={env['CFLAGS']}\npkgc: LDFLAGS={env['LDFLAGS']}\n".encode())
    for argv in build_commands(spec, srcdir, destdir, values):
        # A generated recipe's Makefile (plain, or the one configure has just written: dtach's) may have no install
        # rule; it is read when `make install` comes up, so configure's output counts.
        if generated and argv[:2] == ["make", "install"] and not has_install_rule(srcdir):
            skip_install = True
            log.write(b"pkgc: the Makefile has no install rule; installing what debian/install lists instead\n")
            listed = install_listed_files(topdir, workdir / "series", staged, build_dir=srcdir)
            if not listed:
                raise BuildError(
                    "the Makefile has no install rule, and neither debian/install nor the tree's top directory names "
                    "a file to install"
                )
            log.write(f"pkgc: installed {', '.join(listed[:10])}{' ...' if len(listed) > 10 else ''}\n".encode())
            continue
        sandbox.run(argv, cwd=srcdir, env=env, log=log)
    try:
        prune_empty_dirs(direct)
        if direct_bound and any(direct.iterdir()):
            moved = merge_into(direct, staged)
            log.write(f"pkgc: the build wrote {moved} entries into the prefix itself (not DESTDIR); kept them\n".encode())
        if generated:
            prune_empty_dirs(usr_local)
            for move in reroot_system_layout(destdir, staged, usr_local if local_bound else None):
                log.write(f"pkgc: the build installed under {move}; moved into the prefix\n".encode())
            if spec.build.system in ("make", "autotools") and not skip_install and not any(
                p.is_file() for p in staged.rglob("*")
            ):
                # `make install` ran but put nothing anywhere (damapper copies into the tree's own bin/)
                listed = install_listed_files(topdir, workdir / "series", staged, build_dir=srcdir)
                if listed:
                    log.write(f"pkgc: make install installed nothing; installed {', '.join(listed[:10])}\n".encode())
            games = move_games_to_bin(staged)
            if games:
                log.write(f"pkgc: moved {', '.join(games[:10])} from games/ into bin/ (on the user's PATH)\n".encode())
            for link in retarget_symlinks(staged, PLACEHOLDER):
                log.write(f"pkgc: {link} pointed into a system directory; now at the file in the prefix\n".encode())
            remove_empty(created)
    except LayoutError as exc:
        raise BuildError(str(exc)) from None
    stray = [p for p in destdir.rglob("*") if not (p == staged or staged in p.parents or p in staged.parents)]
    if stray:
        raise BuildError(f"the build installed files outside its prefix, e.g. {stray[0].relative_to(destdir)}")
    if not staged.is_dir():
        raise BuildError("the build installed nothing into its prefix")
    removed = remove_libtool_archives(staged)
    if removed:
        log.write(f"pkgc: removed {removed} libtool archive(s) (.la)\n".encode())
    return staged


def remove_libtool_archives(staged: Path) -> int:
    """Delete libtool's `.la` files from the installed tree, as Debian and Homebrew do.

    A `.la` file records the directory its library was installed from; a dependent's libtool link then adds that
    directory to the dependent's RUNPATH, which on the farm is the build's throwaway dependency directory. Nothing
    needs them at run time (the loader and libltdl find libraries by their `.so` names)."""
    removed = 0
    for directory in (staged / "lib", staged / "lib64"):
        if not directory.is_dir() or directory.is_symlink():
            continue
        for path in sorted(directory.rglob("*.la")):
            if path.is_symlink() or path.is_file():
                path.unlink()
                removed += 1
    return removed
