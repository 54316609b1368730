"""The Debian source catalog: parsing real Sources stanzas, versions, Build-Depends mapping, recipe generation,
deb-src derivation, build system detection, and the farm service's use of generated recipes (curated wins)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pkgc.core.buildspec import PackageRequest, plan_builds
from pkgc.core.debian import (
    GENERATED_MARK,
    DebianIndexError,
    NotGeneratable,
    ParsedIndex,
    deb_src_entries,
    generate_recipe,
    map_build_depends,
    parse_index,
    parse_source,
    parse_stanzas,
    select_stanzas,
    upstream_version,
    without_cycles,
)
from pkgc.core.errors import NotFound, UsageError
from pkgc.core.platform import detect_platform
from pkgc.core.toolchain import load_toolchain
from pkgc.farm.adapters.memory import memory_ports
from pkgc.farm.debian_catalog import (
    DebianCatalog,
    find_sources_indexes,
    load_index_text,
    read_index_files,
    update_index,
)
from pkgc.farm.service import FarmService
from pkgc.worker.detect import AUTORECONF, NoBuildSystem, detect_build_system

FIXTURE = Path(__file__).parent.parent / "fixtures" / "debian" / "Sources"
TOOLCHAIN = load_toolchain()


@pytest.fixture(scope="module")
def index_text() -> str:
    return FIXTURE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def parsed(index_text: str) -> ParsedIndex:
    return parse_index(index_text)


def test_parse_real_stanzas(parsed: ParsedIndex) -> None:
    assert set(parsed.packages) == {
        "ddate", "exuberant-ctags", "libcbor", "libevdevplus", "libinih", "libtar", "loadwatch", "mklibs", "serd",
        "sord", "spice-protocol",
    }  # fmt: skip
    cbor = parsed.packages["libcbor"]
    assert (cbor.version, cbor.debian_version, cbor.format) == ("0.8.0", "0.8.0-2", "3.0 (quilt)")
    assert cbor.directory == "pool/main/libc/libcbor"
    assert cbor.orig is not None and cbor.orig.name == "libcbor_0.8.0.orig.tar.gz"
    assert cbor.orig.sha256 == "618097166ea4a54499646998ccaa949a5816e6a665cf1d6df383690895217c8b"
    assert cbor.debian is not None and cbor.debian.name == "libcbor_0.8.0-2.debian.tar.xz"
    assert cbor.binaries == ("libcbor0.8", "libcbor-dev", "libcbor-doc")
    assert cbor.homepage == "https://github.com/PJK/libcbor"
    # Build-Depends and Build-Depends-Arch; not Build-Depends-Indep (documentation only)
    assert cbor.build_depends == ("debhelper-compat (= 13)", "cmake", "libcmocka-dev <!nocheck>")
    assert "libcbor-dev" in cbor.summary and len(cbor.summary) <= 200
    native = parsed.packages["mklibs"]
    assert native.debian is None and native.orig is not None and native.orig.name == "mklibs_0.1.45.tar.xz"
    old_format = parsed.packages["loadwatch"]
    assert old_format.format == "1.0" and old_format.orig is not None and old_format.debian is None


@pytest.mark.parametrize(
    ("debian", "upstream"),
    [
        ("0.8.0-2", "0.8.0"),
        ("1:5.9~svn20110310-18", "5.9~svn20110310"),
        ("1.2.20-8+deb12u1", "1.2.20"),
        ("0.1.45", "0.1.45"),  # native: no revision
        ("2:1.0-beta-3", "1.0-beta"),  # the revision is after the LAST hyphen
        ("1.0+1.1alpha1-6", "1.0+1.1alpha1"),
    ],
)
def test_upstream_version(debian: str, upstream: str) -> None:
    assert upstream_version(debian) == upstream


def test_unusable_stanzas_are_skipped_with_a_reason(index_text: str) -> None:
    bad = "Package: ../evil\nVersion: 1.0-1\nDirectory: pool/main/e/evil\n\n"
    up = "Package: uptree\nVersion: 1.0-1\nDirectory: pool/../../etc\n\n"
    result = parse_index(bad + up + index_text)
    assert "../evil" not in result.packages and "uptree" not in result.packages
    assert any("not a pkgc name" in s for s in result.skipped)
    assert any("uptree: Directory" in s for s in result.skipped)
    with pytest.raises(DebianIndexError, match="has no usable upstream part"):
        parse_source({"Package": "x", "Version": "-1", "Directory": "pool/main/x/x"})


def test_bad_checksum_lines_are_not_files() -> None:
    stanza = {
        "Package": "x",
        "Version": "1.0-1",
        "Directory": "pool/main/x/x",
        "Checksums-Sha256": "\nnothex 12 x_1.0.orig.tar.gz\n" + "a" * 64 + " 12 ../x_1.0.orig.tar.gz",
    }
    package = parse_source(stanza)
    assert package.orig is None
    with pytest.raises(NotGeneratable, match="no source tarball"):
        generate_recipe(package, lambda _b: None, TOOLCHAIN)


def test_build_depends_mapping(parsed: ParsedIndex) -> None:
    sources = parsed.binary_sources()
    sord = map_build_depends(parsed.packages["sord"], sources.get, TOOLCHAIN)
    assert sord.runtime == ("serd",), "libserd-dev is serd's binary: its library is needed at run time"
    assert sord.tools == ("meson", "python")
    assert "debhelper-compat (Debian packaging)" in sord.dropped
    assert "libpcre2-dev" in sord.dropped, "no source in this index builds libpcre2-dev: noted, dropped"
    harness = parse_source(
        {"Package": "t", "Version": "1.0-1", "Directory": "pool/main/t/t", "Build-Depends": "autopkgtest, xvfb, libc6-dev"}
    )
    assert map_build_depends(harness, sources.get, TOOLCHAIN).dropped[:2] == (
        "autopkgtest (Debian packaging)", "xvfb (Debian packaging)",
    ), "test harnesses are not built: the farm runs no upstream test suite"  # fmt: skip
    cbor = map_build_depends(parsed.packages["libcbor"], sources.get, TOOLCHAIN)
    assert cbor.tools == ("cmake",) and cbor.runtime == () and cbor.build == ()
    assert "libcmocka-dev (build profile)" in cbor.dropped
    libtar = map_build_depends(parsed.packages["libtar"], sources.get, TOOLCHAIN)
    assert libtar.tools == ("autotools",), "automake, autoconf and libtool are the autotools tool"
    evdev = map_build_depends(parsed.packages["libevdevplus"], sources.get, TOOLCHAIN)
    assert evdev.tools == ("cmake",) and "pkg-config" not in evdev.dropped, "pkg-config is the platform's"


def test_alternatives_and_architectures() -> None:
    package = parse_source(
        {
            "Package": "demo",
            "Version": "1.0-1",
            "Directory": "pool/main/d/demo",
            "Build-Depends": "libfoo-dev | libbar-dev, libarm-dev [armhf], libnotarm-dev [!armhf], "
            "bison:native (>= 3), gettext <!nls>, demo-data",
        }
    )
    owners = {"libbar-dev": "bar", "libarm-dev": "armlib", "libnotarm-dev": "notarm", "demo-data": "demo"}
    mapped = map_build_depends(package, owners.get, TOOLCHAIN)
    assert mapped.runtime == ("bar", "notarm"), "the first alternative that maps wins; [armhf] is not amd64"
    assert mapped.tools == ("bison",)
    assert "demo-data (its own binary)" in mapped.dropped


def test_generated_recipe(parsed: ParsedIndex) -> None:
    recipe, _ = generate_recipe(parsed.packages["sord"], parsed.binary_sources().get, TOOLCHAIN)
    assert recipe.origin == "generated" and recipe.build.system == "auto"
    assert recipe.runtime_dependencies == ("serd",) and recipe.build.tools == ("meson", "python")
    source = recipe.versions[0]
    assert source.version == "0.16.14+git221008"
    assert source.mirrors == ("mirror://debian/pool/main/s/sord/sord_0.16.14+git221008.orig.tar.xz",)
    assert source.series is not None and source.series.kind == "debian"
    assert source.series.mirrors == ("mirror://debian/pool/main/s/sord/sord_0.16.14+git221008-1.debian.tar.xz",)
    assert recipe.homepage.startswith("https://")
    assert recipe.build_relevant()["origin"] == "generated", "a generated recipe's key differs from a curated one's"
    native, _ = generate_recipe(parsed.packages["mklibs"], lambda _b: None, TOOLCHAIN)
    assert native.versions[0].series is None
    assert native.versions[0].mirrors == ("mirror://debian/pool/main/m/mklibs/mklibs_0.1.45.tar.xz",)
    specs, _ = plan_builds(
        [PackageRequest("sord")],
        lambda name: generate_recipe(parsed.packages[name], parsed.binary_sources().get, TOOLCHAIN)[0],
        detect_platform(),
    )
    assert [s.name for s in specs] == ["serd", "sord"], "generated dependencies are planned like curated ones"


def test_select_stanzas(index_text: str) -> None:
    excerpt = select_stanzas(index_text, ["serd", "ddate"])
    assert [s["Package"] for s in parse_stanzas(excerpt)] == ["ddate", "serd"]
    assert select_stanzas(index_text, ["nothing"]) == ""


def test_deb_src_entries_from_deb822_and_one_line() -> None:
    deb822 = (
        "Types: deb\nURIs: https://archive.example/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main contrib\nSigned-By: /usr/share/keyrings/example.gpg\n\n"
        "Types: deb\nURIs: https://off.example/debian\nSuites: bookworm\nComponents: main\nEnabled: no\n\n"
        "Types: deb-src\nURIs: https://src.example/debian\nSuites: bookworm\nComponents: main\n"
    )
    one_line = (
        "# a comment\ndeb [arch=amd64 signed-by=/k.gpg] http://old.example/debian bookworm main\n"
        "deb http://evil.example/debian bookworm main]\n"  # a bracket would reach apt's options: refused
        "deb cdrom:[Debian]/ bookworm main\n"
    )
    entries = deb_src_entries([("debian.sources", deb822), ("sources.list", one_line)])
    assert [e.one_line() for e in entries] == [
        "deb-src [signed-by=/usr/share/keyrings/example.gpg] https://archive.example/debian bookworm main contrib",
        "deb-src [signed-by=/k.gpg] http://old.example/debian bookworm main",
    ]
    everything = deb_src_entries([("debian.sources", deb822)], base_suites_only=False)
    assert [e.suite for e in everything] == ["bookworm", "bookworm-updates"]


def test_detect_build_system(tmp_path: Path) -> None:
    def tree(*files: str) -> Path:
        root = tmp_path / "-".join(files or ("empty",)).replace(".", "_")
        root.mkdir()
        for name in files:
            (root / name).write_text("")
        return root

    assert detect_build_system(tree("configure", "configure.ac", "CMakeLists.txt")).system == "autotools"
    git_tree = detect_build_system(tree("configure.ac", "Makefile.am"))
    assert git_tree.system == "autotools" and git_tree.bootstrap == (AUTORECONF,) and git_tree.tools == ("autotools",)
    assert detect_build_system(tree("CMakeLists.txt", "meson.build")).system == "cmake"
    assert detect_build_system(tree("meson.build")).system == "meson"
    assert detect_build_system(tree("Makefile")).system == "make"
    with pytest.raises(NoBuildSystem, match="no build system detected"):
        detect_build_system(tree("README"))
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "configure").symlink_to("/bin/true")
    with pytest.raises(NoBuildSystem):
        detect_build_system(linked)


def test_catalog_store_and_service(tmp_path: Path, index_text: str) -> None:
    stored, skipped = load_index_text(tmp_path, index_text)
    assert (stored, skipped) == (11, 0)
    catalog = DebianCatalog(tmp_path / "debian" / "index.sqlite")
    assert catalog.count() == 11
    identity = catalog.identity("serd")
    assert identity is not None and identity.startswith(GENERATED_MARK)
    assert catalog.recipe("nothing") is None and catalog.identity("nothing") is None
    ports = memory_ports()
    service = FarmService.from_ports(
        ports,
        detect_platform(),
        generated=catalog,
    )
    service.publish_recipe(
        'name = "ddate"\nsummary = "curated ddate"\n[build]\nsystem = "cmake"\n[[versions]]\nversion = "0.2.2"\n'
        'sha256 = "' + "a" * 64 + '"\nurls = ["https://example.org/ddate.tar.gz"]\n'
    )
    names = [p.name for p in service.catalog_snapshot()]
    assert names == sorted(names) and len(names) == 11, "one entry per name: the curated ddate replaces Debian's"
    assert service.search("ddate")[0].summary == "curated ddate"
    serd = next(p for p in service.catalog_snapshot() if p.name == "serd")
    assert serd.homepage == "https://drobilla.net/software/serd/" and serd.latest == "0.30.16"
    assert service.details("sord").origin == "generated"
    assert service.details("sord").runtime_dependencies == ["serd"]
    assert service.details("ddate").origin == "curated"
    assert service.recipe("ddate").origin == "curated"
    with pytest.raises(NotFound):
        service.recipe("no-such-package")
    document = json.loads(service.catalog_document()[0])
    assert len(document["packages"]) == 11


def test_apt_index_files_are_read_through_apt(tmp_path: Path, index_text: str) -> None:
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "example_dists_bookworm_main_source_Sources").write_text(index_text)
    (lists / "example_dists_bookworm_InRelease").write_text("signed")
    files = find_sources_indexes(lists)
    assert [f.name for f in files] == ["example_dists_bookworm_main_source_Sources"]
    assert len(parse_index(read_index_files(files)).packages) == 11


def test_platform_and_foreign_binaries_are_not_dependencies() -> None:
    package = parse_source(
        {
            "Package": "demo",
            "Version": "1.0-1",
            "Directory": "pool/main/d/demo",
            "Build-Depends": "libltdl-dev, libfl-dev, libpython3.11-dev, python3-pytest, libtest-simple-perl, "
            "pybuild-plugin-pyproject, ghc-prof, libz-dev, bash-completion, ca-certificates",
        }
    )
    owners = {
        "libltdl-dev": "libtool",
        "libfl-dev": "flex",
        "libpython3.11-dev": "python3.11",
        "python3-pytest": "pytest",
        "libtest-simple-perl": "libtest-simple-perl",
        "pybuild-plugin-pyproject": "dh-python",
        "ghc-prof": "ghc",
        "libz-dev": "zlib",
        "bash-completion": "bash-completion",
        "ca-certificates": "ca-certificates",
    }
    mapped = map_build_depends(package, owners.get, TOOLCHAIN)
    assert mapped.tools == ("autotools", "flex", "python"), "a platform tool's own library is that tool"
    assert mapped.runtime == ("zlib",) and mapped.build == ()
    assert "python3-pytest (not on the platform)" in mapped.dropped
    assert "ghc-prof (not on the platform)" in mapped.dropped
    assert "bash-completion (Debian packaging)" in mapped.dropped, "where completions go, not a library"
    assert "ca-certificates (Debian packaging)" in mapped.dropped, "the system's CA store, read at run time"


def test_dependency_cycles_are_cut_where_they_close() -> None:
    graph = {"a": ("b", "c"), "b": ("d",), "c": (), "d": ("a",), "e": ("a",)}

    def deps(name: str) -> tuple[str, ...]:
        return graph.get(name, ())

    assert without_cycles("a", graph["a"], deps) == (("c",), ("b",)), "b leads back to a: cut"
    assert without_cycles("d", graph["d"], deps) == ((), ("a",))
    assert without_cycles("e", graph["e"], deps) == (("a",), ()), "e is not on the cycle: it keeps a"
    assert without_cycles("a", ("c",), deps, limit=0) == (("c",), ()), "a leaf is never cut"
    wide = {"x": tuple(f"n{i}" for i in range(10))}
    assert without_cycles("root", ("x",), lambda n: wide.get(n, ()), limit=5) == ((), ("x",)), "too large: cut"


def test_catalog_update_command_loads_a_file_and_refuses_bad_input(tmp_path: Path) -> None:
    from tests.conftest import user_env

    env = user_env(tmp_path)
    loaded = subprocess.run(
        [sys.executable, "-m", "pkgc", "farm", "catalog", "update", "--from", str(FIXTURE)],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr
    assert "Debian catalog: 11 source packages (0 skipped)" in loaded.stdout
    assert DebianCatalog(tmp_path / "farm" / "debian" / "index.sqlite").count() == 11
    missing = subprocess.run(
        [sys.executable, "-m", "pkgc", "farm", "catalog", "update", "--from", str(tmp_path / "nope")],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1, missing.stderr
    assert "cannot read" in missing.stderr


def test_update_index_needs_a_deb_entry(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text("# nothing enabled\ndeb-src http://example.invalid/debian bookworm main\n")
    with pytest.raises(UsageError, match="no usable deb entry"):
        update_index(tmp_path / "home", apt_root=tmp_path)


def test_plan_visits_a_shared_dependency_once() -> None:
    """A Debian closure shares dependencies everywhere: planning asks for each recipe once, not once per path."""
    from pkgc.core.recipe import BuildInstructions, Recipe, SourceVersion

    layers = 12  # 2 packages per layer, each needing both of the next: 2**12 paths without the memo
    asked: list[str] = []

    def recipe(name: str) -> Recipe:
        asked.append(name)
        layer = int(name.split("-")[1])
        deps = () if layer == layers else (f"p-{layer + 1}-a", f"p-{layer + 1}-b")
        source = SourceVersion("1.0", "a" * 64, ("https://example.org/x.tar.gz",))
        return Recipe(name, "", "", "", (source,), BuildInstructions("make"), build_dependencies=deps)

    specs, requested = plan_builds([PackageRequest("p-0-a")], recipe, detect_platform())
    assert len(specs) == 2 * layers + 1 and len(requested) == 1
    assert len(asked) == len(set(asked)) == 2 * layers + 1


def test_catalog_names_what_a_recipe_leaves_out(tmp_path: Path, index_text: str) -> None:
    load_index_text(tmp_path, index_text)
    catalog = DebianCatalog(tmp_path / "debian" / "index.sqlite")
    assert catalog.dropped("nothing") is None
    dropped = catalog.dropped("sord")
    assert dropped is not None and "libpcre2-dev" in dropped and "debhelper-compat (Debian packaging)" in dropped


def test_a_new_index_is_a_new_identity(tmp_path: Path, index_text: str) -> None:
    load_index_text(tmp_path, index_text)
    catalog = DebianCatalog(tmp_path / "debian" / "index.sqlite")
    before = catalog.identity("sord")
    assert catalog.recipe("sord") is not None and catalog.recipe("sord").runtime_dependencies == ("serd",)  # type: ignore[union-attr]
    without_serd = "\n\n".join(p for p in index_text.split("\n\n") if not p.startswith("Package: serd\n"))
    load_index_text(tmp_path, without_serd)
    assert catalog.identity("sord") != before, "sord's stanza is the same, but what libserd-dev maps to is not"
    assert catalog.recipe("sord").runtime_dependencies == ()  # type: ignore[union-attr]
