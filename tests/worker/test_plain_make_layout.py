"""Generated recipes (`system = "auto"`) of small projects whose Makefiles install the way their authors wanted.

Each case is a real shape found in a sample of Debian packages: vrfy's `install -c vrfy $(DESTDIR)/usr/local/bin`
into a directory nobody made; mailcheck's install into `$(PREFIX)/usr/bin` whatever DESTDIR says; topline's
Makefile without an install rule (Debian lists its files in `debian/install`); fzf's Makefile wrapping `go build`.
They build in the hermetic sandbox on a real build root, as the farm's worker builds them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from pkgc.core.buildspec import BuildSpec, PackageRequest, plan_builds
from pkgc.core.platform import detect_platform
from pkgc.core.recipe import BuildInstructions, PatchSeries, Recipe, SourceVersion
from pkgc.core.relocation import PLACEHOLDER
from pkgc.core.toolchain import load_toolchain
from pkgc.worker.builder import BuildError, build_environment, run_build
from pkgc.worker.buildroot import make_root
from pkgc.worker.detect import AUTORECONF, detect_in_tree
from pkgc.worker.layout import has_install_rule, install_listed_files
from pkgc.worker.sandbox import Sandbox, bubblewrap_path
from tests.conftest import make_tarball

TOOL_C = '#include <stdio.h>\nint main(void) { puts("tool works"); return 0; }\n'


def _tarball(path: Path, top: str, files: dict[str, str], executable: tuple[str, ...] = ()) -> Path:
    make_tarball(path, top, {name: text.encode() for name, text in files.items()}, executable)
    return path


def _spec(series: Path | None = None) -> BuildSpec:
    digest = hashlib.sha256(series.read_bytes()).hexdigest() if series else ""
    version = SourceVersion(
        "1.0", "a" * 64, ("https://example.org/tool.tar.gz",),
        series=PatchSeries("debian", digest, ("https://example.org/tool.debian.tar.xz",)) if series else None,
    )  # fmt: skip
    recipe = Recipe("tool", "", "", "", (version,), BuildInstructions("auto"), origin="generated")
    specs, _ = plan_builds([PackageRequest("tool")], lambda _name: recipe, detect_platform())
    return specs[0]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """The hermetic build root of a plain-make build (None where bubblewrap cannot run: the host's view then)."""
    if bubblewrap_path() is None:
        return None
    return make_root(load_toolchain(), (), "make", tmp_path_factory.mktemp("roots"))


def _build(
    tmp_path: Path,
    root: Path | None,
    files: dict[str, str],
    series: dict[str, str] | None = None,
    top: str = "tool-1.0",
    executable: tuple[str, ...] = (),
    deps: dict[str, bytes] | None = None,
) -> Any:
    archive = _tarball(tmp_path / "tool.tar.gz", top, files, executable)
    series_archive = _tarball(tmp_path / "tool.debian.tar.gz", "", series) if series is not None else None
    workdir = tmp_path / "work"
    workdir.mkdir()
    depsdir = None
    if deps is not None:  # the unpacked dependencies, as the worker lays them out in its work directory
        depsdir = workdir / "deps"
        for name, data in deps.items():
            (depsdir / name).parent.mkdir(parents=True, exist_ok=True)
            (depsdir / name).write_bytes(data)
    sandbox = Sandbox(workdir, bwrap=bubblewrap_path(), deadline=time.monotonic() + 120, root=root)
    with (tmp_path / "build.log").open("wb") as log:
        staged = run_build(
            _spec(series_archive), workdir=workdir, source_archive=archive, depsdir=depsdir, sandbox=sandbox, jobs=1,
            log=log, series_archive=series_archive,
        )  # fmt: skip
    return staged, (tmp_path / "build.log").read_text(errors="replace")


def test_an_install_into_destdir_usr_local_bin_nobody_made_lands_in_the_prefix(
    tmp_path: Path, root: Path | None
) -> None:
    makefile = (
        "BINDIR = /usr/local/bin\n"
        "tool: tool.c\n\t$(CC) $(CFLAGS) -o tool tool.c\n"
        "install: tool\n\tinstall -c -m 755 tool $(DESTDIR)$(BINDIR)\n"
    )
    staged, log = _build(tmp_path, root, {"Makefile": makefile, "tool.c": TOOL_C})
    assert (staged / "bin" / "tool").is_file(), log[-2000:]
    assert "moved into the prefix" in log
    assert not (staged / "share").exists(), "the directories made for the install and left empty are gone"


@pytest.mark.skipif(bubblewrap_path() is None, reason="needs bubblewrap: only a hermetic sandbox has a writable prefix")
def test_an_install_that_ignores_destdir_and_writes_into_the_prefix_itself_is_kept(
    tmp_path: Path, root: Path | None
) -> None:
    makefile = (
        "tool: tool.c\n\t$(CC) $(CFLAGS) -o tool tool.c\n"
        "install: tool\n\tinstall -m 755 tool $(PREFIX)/usr/bin\n\tinstall -m 644 tool.c $(PREFIX)/usr/share/man/man1/tool.1\n"
    )
    staged, log = _build(tmp_path, root, {"Makefile": makefile, "tool.c": TOOL_C})
    assert (staged / "bin" / "tool").is_file(), log[-2000:]
    assert (staged / "share" / "man" / "man1" / "tool.1").is_file()
    assert not (staged / "usr").exists()
    assert "into the prefix itself (not DESTDIR)" in log


def test_a_makefile_without_install_rule_installs_what_debian_install_lists(
    tmp_path: Path, root: Path | None
) -> None:
    makefile = "all: tool\ntool: tool.c\n\t$(CC) $(CFLAGS) -o tool tool.c\nclean:\n\trm -f tool\n"
    series = {"debian/install": "tool usr/bin\ntool.c usr/share/tool\n../outside usr/bin\nnothing-* usr/bin\n"}
    staged, log = _build(tmp_path, root, {"Makefile": makefile, "tool.c": TOOL_C}, series)
    assert (staged / "bin" / "tool").is_file(), log[-2000:]
    assert (staged / "share" / "tool" / "tool.c").is_file()
    assert "no install rule" in log


def test_a_makefile_without_install_rule_or_debian_list_installs_its_top_level_executables(
    tmp_path: Path, root: Path | None
) -> None:
    makefile = "tool: tool.c\n\t$(CC) $(CFLAGS) -o tool tool.c\n"
    staged, _log = _build(tmp_path, root, {"Makefile": makefile, "tool.c": TOOL_C, "helper.sh": "#!/bin/sh\n"})
    assert [p.name for p in (staged / "bin").iterdir()] == ["tool"], "only the ELF executable the build made"


def test_a_configure_script_whose_makefile_has_no_install_rule_installs_the_built_executables(
    tmp_path: Path, root: Path | None
) -> None:
    # dtach's shape: its configure writes a Makefile that builds the program and has no install rule.
    configure = "#!/bin/sh\nprintf 'tool: tool.c\\n\\t$(CC) $(CFLAGS) -o tool tool.c\\n' > Makefile\n"
    staged, log = _build(tmp_path, root, {"configure": configure, "tool.c": TOOL_C}, executable=("configure",))
    assert "build system autotools" in log, log[-2000:]
    assert [p.name for p in (staged / "bin").iterdir()] == ["tool"], log[-2000:]
    assert "no install rule" in log


def test_a_makefile_that_passes_no_flags_still_finds_the_dependencies_headers_and_libraries(
    tmp_path: Path, root: Path | None
) -> None:
    # sl's shape: `gcc -O -o sl sl.c -lncurses`, neither $(CPPFLAGS) nor $(LDFLAGS) on its command line.
    library = tmp_path / "lib"
    library.mkdir()
    (library / "dep.c").write_text('const char *dep_greeting(void) { return "from the dependency"; }\n')
    subprocess.run(["gcc", "-c", "-o", str(library / "dep.o"), str(library / "dep.c")], check=True)
    subprocess.run(["ar", "rcs", str(library / "libtooldep.a"), str(library / "dep.o")], check=True)
    tool_c = (
        '#include <stdio.h>\n#include <tooldep.h>\n'
        "int main(void) { puts(dep_greeting()); return TOOLDEP_STATUS; }\n"
    )
    makefile = (
        "tool: tool.c\n\tgcc -O -o tool tool.c -ltooldep\n"
        "install: tool\n\tinstall -D -m 755 tool $(DESTDIR)$(PREFIX)/bin/tool\n"
    )
    deps = {
        "include/tooldep.h": b"#define TOOLDEP_STATUS 0\nconst char *dep_greeting(void);\n",
        "lib/libtooldep.a": (library / "libtooldep.a").read_bytes(),
    }
    staged, log = _build(tmp_path, root, {"Makefile": makefile, "tool.c": tool_c}, deps=deps)
    built = subprocess.run([str(staged / "bin" / "tool")], capture_output=True, text=True, check=True)
    assert built.stdout == "from the dependency\n", log[-2000:]


def test_a_generated_build_gives_gcc_and_ld_the_paths_through_the_environment_and_a_curated_one_does_not(
    tmp_path: Path,
) -> None:
    generated = build_environment(_spec(), tmp_path, tmp_path / "deps")
    assert generated["CPATH"] == f"{tmp_path}/deps/include"
    assert generated["LIBRARY_PATH"] == f"{tmp_path}/deps/lib"
    assert generated["LD_RUN_PATH"] == f"{PLACEHOLDER}/lib", "a program linked without -rpath finds the prefix"
    curated = dataclasses.replace(_spec(), build=BuildInstructions("make"))
    assert not {"CPATH", "LIBRARY_PATH", "LD_RUN_PATH"} & set(build_environment(curated, tmp_path, tmp_path / "deps"))


def test_a_patched_autotools_input_newer_than_configure_means_autoreconf_first(tmp_path: Path) -> None:
    # sharutils' shape: Debian patches configure.ac; make would regenerate with aclocal-1.14, which nobody has.
    tree, system = tmp_path / "tree", tmp_path / "root"
    (system / "usr" / "bin").mkdir(parents=True)
    for name in ("configure", "configure.ac", "Makefile.am", "m4/extra.m4"):
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text("#!/bin/sh\nam__api_version='1.14'\n" if name == "configure" else "")
        os.utime(tree / name, (1_000_000, 1_000_000))
    assert detect_in_tree(tree, patched=True, system_root=system).bootstrap == (), "nothing newer: as shipped"
    os.utime(tree / "m4" / "extra.m4", (1_000_100, 1_000_100))
    found = detect_in_tree(tree, patched=True, system_root=system)
    assert found.bootstrap == (AUTORECONF,) and found.tools == ("autotools",)
    assert "m4/extra.m4" in found.reason and "automake 1.14" in found.reason
    assert detect_in_tree(tree, system_root=system).bootstrap == (), "an unpatched tarball is built as released"
    (system / "usr" / "bin" / "aclocal-1.14").write_text("")
    assert detect_in_tree(tree, patched=True, system_root=system).bootstrap == (), "make regenerates it itself"


def test_a_program_installed_into_games_lands_in_bin_where_the_path_finds_it(tmp_path: Path, root: Path | None) -> None:
    # sl's shape: Debian's debian/install puts the program in usr/games; a user's PATH has the prefix's bin/.
    makefile = "tool: tool.c\n\t$(CC) $(CFLAGS) -o tool tool.c\n"
    staged, log = _build(tmp_path, root, {"Makefile": makefile, "tool.c": TOOL_C}, {"debian/install": "tool usr/games\n"})
    assert [p.name for p in (staged / "bin").iterdir()] == ["tool"], log[-2000:]
    assert not (staged / "games").exists()
    assert "from games/ into bin/" in log


def test_an_install_with_owner_and_group_the_sandbox_does_not_have_installs_the_files(
    tmp_path: Path, root: Path | None
) -> None:
    # sysnews' and wipe's shape: `install -o bin -g bin` (the build's sandbox has no such account).
    makefile = (
        "tool: tool.c\n\t$(CC) $(CFLAGS) -o tool tool.c\n"
        "install: tool\n\tinstall -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/tool\n"
        "\tinstall -o bin -g bin -m 755 tool $(DESTDIR)$(PREFIX)/bin/tool\n"
        "\tinstall --owner=root --group root -m 644 tool.c $(DESTDIR)$(PREFIX)/share/tool/tool.c\n"
    )
    staged, log = _build(tmp_path, root, {"Makefile": makefile, "tool.c": TOOL_C})
    assert os.access(staged / "bin" / "tool", os.X_OK), log[-2000:]
    assert (staged / "share" / "tool" / "tool.c").read_text() == TOOL_C
    assert oct((staged / "share" / "tool" / "tool.c").stat().st_mode & 0o777) == oct(0o644), "the mode is kept"


def test_a_go_module_with_a_wrapper_makefile_is_reported_as_go(tmp_path: Path, root: Path | None) -> None:
    files = {"Makefile": "all:\n\tgo build ./...\n", "go.mod": "module example.org/tool\n", "main.go": ""}
    with pytest.raises(BuildError, match=r"no supported build system: the tree is a Go module \(go\.mod\)"):
        _build(tmp_path, root, files)


def test_a_clash_between_destdir_and_the_prefix_fails_naming_the_file(tmp_path: Path, root: Path | None) -> None:
    if root is None:
        pytest.skip("needs bubblewrap: only a hermetic sandbox has a writable prefix")
    makefile = (
        "tool: tool.c\n\t$(CC) $(CFLAGS) -o tool tool.c\n"
        "install: tool\n\tinstall -D -m 755 tool $(DESTDIR)$(PREFIX)/bin/tool\n"
        "\tinstall -D -m 755 tool.c $(PREFIX)/bin/tool\n"
    )
    with pytest.raises(BuildError, match="tool is installed twice"):
        _build(tmp_path, root, {"Makefile": makefile, "tool.c": TOOL_C})


@pytest.mark.skipif(bubblewrap_path() is None, reason="needs bubblewrap: only a hermetic sandbox has a writable /usr/local")
def test_man_pages_installed_into_usr_local_man_itself_land_in_the_prefix(tmp_path: Path, root: Path | None) -> None:
    makefile = (  # wwl's and shapetools' shape: the binary honours PREFIX, the man page goes to /usr/local/man
        "tool: tool.c\n\t$(CC) $(CFLAGS) -o tool tool.c\n"
        "install: tool\n\tinstall -D -m 755 tool $(DESTDIR)$(PREFIX)/bin/tool\n\tinstall tool.1 /usr/local/man/man1/tool.1\n"
        "\tln -s /usr/local/man/man1/tool.1 /usr/local/man/man1/alias.1\n"
    )
    staged, log = _build(tmp_path, root, {"Makefile": makefile, "tool.c": TOOL_C, "tool.1": ".TH TOOL 1\n"})
    assert (staged / "bin" / "tool").is_file(), log[-2000:]
    assert (staged / "share" / "man" / "man1" / "tool.1").read_text() == ".TH TOOL 1\n"
    assert "under /usr/local itself (not DESTDIR)" in log
    assert os.readlink(staged / "share" / "man" / "man1" / "alias.1") == f"{PLACEHOLDER}/share/man/man1/tool.1", (
        "a link to where the file was is a link to where it is (the packer makes it relative)"
    )


def test_a_make_install_that_copies_into_the_tree_falls_back_to_the_built_executables(
    tmp_path: Path, root: Path | None
) -> None:
    makefile = "tool: tool.c\n\t$(CC) $(CFLAGS) -o tool tool.c\ninstall: tool\n\tmkdir -p bin/\n\tcp -f tool bin/\n"
    staged, log = _build(tmp_path, root, {"Makefile": makefile, "tool.c": TOOL_C})  # damapper's shape
    assert (staged / "bin" / "tool").is_file(), log[-2000:]
    assert "make install installed nothing" in log


def test_a_tarball_without_a_top_directory_is_not_stripped(tmp_path: Path, root: Path | None) -> None:
    """dpkg-source's rule: strip the top directory only when everything lies under one (nautilus-admin's orig
    tarball has its files at the top; stripping one level lost them and Debian's patch found nothing to patch)."""
    makefile = "tool: src/tool.c\n\t$(CC) $(CFLAGS) -o tool src/tool.c\ninstall: tool\n\tinstall -D tool $(DESTDIR)$(PREFIX)/bin/tool\n"
    staged, log = _build(tmp_path, root, {"Makefile": makefile, "src/tool.c": TOOL_C}, top="")
    assert (staged / "bin" / "tool").is_file(), log[-2000:]


@pytest.mark.parametrize(
    ("makefile", "expected"),
    [
        ("install: all\n\tcp a b\n", True),
        ("all install: x\n", True),
        ("install:: x\n", True),
        ("INSTALL = install\ninstall_prefix := /usr\nall:\n\t$(INSTALL) x y\n", False),
        ("all:\n\tinstall -m 755 a b\n", False),
        ("include rules.mk\nall:\n", True),  # rules.mk has it
    ],
)
def test_has_install_rule(tmp_path: Path, makefile: str, expected: bool) -> None:
    (tmp_path / "Makefile").write_text(makefile)
    (tmp_path / "rules.mk").write_text("install:\n\tcp a b\n")
    assert has_install_rule(tmp_path) is expected


def test_debian_install_paths_stay_inside_the_source_and_the_prefix(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "tool").write_text("x")
    (tmp_path / "secret").write_text("host file")
    (source / "link").symlink_to(tmp_path / "secret")
    series = tmp_path / "series"
    (series / "debian").mkdir(parents=True)
    (series / "debian" / "install").write_text(
        "/etc/passwd usr/bin\n../secret usr/bin\nlink usr/bin\ntool ../../escape\ntool /opt/x\ntool usr/local/bin\n"
    )
    staged = tmp_path / "staged"
    assert install_listed_files(source, series, staged) == ["bin/tool"]
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file() and not p.is_symlink()) == [
        "secret", "series/debian/install", "src/tool", "staged/bin/tool",
    ]  # fmt: skip


def test_a_build_system_in_src_or_where_debian_rules_says_is_found(tmp_path: Path) -> None:
    from pkgc.worker.detect import NoBuildSystem, detect_in_tree

    tree = tmp_path / "tree"
    (tree / "src").mkdir(parents=True)
    (tree / "src" / "configure").write_text("#!/bin/sh\n")
    found = detect_in_tree(tree)
    assert (found.system, found.subdir) == ("autotools", "src"), "rp-pppoe keeps its configure in src/"
    (tree / "unix").mkdir()
    (tree / "unix" / "CMakeLists.txt").write_text("")
    series = tmp_path / "series"
    (series / "debian").mkdir(parents=True)
    (series / "debian" / "rules").write_text("%:\n\tdh $@ --sourcedirectory=unix\n")
    assert detect_in_tree(tree, series).subdir == "unix"
    (series / "debian" / "rules").write_text("%:\n\tdh $@ --sourcedirectory=../../etc\n")
    assert detect_in_tree(tree, series).subdir == "src", "a path out of the tree is not followed"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(NoBuildSystem, match="no build system detected"):
        detect_in_tree(empty, series)


def test_a_generated_build_in_src_builds_there(tmp_path: Path, root: Path | None) -> None:
    makefile = "tool: tool.c\n\t$(CC) $(CFLAGS) -o tool tool.c\ninstall: tool\n\tinstall -D tool $(DESTDIR)$(PREFIX)/bin/tool\n"
    staged, log = _build(tmp_path, root, {"README": "x\n", "src/Makefile": makefile, "src/tool.c": TOOL_C})
    assert (staged / "bin" / "tool").is_file(), log[-2000:]
    assert "found Makefile in src/" in log
