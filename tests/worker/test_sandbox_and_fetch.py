"""The worker's edges against real peers: real processes for the sandbox, a real loopback server for fetching."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import socket
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from pkgc.core.errors import SourceUnavailable
from pkgc.core.recipe import SourceVersion
from pkgc.worker.fetch import SourceFetcher, debian_mirrors_from_apt
from pkgc.worker.sandbox import BuildTimedOut, CommandFailed, Sandbox, bubblewrap_path
from tests.conftest import QuietHandler

BWRAP = bubblewrap_path()
SANDBOXES = [None] + ([BWRAP] if BWRAP else [])


def _processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains `text` (zombies have an empty one), found through /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.mark.parametrize("bwrap", SANDBOXES, ids=lambda b: "bubblewrap" if b else "plain")
def test_time_limit_kills_the_whole_process_tree(tmp_path: Path, bwrap: str | None) -> None:
    started_marker, alive_marker = tmp_path / "grandchild-started", tmp_path / "grandchild-alive"
    # A child that starts a grandchild which says it started, then would write a marker 30 s later: the kill at the
    # time limit must take both. The grandchild is found by its command line, which names the marker.
    script = (
        "import subprocess,sys,time; "
        f"subprocess.Popen(['sh','-c','touch {started_marker}; sleep 30; touch {alive_marker}']); time.sleep(60)"
    )
    sandbox = Sandbox(tmp_path, bwrap=bwrap, deadline=time.monotonic() + 5.0)
    began = time.monotonic()
    with pytest.raises(BuildTimedOut), (tmp_path / "log").open("wb") as log:
        sandbox.run(["python3", "-c", script], cwd=tmp_path, env=dict(os.environ), log=log)
    assert time.monotonic() - began < 20
    assert started_marker.exists(), "the grandchild never started, so this proves nothing: raise the time limit"
    deadline = time.monotonic() + 10
    while _processes_mentioning(str(alive_marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _processes_mentioning(str(alive_marker)) == [], "the grandchild survived the time limit"
    assert not alive_marker.exists()


@pytest.mark.parametrize("bwrap", SANDBOXES, ids=lambda b: "bubblewrap" if b else "plain")
def test_failing_command_is_reported_with_its_status_and_logged(tmp_path: Path, bwrap: str | None) -> None:
    sandbox = Sandbox(tmp_path, bwrap=bwrap, deadline=time.monotonic() + 30)
    log_path = tmp_path / "log"
    with pytest.raises(CommandFailed) as failure, log_path.open("wb") as log:
        sandbox.run(["sh", "-c", "echo about to fail; exit 3"], cwd=tmp_path, env=dict(os.environ), log=log)
    assert failure.value.returncode == 3
    assert "about to fail" in log_path.read_text()


def test_bubblewrap_build_has_no_network_and_a_read_only_system(tmp_path: Path) -> None:
    assert BWRAP is not None, "bubblewrap is missing or cannot create namespaces here: the sandbox is untested"
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    probe = (
        "import socket,sys\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {port}), timeout=2); print('CONNECTED')\n"
        "except OSError as e: print('NO-NETWORK', e)\n"
        "try:\n"
        "    open('/etc/pkgc-sandbox-probe', 'w'); print('WROTE-ETC')\n"
        "except OSError: print('READ-ONLY')\n"
        f"open('{tmp_path}/inside', 'w').write('ok')\n"
    )
    sandbox = Sandbox(tmp_path, bwrap=BWRAP, deadline=time.monotonic() + 30)
    log_path = tmp_path / "log"
    with log_path.open("wb") as log:
        sandbox.run(["python3", "-c", probe], cwd=tmp_path, env=dict(os.environ), log=log)
    listener.close()
    verdicts = log_path.read_text().splitlines()[-2:]  # the log starts with the command itself
    assert verdicts[0].startswith("NO-NETWORK")
    assert verdicts[1] == "READ-ONLY" and not Path("/etc/pkgc-sandbox-probe").exists()
    assert (tmp_path / "inside").read_text() == "ok", "the work directory stays writable"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    directory = tmp_path / "served"
    directory.mkdir()
    handler = partial(QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield directory, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_fetch_tries_urls_then_mirrors_and_trusts_only_the_checksum(tmp_path: Path, served: tuple[Path, str]) -> None:
    directory, base = served
    good = b"the real source" * 1000
    (directory / "tampered.tar.gz").write_bytes(b"not the source")
    (directory / "pool").mkdir()
    (directory / "pool" / "pkg.orig.tar.gz").write_bytes(good)
    sha = hashlib.sha256(good).hexdigest()
    log = io.StringIO()
    fetcher = SourceFetcher(tmp_path / "cache", debian_mirrors=[base], log=lambda line: log.write(line + "\n"))
    source = SourceVersion(
        "1.0",
        sha,
        urls=(f"{base}/missing.tar.gz", f"{base}/tampered.tar.gz"),
        mirrors=("mirror://debian/pool/pkg.orig.tar.gz",),
    )
    path = fetcher.fetch(source)
    assert path.read_bytes() == good and path.name == sha
    assert "sha256 mismatch" in log.getvalue() and "404" in log.getvalue()
    (directory / "pool" / "pkg.orig.tar.gz").unlink()
    assert fetcher.fetch(source) == path, "the second fetch is served from the cache"


def test_fetch_fails_clearly_when_nothing_matches(tmp_path: Path, served: tuple[Path, str]) -> None:
    directory, base = served
    (directory / "wrong.tar.gz").write_bytes(b"wrong")
    fetcher = SourceFetcher(tmp_path / "cache", debian_mirrors=[])
    source = SourceVersion("1.0", "0" * 64, urls=(f"{base}/wrong.tar.gz",), mirrors=("mirror://debian/x",))
    with pytest.raises(SourceUnavailable, match="no URL or mirror"):
        fetcher.fetch(source)
    assert not any((tmp_path / "cache").iterdir()), "nothing half-downloaded is left in the cache"


def test_a_loopback_only_fetcher_never_leaves_the_machine(tmp_path: Path, served: tuple[Path, str]) -> None:
    directory, base = served
    good = b"served on loopback" * 100
    (directory / "pool").mkdir()
    (directory / "pool" / "x.orig.tar.gz").write_bytes(good)
    fetcher = SourceFetcher(
        tmp_path / "cache", debian_mirrors=["http://archive.example/debian", base], loopback_only=True
    )
    assert fetcher.candidates("https://ftp.example.org/x.tar.gz") == []
    assert fetcher.candidates("mirror://debian/pool/x.orig.tar.gz") == [f"{base}/pool/x.orig.tar.gz"]
    outside = SourceVersion("1.0", "0" * 64, urls=("https://ftp.example.org/x.tar.gz",))
    with pytest.raises(SourceUnavailable) as refused:
        fetcher.fetch(outside)
    assert "loopback only" in str(refused.value)
    inside = SourceVersion("1.0", hashlib.sha256(good).hexdigest(), urls=("https://ftp.example.org/x.tar.gz",),
                           mirrors=("mirror://debian/pool/x.orig.tar.gz",))  # fmt: skip
    assert fetcher.fetch(inside).read_bytes() == good


def test_debian_mirrors_are_read_from_apt_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://archive.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n"
        "Types: deb\nURIs: http://archive.example/debian-security\nSuites: bookworm-security\nComponents: main\n"
    )
    (tmp_path / "sources.list").write_text("deb http://other.example/debian/ bookworm main\n")
    assert debian_mirrors_from_apt(tmp_path) == ["http://other.example/debian", "http://archive.example/debian"]


def test_steps_arguments_get_literal_braces_from_doubled_ones(tmp_path: Path) -> None:
    """A JSON argument and a shell's ${VAR} reach the command as written once their braces are doubled; the
    placeholders around them are still filled (the worker's own argument lists, not a shell, carry them)."""
    from pkgc.core.buildspec import PackageRequest, plan_builds
    from pkgc.core.platform import detect_platform
    from pkgc.core.recipe import parse_recipe
    from pkgc.core.relocation import PLACEHOLDER
    from pkgc.worker.builder import build_commands

    recipe_text = (
        'name = "demo"\nsummary = "A demo"\n\n[[versions]]\nversion = "1.0"\n'
        'sha256 = "' + "a" * 64 + '"\nurls = ["https://example.org/demo-1.0.tar.gz"]\n\n'
        "[build]\nsystem = \"steps\"\nsteps = [\n"
        '  ["sh", "-c", "mkdir -p {destdir}{prefix} && echo ${{HOME}} > x", "--", "{destdir}"],\n'
        '  ["write-json", "{{\\"jobs\\": {jobs}}}", "{destdir}{prefix}/share/demo.json"],\n'
        "]\n"
    )
    recipe = parse_recipe(recipe_text, source="demo.toml")
    specs, _ = plan_builds([PackageRequest("demo")], lambda name: recipe, detect_platform())
    values = {"prefix": PLACEHOLDER, "destdir": str(tmp_path / "stage"), "jobs": "3"}
    commands = build_commands(specs[0], tmp_path / "src", tmp_path / "stage", values)
    assert commands == [
        ["sh", "-c", f"mkdir -p {tmp_path}/stage{PLACEHOLDER} && echo ${{HOME}} > x", "--", str(tmp_path / "stage")],
        ["write-json", '{"jobs": 3}', f"{tmp_path}/stage{PLACEHOLDER}/share/demo.json"],
    ]
