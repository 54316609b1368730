"""Fetch the sources of recipes into a directory laid out as a farm's source cache (one file per sha256).

CI runs this once (sources and Debian patch series), next to installing the system packages, so that the farm the tests start can be seeded from it
and never leave loopback (the tests run it with PKGC_FETCH_LOOPBACK_ONLY=1). It fetches exactly as a worker does:
the recipe's URLs, then its mirrors (mirror://debian/ through apt's configuration), each checked against its sha256.

    python -m pkgc.worker.prefetch DIR               # every bundled recipe, every version, and the Debian part
    python -m pkgc.worker.prefetch DIR hello zlib    # only these packages

The Debian part: the Sources index fetched through apt (deb-src entries derived from apt's deb entries, lists kept
in DIR/debian/apt), the stanzas of the generated-recipe test packages (`GENERATED_TEST_PACKAGES`) written to
DIR/debian/Sources, and their orig and Debian tarballs into DIR: the test farm loads that excerpt as its Debian
catalog and builds those packages from the cache.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from pkgc.core.errors import PkgcError, SourceUnavailable
from pkgc.core.recipe import PatchSeries, Recipe, SourceVersion, load_recipe
from pkgc.recipes import bundled_recipe_dir
from pkgc.worker.fetch import SourceFetcher

DEFAULT_DIR_ENV = "PKGC_TEST_SOURCES"
# Generated (Debian catalog) recipes the e2e tests install: one autotools, one cmake and one meson package, small,
# with no curated recipe, whose builds need no other catalog package.
GENERATED_TEST_PACKAGES = ("libtar", "libevdevplus", "serd")


def default_dir() -> Path:
    """Where CI keeps the prefetched sources for the tests and benchmarks, unless PKGC_TEST_SOURCES says otherwise."""
    configured = os.environ.get(DEFAULT_DIR_ENV)
    return Path(configured) if configured else Path.home() / ".cache" / "pkgc" / "test-sources"


def bundled_recipes(names: list[str] | None = None) -> list[Recipe]:
    recipes = [load_recipe(path) for path in sorted(bundled_recipe_dir().glob("*.toml"))]
    return [r for r in recipes if not names or r.name in names]


def _files(version: SourceVersion) -> list[tuple[str, SourceVersion | PatchSeries]]:
    """What a version fetches: its source, and its patch series when it has one (labelled for messages)."""
    found: list[tuple[str, SourceVersion | PatchSeries]] = [("", version)]
    if version.series is not None:
        found.append((" (patch series)", version.series))
    return found


def missing_sources(directory: Path, recipes: list[Recipe]) -> list[str]:
    """`name version` of every source (or patch series) not yet in `directory`."""
    return [
        f"{r.name} {v.version}{label}"
        for r in recipes
        for v in r.versions
        for label, item in _files(v)
        if not (directory / item.sha256).is_file()
    ]


def seed_cache(cache: Path, names: list[str] | None = None) -> None:
    """Copy the prefetched sources of the bundled recipes (or of `names`) into a farm's source cache, so that the
    farm builds them without fetching; refuse, naming the command to run, if any of them was not prefetched."""
    prefetched = default_dir()
    recipes = bundled_recipes(names)
    missing = missing_sources(prefetched, recipes)
    if missing:
        raise SourceUnavailable(
            f"sources not prefetched into {prefetched}: {', '.join(missing)}",
            hint="run 'python -m pkgc.worker.prefetch' (bash .ci/run does)",
        )
    cache.mkdir(parents=True, exist_ok=True)
    for recipe in recipes:
        for version in recipe.versions:
            for _label, item in _files(version):
                shutil.copyfile(prefetched / item.sha256, cache / item.sha256)


def debian_excerpt(directory: Path) -> Path:
    """Where the prefetched Sources excerpt of the generated-recipe test packages is kept."""
    return directory / "debian" / "Sources"


def prefetch_debian(directory: Path, fetcher: SourceFetcher) -> int:
    """Fetch the Sources index through apt, keep the test packages' stanzas, fetch their tarballs; failures."""
    from pkgc.core.debian import generate_recipe, parse_index, select_stanzas
    from pkgc.core.recipe import SourceVersion
    from pkgc.core.toolchain import load_toolchain
    from pkgc.farm.debian_catalog import fetch_sources_text

    text = fetch_sources_text(directory / "debian" / "apt")
    excerpt = select_stanzas(text, GENERATED_TEST_PACKAGES)
    parsed = parse_index(excerpt)
    failures = 0
    for name in GENERATED_TEST_PACKAGES:
        if name not in parsed.packages:
            print(f"debian {name}: not in the Sources index", file=sys.stderr)
            failures += 1
            continue
        recipe, _ = generate_recipe(parsed.packages[name], lambda _binary: None, load_toolchain())
        source = recipe.versions[0]
        wanted = [source]
        if source.series is not None:
            wanted.append(SourceVersion(source.version, source.series.sha256, (), source.series.mirrors))
        for item in wanted:
            try:
                print(f"debian {name} {item.version}: {fetcher.fetch(item)}")
            except PkgcError as exc:
                failures += 1
                print(f"debian {name}: {exc}", file=sys.stderr)
    target = debian_excerpt(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(excerpt, encoding="utf-8")
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory", type=Path, nargs="?", default=None, help="default: $PKGC_TEST_SOURCES")
    parser.add_argument("packages", nargs="*", help="only these recipes (default: all bundled ones)")
    args = parser.parse_args(argv)
    directory: Path = args.directory or default_dir()
    recipes = bundled_recipes(args.packages)
    fetcher = SourceFetcher(directory)
    failures = 0
    for recipe in recipes:
        for version in recipe.versions:
            for label, item in _files(version):
                try:
                    path = fetcher.fetch(item)
                    print(f"{recipe.name} {version.version}{label}: {path}")
                except PkgcError as exc:
                    failures += 1
                    print(f"{recipe.name} {version.version}{label}: {exc}", file=sys.stderr)
    if not args.packages:
        try:
            failures += prefetch_debian(directory, fetcher)
        except PkgcError as exc:
            failures += 1
            print(f"debian: {exc}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
