"""Shared fixtures: an isolated user environment, loopback source server, and one embedded farm per session."""

from __future__ import annotations

import http.server
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import zstandard

# One moto server per session for the AWS adapters' tests (fixtures moto_server, aws_env, aws_settings).
pytest_plugins = ["tests.moto_server"]

# Small C projects of our own, served on loopback, for flows the Debian archive cannot give us.
BROKEN_C = b"int main(void) { return this_is_not_c; }\n"
SLOW_C = b'#include <stdio.h>\nint main(void) { puts("slowpoke " VERSION); return 0; }\n'
SLOW_MAKEFILE = b"""PREFIX ?= /usr/local
slowpoke: slowpoke.c
\t$(CC) $(CFLAGS) -DVERSION='"1.0"' -o slowpoke slowpoke.c $(LDFLAGS)
install: slowpoke
\tinstall -D -m 755 slowpoke $(DESTDIR)$(PREFIX)/bin/slowpoke
"""
BROKEN_MAKEFILE = b"""broken: broken.c
\t$(CC) $(CFLAGS) -o broken broken.c
install: broken
\tinstall -D -m 755 broken $(DESTDIR)$(PREFIX)/bin/broken
"""
FLAKY_MAKEFILE = """flaky: flaky.c
\ttest ! -e {marker} || {{ echo "flaky: {marker} exists, failing on purpose"; exit 1; }}
\t$(CC) $(CFLAGS) -o flaky flaky.c
install: flaky
\tinstall -D -m 755 flaky $(DESTDIR)$(PREFIX)/bin/flaky
"""
FLAKY_C = b'#include <stdio.h>\nint main(void) { puts("flaky built"); return 0; }\n'


GREET_MAKEFILE = b"""greet: greet.c
\t$(CC) $(CFLAGS) -o greet greet.c $(LDFLAGS)
install: greet
\tinstall -D -m 755 greet $(DESTDIR)$(PREFIX)/bin/greet
\tinstall -D -m 644 notes.txt $(DESTDIR)$(PREFIX)/share/greet/$(NOTES)
"""


def greet_source(version: str) -> dict[str, bytes]:
    """A tiny C program whose versions differ in output and in the files they install."""
    c = f'#include <stdio.h>\nint main(void) {{ puts("greet {version}"); return 0; }}\n'.encode()
    makefile = f"NOTES = notes-{version}.txt\n".encode() + GREET_MAKEFILE
    return {"greet.c": c, "Makefile": makefile, "notes.txt": f"notes of {version}\n".encode()}


def make_tarball(path: Path, top: str, files: dict[str, bytes], executable: Iterable[str] = ()) -> str:
    """Write a .tar.gz with one top directory (`top`; "" puts the files at the top, as some upstream tarballs and
    every Debian series do), the `executable` ones mode 0755 (a configure script); return its sha256."""
    import hashlib

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{top}/{name}" if top else name)
            info.size = len(data)
            info.mode = 0o755 if name in set(executable) else 0o644
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buffer.getvalue())
    return hashlib.sha256(buffer.getvalue()).hexdigest()


# Proxy settings of the developer's shell must not reach the processes the tests start: loopback traffic (the farm,
# the source server) sent to a proxy that is down, slow or logging fails the tests for reasons unrelated to pkgc.
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")
# The embedded farm loads Debian's catalog through apt when it starts without one: never in the tests (they stay on
# loopback), unless a test turns it on with a local Sources file (tests/e2e/test_catalog_autoload.py). Also set here
# for farms a test starts with this process's own environment.
DEBIAN_AUTOLOAD = "PKGC_DEBIAN_CATALOG_AUTOLOAD"
os.environ[DEBIAN_AUTOLOAD] = "0"
LOOPBACK_NO_PROXY = "127.0.0.1,localhost,::1"


def subprocess_env(settings: Mapping[str, str]) -> dict[str, str]:
    """The environment of every process the tests start: this one's, without pkgc's, XDG's, locale or proxy
    variables (in either case), with `NO_PROXY` covering loopback, and then `settings` on top."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PKGC_", "XDG_", "LC_", "LANG")) and k.upper() not in (*PROXY_VARIABLES, "NO_PROXY")
    }
    env.update(NO_PROXY=LOOPBACK_NO_PROXY, no_proxy=LOOPBACK_NO_PROXY)
    env[DEBIAN_AUTOLOAD] = "0"  # a farm started without a Debian catalog would fetch one through apt: off-loopback
    env.update(settings)
    return env


def artifact_bytes(manifest_json: str, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    """A .tar.zst artifact as the farm lays it out (the manifest first, then `members` with their data), for tests
    that serve crafted or honest artifacts without a farm."""
    from pkgc.artifact import MANIFEST_NAME

    raw = io.BytesIO()
    with (
        zstandard.ZstdCompressor().stream_writer(raw, closefd=False) as compressed,
        tarfile.open(fileobj=compressed, mode="w|") as tar,
    ):
        manifest_bytes = manifest_json.encode()
        info = tarfile.TarInfo(MANIFEST_NAME)
        info.size = len(manifest_bytes)
        tar.addfile(info, io.BytesIO(manifest_bytes))
        for member, data in members:
            member.size = len(data) if data is not None else 0
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
    return raw.getvalue()


def user_env(root: Path, **settings: str) -> dict[str, str]:
    """A new user's environment under `root`: HOME, the XDG directories and a farm home of its own, the farm on
    loopback only and no colour (`subprocess_env` underneath); `settings` on top. HOME is created."""
    (root / "home").mkdir(parents=True, exist_ok=True)
    return subprocess_env(
        {
            "HOME": str(root / "home"),
            "XDG_CONFIG_HOME": str(root / "config"),
            "XDG_DATA_HOME": str(root / "data"),
            "XDG_CACHE_HOME": str(root / "cache"),
            "PKGC_FARM_HOME": str(root / "farm"),
            "PKGC_FETCH_LOOPBACK_ONLY": "1",  # tests stay on loopback: real sources come from a seeded cache
            "NO_COLOR": "1",
            **settings,
        }
    )


@dataclass
class FarmEnv:
    root: Path
    env: dict[str, str]
    url: str
    farm_home: Path
    flaky_marker: Path  # while this file exists, the test recipe "flaky" fails to build

    def pkgc(self, *args: str, check: bool = False, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "pkgc", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"pkgc {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
        return result

    def pkgc_argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "pkgc", *args]

    def api(self) -> httpx.Client:
        """The tests' own client of the farm: straight to loopback, whatever proxy the environment names."""
        return httpx.Client(base_url=self.url, timeout=60, trust_env=False)

    def finished_events(self, key: str) -> list[dict[str, str]]:
        path = self.farm_home / "events.jsonl"
        if not path.exists():
            return []
        return [e for e in map(json.loads, path.read_text().splitlines()) if e["key"] == key]

    def worker_pids(self) -> list[int]:
        """Live worker processes of this farm, found through /proc (they are restarted with new pids)."""
        return processes_with_arguments(b"pkgc.worker", str(self.farm_home).encode())

    def wait_finished(self, key: str, limit: float = 300) -> dict[str, Any]:
        """The build `key` as the farm reports it once finished, long-polling for at most `limit` seconds."""
        deadline = time.monotonic() + limit
        with self.api() as api:
            while time.monotonic() < deadline:
                answer = api.post("/v1/wait", json={"keys": [key], "timeout": 20}).json()
                if answer["finished"]:
                    return answer["finished"][0]  # type: ignore[no-any-return]
        raise AssertionError(f"build {key} did not finish in {limit}s")


def processes_with_arguments(*arguments: bytes, skip_zombies: bool = False) -> list[int]:
    """Processes whose command line holds each of `arguments` as a whole argument, found through /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] if skip_zombies else ""
        except (OSError, IndexError):
            continue
        if state != "Z" and all(argument in argv for argument in arguments):
            found.append(int(entry.name))
    return found


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def _serve(directory: Path) -> tuple[http.server.ThreadingHTTPServer, int]:
    handler = partial(QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def _make_recipe(directory: Path, name: str, summary: str, sha: str, port: int) -> None:
    """A one-version recipe of a test project served on loopback, built by its plain Makefile."""
    (directory / f"{name}.toml").write_text(
        f"""name = "{name}"
summary = "{summary}"
[[versions]]
version = "1.0"
sha256 = "{sha}"
urls = ["http://127.0.0.1:{port}/{name}-1.0.tar.gz"]
[build]
system = "make"
install_args = ["PREFIX={{prefix}}"]
"""
    )


def _test_recipes(directory: Path, sources: Path, port: int, flaky_marker: Path) -> None:
    directory.mkdir()
    # The marker lives outside /tmp (the build sandbox mounts a fresh /tmp); its directory is shown to the hermetic
    # builds through PKGC_SANDBOX_EXTRA_RO.
    flaky_sha = make_tarball(
        sources / "flaky-1.0.tar.gz",
        "flaky-1.0",
        {"flaky.c": FLAKY_C, "Makefile": FLAKY_MAKEFILE.format(marker=flaky_marker).encode()},
    )
    _make_recipe(directory, "flaky", "Fails to build while a marker file exists, to test retrying failed builds",
                 flaky_sha, port)  # fmt: skip
    broken_sha = make_tarball(
        sources / "broken-1.0.tar.gz", "broken-1.0", {"broken.c": BROKEN_C, "Makefile": BROKEN_MAKEFILE}
    )
    slow_sha = make_tarball(
        sources / "slowpoke-1.0.tar.gz", "slowpoke-1.0", {"slowpoke.c": SLOW_C, "Makefile": SLOW_MAKEFILE}
    )
    greet_versions = ""
    for version in ("1.0", "1.1", "2.0"):
        sha = make_tarball(sources / f"greet-{version}.tar.gz", f"greet-{version}", greet_source(version))
        greet_versions += f"""
[[versions]]
version = "{version}"
sha256 = "{sha}"
urls = ["http://127.0.0.1:{port}/greet-{version}.tar.gz"]
"""
    (directory / "greet.toml").write_text(
        f"""name = "greet"
summary = "Says which version it is; each version installs a differently named notes file"
{greet_versions}
[build]
system = "make"
install_args = ["PREFIX={{prefix}}"]
[smoke]
command = ["bin/greet"]
expect = "greet"
"""
    )
    impostor_sha = make_tarball(sources / "impostor-1.0.tar.gz", "impostor-1.0", greet_source("impostor"))
    _make_recipe(
        directory, "impostor", "Ships bin/greet too, to test file conflicts between packages", impostor_sha, port
    )
    _make_recipe(directory, "broken", "A C project that does not compile", broken_sha, port)
    (directory / "slowpoke.toml").write_text(
        f"""name = "slowpoke"
summary = "A C project whose build takes a while, for killing workers in the middle"
[[versions]]
version = "1.0"
sha256 = "{slow_sha}"
urls = ["http://127.0.0.1:{port}/slowpoke-1.0.tar.gz"]
[build]
system = "steps"
steps = [["sleep", "8"], ["make", "slowpoke"], ["make", "install", "DESTDIR={{destdir}}", "PREFIX={{prefix}}"]]
[smoke]
command = ["bin/slowpoke"]
expect = "slowpoke 1.0"
"""
    )
    _dependency_recipes(directory, sources, port)
    _hermetic_recipes(directory, sources, port)


def _hermetic_recipes(directory: Path, sources: Path, port: int) -> None:
    """Builds that reach for the build host's libraries: `linkszstd` links libzstd.so.1 by file name (the library
    is in the toolchain's closure, so the link works and only the NEEDED check can stop it), `wantsreadline` links
    -lreadline without depending on the farm's readline."""
    programs = {
        "linkszstd": (
            b'#include <stdio.h>\nunsigned ZSTD_versionNumber(void);\n'
            b'int main(void) { printf("zstd %u\\n", ZSTD_versionNumber()); return 0; }\n',
            "-l:libzstd.so.1",
        ),
        "wantsreadline": (
            b"char *readline(const char *prompt);\nint main(void) { return readline(0) != 0; }\n",
            "-lreadline",
        ),
    }
    for name, (code, library) in programs.items():
        sha = make_tarball(sources / f"{name}-1.0.tar.gz", f"{name}-1.0", {f"{name}.c": code})
        (directory / f"{name}.toml").write_text(
            f"""name = "{name}"
summary = "Links {library} from the build host"
[[versions]]
version = "1.0"
sha256 = "{sha}"
urls = ["http://127.0.0.1:{port}/{name}-1.0.tar.gz"]
[build]
system = "steps"
steps = [
  ["cc", "-o", "{name}", "{name}.c", "{library}"],
  ["install", "-D", "-m", "755", "{name}", "{{destdir}}{{prefix}}/bin/{name}"],
]
"""
        )


GEN_C = b'#include <stdio.h>\nint main(void) { puts("#define GENERATED \\"made by gen 1.0\\""); return 0; }\n'
GEN_MAKEFILE = b"""gen: gen.c
\t$(CC) $(CFLAGS) -o gen gen.c $(LDFLAGS)
install: gen
\tinstall -D -m 755 gen $(DESTDIR)$(PREFIX)/bin/gen
"""
USESGEN_C = b'#include <stdio.h>\n#include "generated.h"\nint main(void) { puts(GENERATED); return 0; }\n'
USESGEN_MAKEFILE = b"""usesgen: usesgen.c
\tgen > generated.h
\t$(CC) $(CFLAGS) -o usesgen usesgen.c $(LDFLAGS)
install: usesgen
\tinstall -D -m 755 usesgen $(DESTDIR)$(PREFIX)/bin/usesgen
"""


def _dependency_recipes(directory: Path, sources: Path, port: int) -> None:
    """`usesgen` runs the tool `gen` while it builds (a build-only dependency) and needs `greet` at run time."""
    gen_sha = make_tarball(sources / "gen-1.0.tar.gz", "gen-1.0", {"gen.c": GEN_C, "Makefile": GEN_MAKEFILE})
    _make_recipe(directory, "gen", "A code generator that usesgen runs while it builds", gen_sha, port)
    usesgen_sha = make_tarball(
        sources / "usesgen-1.0.tar.gz", "usesgen-1.0", {"usesgen.c": USESGEN_C, "Makefile": USESGEN_MAKEFILE}
    )
    _make_recipe(directory, "usesgen", "Built with gen (build only); needs greet at run time", usesgen_sha, port)
    with (directory / "usesgen.toml").open("a") as recipe:
        recipe.write('[dependencies]\nbuild = ["gen"]\nruntime = ["greet"]\n')
        recipe.write('[smoke]\ncommand = ["bin/usesgen"]\nexpect = "made by gen 1.0"\n')


def _seed_bundled_sources(cache: Path) -> None:
    """Put the real upstream sources of the bundled recipes, prefetched once by .ci/run, into the farm's cache."""
    from pkgc.core.errors import SourceUnavailable
    from pkgc.worker.prefetch import seed_cache

    try:
        seed_cache(cache)
    except SourceUnavailable as exc:
        pytest.fail(f"the test farm fetches from loopback only: {exc}")


def seed_debian_catalog(farm_home: Path, extra_stanzas: str = "") -> list[str]:
    """Load the prefetched Sources excerpt (the generated-recipe test packages, fetched through apt by .ci/run's
    prefetch) plus `extra_stanzas` as the farm's Debian catalog, and put those packages' orig and Debian tarballs
    into its source cache; the names of the prefetched packages. Fails naming the command to run if absent."""
    from pkgc.farm.debian_catalog import load_index_text
    from pkgc.worker.prefetch import GENERATED_TEST_PACKAGES, debian_excerpt, default_dir

    excerpt = debian_excerpt(default_dir())
    if not excerpt.is_file():
        pytest.fail(f"{excerpt} is missing: run 'python -m pkgc.worker.prefetch' (bash .ci/run does)", pytrace=False)
    text = excerpt.read_text(encoding="utf-8")
    load_index_text(farm_home, extra_stanzas + "\n\n" + text)
    seed_debian_sources(farm_home / "sources", text)
    return list(GENERATED_TEST_PACKAGES)


def seed_debian_sources(cache: Path, text: str) -> None:
    """Put the prefetched orig and Debian tarballs of the stanzas in `text` (a Sources excerpt) into a farm's or a
    worker's source cache. Fails naming the command to run if one was not prefetched."""
    from pkgc.worker.prefetch import default_dir

    cache.mkdir(parents=True, exist_ok=True)
    sums = re.findall(r"^ ([0-9a-f]{64}) \d+ \S+\.(?:orig|debian)\.tar\.\w+$", text, re.M)
    for sha in sums:
        if not (default_dir() / sha).is_file():
            pytest.fail(f"{sha} not prefetched: run 'python -m pkgc.worker.prefetch'", pytrace=False)
        shutil.copyfile(default_dir() / sha, cache / sha)


def require_bubblewrap() -> str:
    """The e2e builds must be sandboxed: without a working bubblewrap the session fails, it does not degrade."""
    from pkgc.worker.sandbox import bubblewrap_path

    found = bubblewrap_path()
    if found is None:
        pytest.fail(
            "bubblewrap is required for the e2e tests: 'bwrap' is not installed or cannot create namespaces here "
            "(install the bubblewrap package; in a container allow unprivileged user namespaces). Without it the "
            "farm's workers would build unsandboxed and the tests would prove nothing about the sandbox.",
            pytrace=False,
        )
    return found


@pytest.fixture(scope="session")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FarmEnv]:
    """One real embedded farm (API process and two worker processes) for the whole session."""
    require_bubblewrap()
    root = tmp_path_factory.mktemp("pkgc")
    sources = root / "served"
    sources.mkdir()
    server, port = _serve(sources)
    marker_dir = Path(tempfile.mkdtemp(prefix="pkgc-flaky-", dir="/var/tmp"))
    _test_recipes(root / "recipes", sources, port, marker_dir / "fail")
    _seed_bundled_sources(root / "farm" / "sources")
    env = user_env(
        root,
        PKGC_RECIPE_PATH=str(root / "recipes"),
        # The lease and the job's visibility (the worker heartbeats both every 5 s): long enough that a worker
        # stalled up to 15 s by a loaded machine keeps its build (attempts == 1 holds), short enough that a killed
        # worker's build comes back within 20 s.
        PKGC_FARM_VISIBILITY_TIMEOUT="20",
        PKGC_REQUIRE_SANDBOX="1",  # a worker without a working bubblewrap refuses to start
        # Builds are hermetic (they see only the toolchain's packages): the flaky recipe's marker is shown to them.
        PKGC_SANDBOX_EXTRA_RO=str(marker_dir),
    )
    started = subprocess.run(
        [sys.executable, "-m", "pkgc", "farm", "up", "--workers", "2"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert started.returncode == 0, started.stderr
    state = json.loads((root / "farm" / "state.json").read_text())
    try:
        yield FarmEnv(root=root, env=env, url=state["url"], farm_home=root / "farm", flaky_marker=marker_dir / "fail")
    finally:
        subprocess.run([sys.executable, "-m", "pkgc", "farm", "stop"], env=env, capture_output=True, timeout=60)
        server.shutdown()
        shutil.rmtree(marker_dir, ignore_errors=True)


def serve_asgi(app: object) -> Iterator[str]:
    """Serve an ASGI app with a real uvicorn on 127.0.0.1 (a free port) in a thread; yield its URL, then stop it."""
    import socket

    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))  # type: ignore[arg-type]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        assert thread.is_alive(), "uvicorn stopped at start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
