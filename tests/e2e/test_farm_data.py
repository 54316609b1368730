"""End-to-end: the embedded farm's own data (its SQLite database, its files, its recipes) survives what happens to
it, and says what is wrong when it cannot.

Each test runs its own farm (one worker) in a private farm home, so that it can stop it, damage it or reset it
without touching the session's farm. The farm that built `greet` once is copied for each test: a copy is a farm
home exactly as a clean `farm stop` left it.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import _serve, greet_source, make_tarball, user_env

pytestmark = pytest.mark.e2e


@dataclass
class PrivateFarm:
    root: Path
    env: dict[str, str]

    @property
    def home(self) -> Path:
        return Path(self.env["PKGC_FARM_HOME"])

    def pkgc(self, *args: str, stdin: str | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pkgc", *args],
            env=self.env,
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def ok(self, *args: str) -> str:
        result = self.pkgc(*args)
        assert result.returncode == 0, f"pkgc {' '.join(args)} exited {result.returncode}:\n{result.stderr}"
        return result.stdout

    def url(self) -> str:
        return str(json.loads((self.home / "state.json").read_text())["url"])

    def greet_builds(self) -> list[dict[str, str]]:
        """Every build of greet the farm finished, from its event log: one line per compile."""
        events = self.home / "events.jsonl"
        lines = events.read_text().splitlines() if events.exists() else []
        return [e for e in map(json.loads, lines) if e["name"] == "greet"]

    def install_greet(self, prefix_name: str) -> None:
        prefix = self.root / prefix_name
        self.ok("install", "greet", "--prefix", str(prefix), "--wait")
        ran = subprocess.run([str(prefix / "bin" / "greet")], capture_output=True, text=True, check=True)
        assert ran.stdout.strip() == "greet 2.0"

    def stop(self) -> None:
        self.pkgc("farm", "stop", timeout=120)


def _environment(root: Path, farm_home: Path, recipes: Path) -> dict[str, str]:
    return user_env(root, PKGC_FARM_HOME=str(farm_home), PKGC_RECIPE_PATH=str(recipes))


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A recipe directory with greet, whose sources a loopback server serves."""
    root = tmp_path_factory.mktemp("farmdata-sources")
    served = root / "served"
    served.mkdir()
    server, port = _serve(served)
    recipes = root / "recipes"
    recipes.mkdir()
    files = greet_source("2.0")
    # Like autotools' install rules: directories by mkdir -p and files by cp, whose modes follow the umask.
    files["Makefile"] += (
        b"\tmkdir -p $(DESTDIR)$(PREFIX)/share/doc/greet\n\tcp notes.txt $(DESTDIR)$(PREFIX)/share/doc/greet/\n"
    )
    sha = make_tarball(served / "greet-2.0.tar.gz", "greet-2.0", files)
    (recipes / "greet.toml").write_text(
        f"""name = "greet"
summary = "Says which version it is"
[[versions]]
version = "2.0"
sha256 = "{sha}"
urls = ["http://127.0.0.1:{port}/greet-2.0.tar.gz"]
[build]
system = "make"
install_args = ["PREFIX={{prefix}}"]
"""
    )
    try:
        yield recipes
    finally:
        server.shutdown()


@pytest.fixture(scope="module")
def built_home(sources: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A farm home whose farm built greet once and was stopped cleanly."""
    root = tmp_path_factory.mktemp("farmdata-template")
    farm = PrivateFarm(root, _environment(root, root / "farm", sources))
    try:
        farm.ok("farm", "up", "--workers", "1")
        farm.install_greet("prefix0")
        assert len(farm.greet_builds()) == 1
    finally:
        farm.stop()
    yield farm.home


@pytest.fixture
def farm(built_home: Path, sources: Path, tmp_path: Path) -> Iterator[PrivateFarm]:
    home = tmp_path / "farm"
    shutil.copytree(built_home, home, symlinks=True)
    started = PrivateFarm(tmp_path, _environment(tmp_path, home, sources))
    try:
        yield started
    finally:
        started.stop()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_clean_stop_checkpoints_the_database_so_builds_survive_losing_the_wal(farm: PrivateFarm) -> None:
    wal = farm.home / "farm.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0, f"farm stop left a {wal.stat().st_size}-byte WAL"
    wal.unlink(missing_ok=True)
    (farm.home / "farm.db-shm").unlink(missing_ok=True)
    farm.ok("farm", "up", "--workers", "1")
    builds = httpx.get(f"{farm.url()}/v1/packages/greet/builds", timeout=30).json()["builds"]
    assert [b["status"] for b in builds] == ["ready"]
    farm.install_greet("prefix1")
    assert len(farm.greet_builds()) == 1, "the build was lost with the WAL and compiled again"


def _damage(database: Path) -> None:
    """Overwrite every page but the first (the header and the schema) with garbage."""
    size = database.stat().st_size
    page = 4096
    assert size > page, f"the farm database is only {size} bytes: nothing to damage"
    with database.open("r+b") as handle:
        handle.seek(page)
        handle.write(os.urandom(size - page))


def test_a_damaged_database_stops_the_start_with_one_line_and_reset_readopts_the_artifacts(
    farm: PrivateFarm,
) -> None:
    database = farm.home / "farm.db"
    _damage(database)
    for command in (["farm", "up", "--workers", "1"], ["install", "greet", "--prefix", str(farm.root / "p")]):
        result = farm.pkgc(*command, timeout=120)
        assert result.returncode != 0, result.stdout
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, result.stderr
        assert str(database) in errors[0] and "pkgc farm reset" in errors[0], errors[0]
    assert not (farm.root / "p").exists() or not (farm.root / "p" / "bin").exists()

    damaged = database.read_bytes()
    declined = farm.pkgc("farm", "reset", stdin="n\n")
    assert declined.returncode != 0
    assert database.read_bytes() == damaged, "a declined reset changed the database"

    reset = farm.pkgc("farm", "reset", "--yes")
    assert reset.returncode == 0, reset.stderr
    assert "re-adopted 1 build" in reset.stdout, reset.stdout
    farm.install_greet("prefix2")
    assert len(farm.greet_builds()) == 1, "the reset lost the artifact: greet was compiled again"


def test_reset_refuses_while_the_farm_runs(farm: PrivateFarm) -> None:
    farm.ok("farm", "up", "--workers", "1")
    before = (farm.home / "farm.db").read_bytes()
    result = farm.pkgc("farm", "reset", "--yes")
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "farm stop" in errors[0], result.stderr
    assert httpx.get(f"{farm.url()}/v1/health", timeout=30).status_code == 200
    assert (farm.home / "farm.db").read_bytes()[:100] == before[:100]


def test_reset_leaves_out_artifacts_that_do_not_prove_their_build(farm: PrivateFarm) -> None:
    artifacts = sorted((farm.home / "blobs" / "artifacts").rglob("*.tar.zst"))
    assert len(artifacts) == 1
    real = artifacts[0]
    # A copy under another build's key: its manifest names the original key, so it proves nothing.
    impostor = real.parent / ("f" * 64 + ".tar.zst")
    shutil.copyfile(real, impostor)
    # Garbage under a third key.
    garbage = real.parent / ("e" * 64 + ".tar.zst")
    garbage.write_bytes(b"not an artifact")
    reset = farm.pkgc("farm", "reset", "--yes")
    assert reset.returncode == 0, reset.stderr
    assert "re-adopted 1 build" in reset.stdout, reset.stdout
    assert impostor.name in reset.stdout and garbage.name in reset.stdout, reset.stdout
    assert impostor.exists() and garbage.exists(), "reset deletes nothing"
    farm.ok("farm", "up", "--workers", "1")
    for key in ("f" * 64, "e" * 64):
        assert httpx.get(f"{farm.url()}/v1/builds/{key}", timeout=30).status_code == 404


def test_the_farm_files_are_readable_by_their_owner_only(farm: PrivateFarm) -> None:
    os.chmod(farm.home, 0o755)  # a home made by an older pkgc, or by a client with a lax umask
    farm.ok("farm", "up", "--workers", "1")
    farm.install_greet("prefix3")
    assert _mode(farm.home) == 0o700
    for name in ["farm.db", "farm.db-wal", "state.json", "farm.log", "events.jsonl"]:
        assert (farm.home / name).exists(), name
    # The hermetic build roots hold the system's own files (hard links keep their modes): the directory that holds
    # them is the owner's alone, so nobody else reaches them through the farm.
    roots = farm.home / "roots"
    assert roots.is_dir() and _mode(roots) == 0o700
    loose = {
        str(path.relative_to(farm.home)): f"{_mode(path):o}"
        for path in farm.home.rglob("*")
        if not path.is_symlink() and roots not in path.parents and _mode(path) != (0o700 if path.is_dir() else 0o600)
    }
    assert not loose, f"farm files others can read: {loose}"
    # What the farm builds keeps its own modes: the farm's umask does not reach the build.
    assert _mode(farm.root / "prefix3" / "bin" / "greet") == 0o755
    assert _mode(farm.root / "prefix3" / "share" / "doc" / "greet") == 0o755
    assert _mode(farm.root / "prefix3" / "share" / "doc" / "greet" / "notes.txt") == 0o644


MALFORMED = """name = "broken-recipe"
summary = "A recipe with an error"
[[versions]]
version = "1.0"
sha256 = "not-hex"
urls = ["http://127.0.0.1:1/x.tar.gz"]
[build]
system = "make"
"""


def test_a_bad_recipe_is_skipped_and_named_and_the_farm_runs(sources: Path, tmp_path: Path) -> None:
    recipes = tmp_path / "recipes"
    shutil.copytree(sources, recipes)
    (recipes / "broken-recipe.toml").write_text(MALFORMED)
    (recipes / "notoml.toml").write_text("name = \n")
    farm = PrivateFarm(tmp_path, _environment(tmp_path, tmp_path / "farm", recipes))
    try:
        farm.ok("farm", "up", "--workers", "1")
        status = farm.ok("farm", "status")
        assert "broken-recipe.toml" in status and "sha256" in status, status
        assert "notoml.toml" in status and "TOML" in status, status
        report = json.loads(farm.ok("farm", "status", "--json"))
        skipped = {entry["file"]: entry["error"] for entry in report["skipped_recipes"]}
        assert set(skipped) == {str(recipes / "broken-recipe.toml"), str(recipes / "notoml.toml")}
        assert all("\n" not in error for error in skipped.values())
        log = (farm.home / "farm.log").read_text()
        assert "broken-recipe.toml" in log and "notoml.toml" in log
        names = [p["name"] for p in httpx.get(f"{farm.url()}/v1/catalog", timeout=30).json()["packages"]]
        assert "greet" in names and "hello" in names and "broken-recipe" not in names
        # The embedded farm is this user's alone: a DNS-rebound request naming another host is refused.
        rebound = httpx.get(f"{farm.url()}/v1/catalog", headers={"Host": "evil.example"}, timeout=30)
        assert rebound.status_code == 403 and rebound.json()["error"] == "forbidden_host"
    finally:
        farm.stop()
