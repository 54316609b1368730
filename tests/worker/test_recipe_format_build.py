"""The worker's side of the recipe format (issue 9): bootstrap/post-install order, list placeholders and globs,
{dep.NAME.prefix}, patch files and Debian series applied by the real `patch` (and refused when unsafe), symlinks
into the staging directory packed as relative links, and the smoke-test runner."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from pkgc.artifact import Manifest, PackError, pack_tree, unpack_artifact
from pkgc.core.buildspec import BuildSpec, PackageRequest, plan_builds
from pkgc.core.platform import Platform
from pkgc.core.recipe import Recipe, SmokeTest, parse_recipe
from pkgc.core.relocation import PLACEHOLDER
from pkgc.worker.builder import BuildError, build_commands, expand_arguments, run_build
from pkgc.worker.patching import PatchError, check_patch_paths, header_names, parse_series
from pkgc.worker.sandbox import CommandFailed, Sandbox, bubblewrap_path
from pkgc.worker.smoke import SmokeFailed, run_smoke_tests, smoke_environment
from tests.conftest import make_tarball

PLATFORM = Platform("linux", "x86_64", "glibc", "2.36")
SHA = "a" * 64


def recipe_text(build: str, *, version_extra: str = "", extra: str = "", name: str = "demo") -> str:
    return (
        f'name = "{name}"\n\n[[versions]]\nversion = "1.0"\nsha256 = "{SHA}"\n'
        f'urls = ["https://example.org/demo.tar.gz"]\n{version_extra}\n[build]\n{build}\n{extra}'
    )


def spec_of(text: str, files: dict[str, str] | None = None, others: dict[str, Recipe] | None = None) -> BuildSpec:
    recipe = parse_recipe(text, source="demo.toml", files=files)
    table = {recipe.name: recipe, **(others or {})}
    specs, requested = plan_builds([PackageRequest(recipe.name)], table.__getitem__, PLATFORM)
    return next(s for s in specs if s.key == requested[0])


def tarball(path: Path, top: str, files: dict[str, str]) -> Path:
    make_tarball(path, top, {name: body.encode() for name, body in files.items()})
    return path


def sandbox(workdir: Path) -> Sandbox:
    return Sandbox(workdir, bwrap=bubblewrap_path(), deadline=time.monotonic() + 120)


VALUES = {"prefix": PLACEHOLDER, "jobs": "2", "cflags": "-O2 -g  -fPIC", "ldflags": "", "destdir": "/stage"}


def test_bootstrap_runs_before_configure_and_post_install_after_install(tmp_path: Path) -> None:
    spec = spec_of(recipe_text(
        'system = "autotools"\nbootstrap = [["autoreconf", "-fi"]]\n'
        'post_install = [["install", "-m", "644", "x.pc", "{destdir}{prefix}/lib/pkgconfig/x.pc"]]'
    ))
    commands = build_commands(spec, tmp_path, Path("/stage"), VALUES)
    assert commands[0] == ["autoreconf", "-fi"]
    assert commands[1][0] == "./configure"
    assert commands[-2][:2] == ["make", "install"]
    assert commands[-1] == ["install", "-m", "644", "x.pc", f"/stage{PLACEHOLDER}/lib/pkgconfig/x.pc"]
    cmake = spec_of(recipe_text('system = "cmake"\npost_install = [["true"]]'))
    assert build_commands(cmake, tmp_path, Path("/stage"), VALUES)[-2][:2] == ["cmake", "--install"]


def test_list_placeholders_split_and_globs_expand_sorted_relative_to_the_source(tmp_path: Path) -> None:
    for name in ("src/b.c", "src/a.c", "src/sub/c.c", "src/x.h"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    args = ["cc", "{*cflags}", "{*ldflags}", "{*glob:src/*.c}", "-DX={prefix}", "{{lit}}"]
    assert expand_arguments(args, VALUES, tmp_path) == [
        "cc", "-O2", "-g", "-fPIC", "src/a.c", "src/b.c", f"-DX={PLACEHOLDER}", "{lit}"
    ]
    assert expand_arguments(["{*glob:src/**/*.c}"], VALUES, tmp_path) == ["src/a.c", "src/b.c", "src/sub/c.c"]
    with pytest.raises(BuildError, match=r"\{\*glob:lib/\*\.c\} matches nothing"):
        expand_arguments(["{*glob:lib/*.c}"], VALUES, tmp_path)
    with pytest.raises(BuildError, match=r"a pattern with '\.\.'"):
        expand_arguments(["{*glob:../*}"], VALUES, tmp_path)
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (tmp_path / "src" / "escape").symlink_to(outside)
    with pytest.raises(BuildError, match="leads outside the source"):
        expand_arguments(["{*glob:src/*}"], VALUES, tmp_path)


def test_dependency_prefix_is_the_directory_the_dependencies_are_unpacked_into(tmp_path: Path) -> None:
    onig = parse_recipe(recipe_text('system = "autotools"', name="oniguruma"))
    spec = spec_of(
        recipe_text(
            'system = "steps"\nsteps = [["mkdir", "-p", "{destdir}{prefix}/share"],'
            ' ["cp", "{dep.oniguruma.prefix}/share/marker", "{destdir}{prefix}/share/from-dep"]]',
            extra='[dependencies]\nruntime = ["oniguruma"]\n',
        ),
        others={"oniguruma": onig},
    )
    depsdir = tmp_path / "work" / "deps"
    (depsdir / "share").mkdir(parents=True)
    (depsdir / "share" / "marker").write_text("from oniguruma\n")
    archive = tarball(tmp_path / "src.tar.gz", "demo-1.0", {"README": "demo\n"})
    with (tmp_path / "log").open("wb") as log:
        staged = run_build(spec, workdir=tmp_path / "work", source_archive=archive, depsdir=depsdir,
                           sandbox=sandbox(tmp_path / "work"), jobs=1, log=log)
    assert (staged / "share" / "from-dep").read_text() == "from oniguruma\n"


FIX = "--- a/greet.txt\n+++ b/greet.txt\n@@ -1 +1 @@\n-hello\n+hello, patched\n"
SERIES_ONE = "--- a/greet.txt\n+++ b/greet.txt\n@@ -1 +1 @@\n-hello\n+hello from series one\n"
SERIES_TWO = "--- greet.txt\n+++ greet.txt\n@@ -1 +1,2 @@\n hello from series one\n+and series two (-p0)\n"
STEPS = 'system = "steps"\nsteps = [["install", "-D", "-m", "644", "greet.txt", "{destdir}{prefix}/share/greet.txt"]]'


def build_patched(tmp_path: Path, text: str, files: dict[str, str], series: Path | None = None) -> str:
    archive = tarball(tmp_path / "src.tar.gz", "demo-1.0", {"greet.txt": "hello\n"})
    work = tmp_path / "work"
    with (tmp_path / "log").open("wb") as log:
        staged = run_build(spec_of(text, files), workdir=work, source_archive=archive, depsdir=None,
                           sandbox=sandbox(work), jobs=1, log=log, series_archive=series)
    return (staged / "share" / "greet.txt").read_text()


def test_patch_files_are_applied_with_their_strip_level(tmp_path: Path) -> None:
    sha = hashlib.sha256(FIX.encode()).hexdigest()
    text = recipe_text(STEPS, version_extra=f'patches = [{{ file = "fix.patch", sha256 = "{sha}" }}]\n')
    assert build_patched(tmp_path, text, {"fix.patch": FIX}) == "hello, patched\n"


def debian_tarball(path: Path, series: str, patches: dict[str, str]) -> Path:
    files = {"debian/patches/series": series, **{f"debian/patches/{k}": v for k, v in patches.items()}}
    return tarball(path, "", files)


def test_a_debian_series_is_applied_in_order_then_the_patch_files(tmp_path: Path) -> None:
    then = "--- a/greet.txt\n+++ b/greet.txt\n@@ -1,2 +1,3 @@\n hello from series one\n and series two (-p0)\n+then the file\n"
    sha = hashlib.sha256(then.encode()).hexdigest()
    series = debian_tarball(
        tmp_path / "demo.debian.tar.gz",
        "# comment line\none.patch\n\nsub/two.patch -p0  # a trailing comment\n",
        {"one.patch": SERIES_ONE, "sub/two.patch": SERIES_TWO, "unused.patch": "garbage"},
    )
    text = recipe_text(
        STEPS,
        version_extra=f'patches = [{{ file = "then.patch", sha256 = "{sha}" }}]\n'
        f'series = {{ sha256 = "{"b" * 64}", mirrors = ["mirror://debian/x.debian.tar.gz"] }}\n',
    )
    assert build_patched(tmp_path, text, {"then.patch": then}, series) == (
        "hello from series one\nand series two (-p0)\nthen the file\n"
    )


def test_a_patch_that_does_not_apply_fails_the_build(tmp_path: Path) -> None:
    wrong = FIX.replace("-hello", "-goodbye")
    sha = hashlib.sha256(wrong.encode()).hexdigest()
    text = recipe_text(STEPS, version_extra=f'patches = [{{ file = "fix.patch", sha256 = "{sha}" }}]\n')
    with pytest.raises(CommandFailed, match="patch exited"):
        build_patched(tmp_path, text, {"fix.patch": wrong})


@pytest.mark.parametrize(
    ("patch", "strip", "reason"),
    [
        ("--- a/../evil\n+++ b/../evil\n@@ -0,0 +1 @@\n+x\n", 1, "outside the source tree"),
        ("--- /etc/passwd\n+++ /etc/passwd\n@@ -0,0 +1 @@\n+x\n", 0, "outside the source tree"),
        ("--- a/x\n+++ b/x\n@@ -0,0 +1 @@\n+x\n--- a/../y\n+++ b/../y\n@@ -0,0 +1 @@\n+y\n", 1, "outside"),
        ("diff --git a/x b/x\nnew file mode 120000\n--- /dev/null\n+++ b/x\n@@ -0,0 +1 @@\n+/etc\n", 1, "symlink"),
        ("diff --git a/x b/y\nrename from x\nrename to ../y\n", 1, "outside the source tree"),
        ("--- a/link/f\n+++ b/link/f\n@@ -0,0 +1 @@\n+x\n", 1, "goes through a symlink"),
    ],
    ids=["dotdot", "absolute", "second-file", "git-symlink", "git-rename", "through-symlink"],
)
def test_unsafe_patches_are_refused_before_patch_runs(tmp_path: Path, patch: str, strip: int, reason: str) -> None:
    (tmp_path / "link").symlink_to("/tmp")
    with pytest.raises(PatchError, match=reason):
        check_patch_paths(patch, strip, tmp_path, "evil.patch")


def test_an_unsafe_series_patch_fails_the_build_and_writes_nothing(tmp_path: Path) -> None:
    evil = "--- a/../../escaped\n+++ b/../../escaped\n@@ -0,0 +1 @@\n+pwned\n"
    series = debian_tarball(tmp_path / "d.tar.gz", "evil.patch\n", {"evil.patch": evil})
    text = recipe_text(STEPS, version_extra=f'series = {{ sha256 = "{"b" * 64}", mirrors = ["mirror://debian/x"] }}\n')
    with pytest.raises(BuildError, match="outside the source tree"):
        build_patched(tmp_path, text, {}, series)
    assert not (tmp_path / "escaped").exists()


def test_a_removed_line_that_looks_like_a_header_is_not_taken_for_one() -> None:
    patch = "--- a/f.lua\n+++ b/f.lua\n@@ -1,2 +1 @@\n--- ../comment\n keep\n"
    assert header_names(patch) == [("a/f.lua", True), ("b/f.lua", True)]
    check_patch_paths(patch, 1, Path("/nonexistent"), "lua.patch")


def test_series_file_syntax() -> None:
    assert parse_series("a.patch\n# c\n\nb.patch -p0 # why\nsub/c.diff -p2\n") == [
        ("a.patch", 1), ("b.patch", 0), ("sub/c.diff", 2)
    ]
    with pytest.raises(PatchError, match="line 1: unsupported option '-R'"):
        parse_series("a.patch -R\n")
    with pytest.raises(PatchError, match=r"line 2: '\.\./x\.patch' is not a path inside debian/patches"):
        parse_series("a.patch\n../x.patch\n")


def manifest() -> Manifest:
    return Manifest("demo", "1.0", "k" * 64, {}, {}, [], [], {"command": [], "expect": ""})


def test_symlinks_into_the_staging_directory_are_packed_as_relative_links(tmp_path: Path) -> None:
    staged = tmp_path / "stage" / PLACEHOLDER.lstrip("/")
    (staged / "bin").mkdir(parents=True)
    (staged / "share" / "units").mkdir(parents=True)
    (staged / "share" / "units" / "definitions.units").write_text("m\n")
    (staged / "bin" / "defs").symlink_to(f"{staged}/share/units/definitions.units")  # $(DESTDIR)$(prefix)/...
    (staged / "bin" / "prefixed").symlink_to(f"{PLACEHOLDER}/share/units")
    packed = pack_tree(staged, manifest(), tmp_path / "a.tar.zst")
    targets = {e.path: e.target for e in packed.files if e.type == "symlink"}
    assert targets == {"bin/defs": "../share/units/definitions.units", "bin/prefixed": "../share/units"}
    unpack_artifact(tmp_path / "a.tar.zst", tmp_path / "out")
    assert (tmp_path / "out" / "bin" / "defs").read_text() == "m\n"
    (staged / "bin" / "host").symlink_to(f"{tmp_path}/stage/elsewhere")
    with pytest.raises(PackError, match="outside the package's prefix"):
        pack_tree(staged, manifest(), tmp_path / "b.tar.zst")


def test_smoke_runner_feeds_stdin_sets_env_and_limits_pkg_config_to_the_prefix(tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "lib" / "pkgconfig").mkdir(parents=True)
    tool = prefix / "bin" / "demo-tool"
    tool.write_text('#!/bin/sh\nread line\necho "got $line and $DEMO_VAR"\n')
    tool.chmod(0o755)
    (prefix / "lib" / "pkgconfig" / "demo.pc").write_text(
        "prefix=/x\nName: demo\nDescription: d\nVersion: 4.5.6\nLibs: -ldemo\n"
    )
    tests = (
        SmokeTest(("demo-tool",), "got 1 + 1 and set", "1 + 1\n", (("DEMO_VAR", "set"),)),
        SmokeTest(("bin/demo-tool",), "got x", "x\n"),
        SmokeTest(("pkg-config", "--modversion", "demo"), "4.5.6"),
    )
    results = run_smoke_tests(tests, prefix, dict(os.environ))
    assert [r.output.strip() for r in results] == ["got 1 + 1 and set", "got x and", "4.5.6"]
    env = smoke_environment(prefix, {"PATH": "/usr/bin"}, [tmp_path / "dep"])
    assert env["PATH"].split(":")[:2] == [f"{prefix}/bin", f"{tmp_path}/dep/bin"]
    assert env["PKG_CONFIG_LIBDIR"] == env["PKG_CONFIG_PATH"]
    assert f"{tmp_path}/dep/lib/pkgconfig" in env["PKG_CONFIG_LIBDIR"].split(":")
    # The host's own .pc files are out of reach: a package whose .pc is missing cannot pass on the host's.
    with pytest.raises(SmokeFailed, match="exited with status"):
        run_smoke_tests((SmokeTest(("pkg-config", "--exists", "libcrypto")),), prefix, dict(os.environ))
    with pytest.raises(SmokeFailed, match="'nope' not in its output"):
        run_smoke_tests((SmokeTest(("demo-tool",), "nope", "y\n"),), prefix, dict(os.environ))
    checker = SmokeTest(("sh", "-c", "echo 'STDIN:1: bad'; exit 2"), "STDIN:1: bad", status=2)
    assert run_smoke_tests((checker,), prefix, dict(os.environ))[0].output == "STDIN:1: bad\n"
    with pytest.raises(SmokeFailed, match="exited with status 0 instead of 2"):
        run_smoke_tests((SmokeTest(("true",), status=2),), prefix, dict(os.environ))
    with pytest.raises(SmokeFailed, match="within 1s"):
        run_smoke_tests((SmokeTest(("sleep", "5")),), prefix, dict(os.environ), timeout=1)


def test_prefetch_fetches_and_seeds_patch_series_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The test farm is seeded from the prefetched cache: a recipe's series tarball must be there as well."""
    from pkgc.worker import prefetch

    series_sha = "b" * 64
    recipe = parse_recipe(recipe_text(
        STEPS, version_extra=f'series = {{ sha256 = "{series_sha}", mirrors = ["mirror://debian/x.debian.tar.xz"] }}\n'
    ))
    monkeypatch.setenv(prefetch.DEFAULT_DIR_ENV, str(tmp_path / "prefetched"))
    monkeypatch.setattr(prefetch, "bundled_recipes", lambda names=None: [recipe])
    (tmp_path / "prefetched").mkdir()
    (tmp_path / "prefetched" / SHA).write_text("source")
    assert prefetch.missing_sources(tmp_path / "prefetched", [recipe]) == ["demo 1.0 (patch series)"]
    with pytest.raises(Exception, match=r"demo 1.0 \(patch series\)"):
        prefetch.seed_cache(tmp_path / "cache")
    (tmp_path / "prefetched" / series_sha).write_text("series")
    prefetch.seed_cache(tmp_path / "cache")
    assert (tmp_path / "cache" / series_sha).read_text() == "series"


def test_a_steps_build_gets_its_globbed_files_as_separate_arguments(tmp_path: Path) -> None:
    spec = spec_of(recipe_text(
        'system = "steps"\nsteps = [["mkdir", "-p", "{destdir}{prefix}/share"],'
        ' ["cp", "{*glob:parts/*.txt}", "{destdir}{prefix}/share/"]]'
    ))
    archive = tarball(tmp_path / "src.tar.gz", "demo-1.0", {"parts/b.txt": "b", "parts/a.txt": "a", "parts/c.md": "c"})
    with (tmp_path / "log").open("wb") as log:
        staged = run_build(spec, workdir=tmp_path / "work", source_archive=archive, depsdir=None,
                           sandbox=sandbox(tmp_path / "work"), jobs=1, log=log)
    assert sorted(p.name for p in (staged / "share").iterdir()) == ["a.txt", "b.txt"]
    assert "$ cp parts/a.txt parts/b.txt " in (tmp_path / "log").read_text()


def test_libtool_archives_are_removed_from_the_installed_tree(tmp_path: Path) -> None:
    """A `.la` file names the directory its library was built in; dependents' libtool links turn it into a RUNPATH."""
    from pkgc.worker.builder import remove_libtool_archives

    (tmp_path / "lib" / "plugins").mkdir(parents=True)
    (tmp_path / "lib" / "libfoo.la").write_text("libdir='/farm/work/deps/lib'\n")
    (tmp_path / "lib" / "plugins" / "bar.la").write_text("libdir='/farm/work/deps/lib'\n")
    (tmp_path / "lib" / "libfoo.so.1").write_bytes(b"\x7fELF")
    (tmp_path / "share").mkdir()
    (tmp_path / "share" / "keep.la").write_text("not a library directory\n")
    assert remove_libtool_archives(tmp_path) == 2
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == [
        "lib/libfoo.so.1",
        "share/keep.la",
    ]
