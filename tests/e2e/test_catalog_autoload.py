"""End-to-end: a newcomer on a fresh machine finds Debian packages without knowing `pkgc farm catalog update`.

A fresh HOME, no farm running: `pkgc search libtar` starts the embedded farm, whose start begins loading the Debian
catalog in the background. The source of the index is the fixture Sources file through PKGC_DEBIAN_SOURCES_FILE
(loopback only), read through a FIFO that the test fills when it chooses, so "still loading" is a state the test
holds, not a race it hopes to win. Then the failure path (a Sources file that does not exist: failed with why, tried
again at the next farm start, not in a loop), and a load that stops with its farm and begins again at the next start.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pkgc.farm.debian_state import INTERRUPTED
from tests.conftest import processes_with_arguments, user_env

pytestmark = pytest.mark.e2e

FIXTURE = Path(__file__).parent.parent / "fixtures" / "debian" / "Sources"
Pkgc = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def newcomer(tmp_path: Path) -> Iterator[tuple[Pkgc, Path, Path]]:
    """(run pkgc as the newcomer, the Sources path the farm loads, the farm's home), with the autoload on."""
    sources = tmp_path / "Sources"
    env = user_env(tmp_path, PKGC_DEBIAN_CATALOG_AUTOLOAD="1", PKGC_DEBIAN_SOURCES_FILE=str(sources))

    def pkgc(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pkgc", *args], env=env, capture_output=True, text=True, timeout=180, check=False
        )

    try:
        yield pkgc, sources, tmp_path / "farm"
    finally:
        pkgc("farm", "stop")


def feed(fifo: Path, text: str, limit: float = 60) -> None:
    """Write `text` into the FIFO once the update opened it for reading (bounded wait)."""
    deadline = time.monotonic() + limit
    while True:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError as exc:
            if exc.errno != errno.ENXIO or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    os.set_blocking(fd, True)
    with os.fdopen(fd, "w", encoding="utf-8") as writer:
        writer.write(text)


def until(
    check: Callable[[], subprocess.CompletedProcess[str] | None], limit: float = 60
) -> subprocess.CompletedProcess[str]:
    """The first result `check` accepts, asking again every 0.3 s for at most `limit` seconds."""
    deadline = time.monotonic() + limit
    while True:
        result = check()
        if result is not None:
            return result
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.3)


def succeeded(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str] | None:
    return result if result.returncode == 0 else None


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def test_a_newcomers_search_first_says_loading_then_finds_the_package(newcomer: tuple[Pkgc, Path, Path]) -> None:
    pkgc, sources, home = newcomer
    os.mkfifo(sources)

    first = pkgc("search", "libtar")
    assert first.returncode == 3, first.stderr
    assert first.stdout == ""
    [line] = error_lines(first.stderr)
    assert line.startswith("error: no package matches 'libtar' (the farm's Debian catalog is loading (started "), line
    assert line.endswith("; try again in a minute)"), line
    as_json = pkgc("search", "libtar", "--json")
    assert as_json.returncode == 3 and json.loads(as_json.stdout) == [], "--json: still a JSON array, same exit"
    install = pkgc("install", "libtar", "--prefix", str(home.parent / "prefix"))
    assert install.returncode == 3, install.stderr
    assert "unknown package 'libtar' (the farm's Debian catalog is still loading" in install.stderr
    assert "loading the Debian catalog in the background" in (home / "farm.log").read_text()
    beside = pkgc("farm", "catalog", "update", "--from", str(FIXTURE))
    assert beside.returncode == 7, beside.stderr
    assert error_lines(beside.stderr)[0].startswith("error: the Debian catalog is being loaded already"), beside.stderr

    feed(sources, FIXTURE.read_text(encoding="utf-8"))
    found = until(lambda: succeeded(pkgc("search", "libtar", "--json")))
    assert json.loads(found.stdout)[0]["name"] == "libtar", "found without any 'catalog update' or 'pkgc update'"
    names = [r["name"] for r in json.loads(pkgc("search", "cbor", "--json").stdout)]
    assert names == ["libcbor"], "a substring of a name"
    assert "hello" in pkgc("search", "hello").stdout, "the curated recipes are still there"
    nothing = pkgc("search", "no-such-package-anywhere")
    assert error_lines(nothing.stderr) == ["error: no package matches 'no-such-package-anywhere'"], "loaded: no hint"
    log = (home / "debian" / "update.log").read_text()
    assert "loaded 11 source packages" in log, log
    status = pkgc("farm", "status")
    assert "Debian catalog: 11 source packages (loaded " in status.stdout, status.stdout
    assert json.loads(pkgc("farm", "status", "--json").stdout)["debian_catalog"]["packages"] == 11

    # The next start finds the index: it loads nothing again.
    assert pkgc("farm", "stop").returncode == 0
    assert pkgc("farm", "up").returncode == 0
    assert (home / "debian" / "update.log").read_text().count("loading the Debian catalog of") == 1


def test_a_failed_load_is_reported_and_tried_again_at_the_next_start(newcomer: tuple[Pkgc, Path, Path]) -> None:
    pkgc, sources, home = newcomer  # `sources` does not exist

    def failed() -> subprocess.CompletedProcess[str] | None:
        result = pkgc("search", "libtar")
        return result if "failed" in result.stderr else None

    result = until(failed)
    assert result.returncode == 3
    [line] = error_lines(result.stderr)
    assert line.startswith(
        f"error: no package matches 'libtar' (loading the farm's Debian catalog failed: cannot read "
        f"PKGC_DEBIAN_SOURCES_FILE={sources}: No such file or directory;"
    ), line
    assert line.endswith("'pkgc farm catalog update' tries again)"), line
    time.sleep(2)
    log = (home / "debian" / "update.log").read_text()
    assert log.count("loading the Debian catalog of") == 1, "not retried in a loop"
    assert "failed: " in log
    status = pkgc("farm", "status").stdout
    assert "Debian catalog: loading failed at " in status and "No such file or directory" in status, status

    sources.write_text(FIXTURE.read_text(encoding="utf-8"))
    assert pkgc("farm", "stop").returncode == 0
    # The client's copy says "failed", so the search asks the farm again; starting the farm tries the load again.
    found = until(lambda: succeeded(pkgc("search", "libtar", "--json")))
    assert json.loads(found.stdout)[0]["name"] == "libtar"
    assert (home / "debian" / "update.log").read_text().count("loading the Debian catalog of") == 2


def test_the_load_stops_with_its_farm_and_the_next_start_begins_it_again(newcomer: tuple[Pkgc, Path, Path]) -> None:
    pkgc, sources, home = newcomer
    os.mkfifo(sources)  # nobody writes: the load waits until the farm stops

    def updaters() -> list[int]:
        return processes_with_arguments(b"pkgc.farm.catalog_autoload", str(home).encode(), skip_zombies=True)

    assert "is loading" in pkgc("search", "libtar").stderr
    assert len(updaters()) == 1
    assert pkgc("farm", "stop").returncode == 0
    until(lambda: subprocess.CompletedProcess([], 0) if not updaters() else None, limit=30)
    debian = json.loads(pkgc("farm", "status", "--json").stdout)["debian_catalog"]
    # Why it stopped, as the update recorded it; or, when the stop's grace period ran out before it could (a loaded
    # machine: the stop escalates to SIGKILL), as the next reader infers it from the free lock.
    assert debian["state"] == "failed", debian
    assert "the farm stopped before" in debian["error"] or INTERRUPTED in debian["error"], debian

    # The next start (asked for by the search: the copy says "failed") begins the load again.
    again = pkgc("search", "libtar")
    assert "is loading" in again.stderr, again.stderr
    feed(sources, FIXTURE.read_text(encoding="utf-8"))
    found = until(lambda: succeeded(pkgc("search", "libtar", "--json")))
    assert json.loads(found.stdout)[0]["name"] == "libtar"
