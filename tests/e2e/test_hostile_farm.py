"""End-to-end: a hostile farm on loopback answers with crafted JSON; the client refuses it and writes nothing.

The client uses fields of the farm's answers as parts of paths (a build's name for its staging directory, the
sha256 for the download cache), so a farm that names a build `../../x` could make it write outside the prefix.
Every answer is validated at the protocol boundary (`pkgc.core.protocol`) before anything touches the disk. This
module serves crafted answers from a real HTTP server on loopback, points the real CLI at it through its config
file, and checks the one-line error, the exit code, and that nothing was created or changed anywhere under the
test's directory (no file outside the prefix, no staging directory, no download cache file, the database as it was).
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import subprocess
import sys
import tarfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pkgc.artifact import FileEntry, Manifest
from pkgc.client.farm_client import FarmClient
from pkgc.core.errors import BadFarmAnswer
from pkgc.core.platform import Platform, detect_cpu_levels, detect_platform
from tests.conftest import artifact_bytes, user_env

pytestmark = pytest.mark.e2e

KEY = "ab" * 32
GOOD_KEY = "cd" * 32
BAD_ANSWER_EXIT = 6


def artifact(name: str, key: str, content: bytes, platform: Platform | None = None) -> bytes:
    """A well-formed artifact holding one file, bin/<name>: what a real farm would serve for this build (made for
    this machine's platform unless `platform` says otherwise)."""
    manifest = Manifest(
        name=name,
        version="1.0",
        key=key,
        options={},
        platform=(platform or detect_platform()).as_dict(),
        dependencies=[],
        runtime_dependencies=[],
        smoke={},
        files=[
            FileEntry("bin", "dir", 0o755),
            FileEntry(f"bin/{name}", "file", 0o755, size=len(content), sha256=hashlib.sha256(content).hexdigest()),
        ],
    )
    directory = tarfile.TarInfo("bin")
    directory.type, directory.mode = tarfile.DIRTYPE, 0o755
    member = tarfile.TarInfo(f"bin/{name}")
    member.mode = 0o755
    return artifact_bytes(manifest.to_json(), [(directory, None), (member, content)])


def build_info(name: str, key: str, blob: bytes) -> dict[str, Any]:
    return {
        "key": key,
        "name": name,
        "version": "1.0",
        "options": {"opt": "O2", "debug": "false"},
        "status": "ready",
        "dependencies": [],
        "runtime_dependencies": [],
        "url": f"/v1/artifacts/{key}.tar.zst",
        "sha256": hashlib.sha256(blob).hexdigest(),
        "size": len(blob),
        "error": None,
        "log_url": None,
        "attempts": 1,
        "last_line": "",
    }


Answer = tuple[int, bytes, dict[str, str]]


@dataclass
class HostileFarm:
    """A real HTTP server on loopback that answers each (method, path) with whatever the test put in `routes`."""

    routes: dict[tuple[str, str], Answer] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    _server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def answer(
        self, method: str, path: str, body: Any, status: int = 200, headers: dict[str, str] | None = None
    ) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.routes[(method, path)] = (status, data, headers or {})

    def start(self) -> HostileFarm:
        farm = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path.split("?", 1)[0]
                farm.requests.append(f"{self.command} {path}")
                farm.bodies.append(body)
                status, data, headers = farm.routes.get(
                    (self.command, path), (404, json.dumps({"error": "not_found", "reason": path}).encode(), {})
                )
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.answer("GET", "/v1/health", {"status": "ok"})
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@pytest.fixture
def hostile() -> Iterator[HostileFarm]:
    server = HostileFarm().start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Client:
    """The real CLI of a user whose config points at the hostile farm; everything it owns lives under `root`."""

    root: Path
    env: dict[str, str]

    @property
    def prefix(self) -> Path:
        return self.root / "home" / "prefix"

    def pkgc(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pkgc", *args], env=self.env, capture_output=True, text=True, timeout=120
        )


@pytest.fixture
def client(tmp_path: Path, hostile: HostileFarm) -> Client:
    root = tmp_path / "user"
    config = root / "config" / "pkgc"
    config.mkdir(parents=True)
    (config / "config.toml").write_text(f'farm = "{hostile.url}"\n')
    return Client(root, user_env(root))


def tree(root: Path) -> dict[str, bytes | str]:
    """Every path under `root` with its content: what 'nothing was written' means.

    The one exception is the empty `.pkgc/tx` a finished transaction leaves, which the next changing command sweeps;
    whatever is inside it (a transaction's staging directory) still counts.
    """
    state: dict[str, bytes | str] = {}
    for path in sorted(root.rglob("*")):
        key = path.relative_to(root).as_posix()
        if key.endswith("/.pkgc/tx"):
            continue
        if path.is_symlink():
            state[key] = "-> " + os.readlink(path)
        elif path.is_file():
            state[key] = path.read_bytes()
        else:
            state[key] = "dir"
    return state


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def installed(client: Client) -> list[dict[str, Any]]:
    done = client.pkgc("list", "--json", "--prefix", str(client.prefix))
    assert done.returncode == 0, done.stderr
    return sorted(json.loads(done.stdout), key=lambda p: str(p["name"]))


def install_good(hostile: HostileFarm, client: Client) -> list[dict[str, Any]]:
    """Install `good` from the same farm, answering honestly, so the prefix has a package and a database to keep."""
    blob = artifact("good", GOOD_KEY, b"#!/bin/sh\necho good\n")
    hostile.answer("POST", "/v1/resolve", {"requested": [GOOD_KEY], "builds": [build_info("good", GOOD_KEY, blob)]})
    hostile.answer("GET", f"/v1/artifacts/{GOOD_KEY}.tar.zst", blob)
    done = client.pkgc("install", "good", "--prefix", str(client.prefix))
    assert done.returncode == 0, done.stderr
    assert (client.prefix / "bin" / "good").read_bytes() == b"#!/bin/sh\necho good\n"
    return installed(client)


# Each case: (the field the error must name, a function that crafts the resolve answer). The build is otherwise
# well-formed and its artifact is served, so without validation the client would go on to download and stage it.
Craft = Callable[[dict[str, Any], Path], None]


def _build(change: Callable[[dict[str, Any], Path], None]) -> Craft:
    def craft(answer: dict[str, Any], root: Path) -> None:
        change(answer["builds"][0], root)

    return craft


def _set(key: str, value: Any) -> Craft:
    def change(build: dict[str, Any], _root: Path) -> None:
        build[key] = value

    return _build(change)


def _absolute_name(build: dict[str, Any], root: Path) -> None:
    build["name"] = str(root / "absolute")


def _same_key(key: str) -> Craft:
    def craft(answer: dict[str, Any], _root: Path) -> None:
        answer["builds"][0]["key"] = key
        answer["requested"] = [key]

    return craft


def _missing_dependency(answer: dict[str, Any], _root: Path) -> None:
    answer["builds"][0]["dependencies"] = ["ef" * 32]


def _missing_requested(answer: dict[str, Any], _root: Path) -> None:
    answer["requested"] = ["ef" * 32]


def _too_many_builds(answer: dict[str, Any], _root: Path) -> None:
    template = answer["builds"][0]
    answer["builds"] = [{**template, "key": f"{i:064x}", "name": f"p{i}"} for i in range(5000)] + [template]


CASES = [
    pytest.param("name", _set("name", "../../../../../escaped"), id="name-traversal"),
    pytest.param("name", _set("name", ".."), id="name-dotdot"),
    pytest.param("name", _build(_absolute_name), id="name-absolute"),
    pytest.param("name", _set("name", "bin/x"), id="name-slash"),
    pytest.param("version", _set("version", "../../x"), id="version-traversal"),
    pytest.param("requested.0", _same_key("AB" * 32), id="key-upper-case"),
    pytest.param("requested.0", _same_key("../../x"), id="key-traversal"),
    pytest.param("sha256", _set("sha256", "../../../escaped/passwd"), id="sha256-traversal"),
    pytest.param("sha256", _set("sha256", "AB" * 32), id="sha256-upper-case"),
    pytest.param("sha256", _set("sha256", "ab" * 16), id="sha256-short"),
    pytest.param("size", _set("size", -1), id="size-negative"),
    pytest.param("size", _set("size", 10**30), id="size-enormous"),
    pytest.param("url", _set("url", None), id="url-missing-when-ready"),
    pytest.param("url", _set("sha256", None), id="sha256-missing-when-ready"),
    pytest.param("url", _set("url", "file:///etc/passwd"), id="url-file"),
    pytest.param("url", _set("url", "ftp://127.0.0.1/x.tar.zst"), id="url-ftp"),
    pytest.param("url", _set("url", "/etc/passwd"), id="url-outside-api"),
    pytest.param("url", _set("url", "/v1/../../etc/passwd"), id="url-dotdot"),
    pytest.param("log_url", _set("log_url", "file:///etc/shadow"), id="log-url-file"),
    pytest.param("options", _set("options", {"../x": "1"}), id="option-name"),
    pytest.param("options", _set("options", {"opt": "O2\n\x1b[2J"}), id="option-value"),
    pytest.param("options", _set("options", {f"o{i}": "1" for i in range(1000)}), id="options-too-many"),
    pytest.param("runtime_dependencies", _set("runtime_dependencies", ["../x"]), id="runtime-dependency-name"),
    pytest.param("dependencies", _set("dependencies", ["../../x"]), id="dependency-key"),
    pytest.param("dependencies", _missing_dependency, id="dependency-not-in-answer"),
    pytest.param("requested", _missing_requested, id="requested-not-in-answer"),
    pytest.param("error", _set("error", "e" * 100_000), id="error-too-long"),
    pytest.param("last_line", _set("last_line", "l" * 100_000), id="last-line-too-long"),
    pytest.param("attempts", _set("attempts", -5), id="attempts-negative"),
    pytest.param("builds", _too_many_builds, id="builds-too-many"),
]


@pytest.mark.parametrize(("field_name", "craft"), CASES)
def test_a_crafted_resolve_answer_is_refused_and_nothing_is_written(
    hostile: HostileFarm, client: Client, tmp_path: Path, field_name: str, craft: Craft
) -> None:
    packages = install_good(hostile, client)
    blob = artifact("hello", KEY, b"#!/bin/sh\necho hello\n")
    answer = {"requested": [KEY], "builds": [build_info("hello", KEY, blob)]}
    craft(answer, tmp_path)
    hostile.answer("POST", "/v1/resolve", answer)
    hostile.answer("GET", f"/v1/artifacts/{KEY}.tar.zst", blob)
    for name in ("AB" * 32, "../../x"):
        hostile.answer("GET", f"/v1/artifacts/{name}.tar.zst", blob)
    before = tree(tmp_path)
    asked_before = len(hostile.requests)

    result = client.pkgc("install", "hello", "--prefix", str(client.prefix))

    after = tree(tmp_path)
    assert sorted(set(after) ^ set(before)) == [], "no path was created or removed"
    assert after == before
    assert result.returncode == BAD_ANSWER_EXIT, result.stderr
    [error] = error_lines(result.stderr)
    assert "invalid answer" in error and field_name in error, error
    assert len(error) < 400, error
    assert hostile.requests[asked_before:] == ["POST /v1/resolve"], "nothing was downloaded"
    assert installed(client) == packages
    assert client.pkgc("verify", "--prefix", str(client.prefix)).returncode == 0


def test_a_download_larger_than_announced_is_stopped_and_discarded(
    hostile: HostileFarm, client: Client, tmp_path: Path
) -> None:
    """The farm announces fewer bytes than it sends: the download stops there, and nothing of it is kept."""
    packages = install_good(hostile, client)
    blob = artifact("hello", KEY, b"#!/bin/sh\necho hello\n" + bytes(range(256)) * 64)
    build = {**build_info("hello", KEY, blob), "size": len(blob) // 2}
    hostile.answer("POST", "/v1/resolve", {"requested": [KEY], "builds": [build]})
    hostile.answer("GET", f"/v1/artifacts/{KEY}.tar.zst", blob)
    before = tree(tmp_path)

    result = client.pkgc("install", "hello", "--prefix", str(client.prefix))

    assert tree(tmp_path) == before
    assert result.returncode == BAD_ANSWER_EXIT, result.stderr
    [error] = error_lines(result.stderr)
    assert "is larger than the" in error and "discarded" in error, error
    assert installed(client) == packages


def test_a_crafted_wait_answer_is_refused_and_nothing_is_written(
    hostile: HostileFarm, client: Client, tmp_path: Path
) -> None:
    """The build is queued at first; the long-poll then reports it finished under a name that escapes the prefix."""
    packages = install_good(hostile, client)
    blob = artifact("hello", KEY, b"#!/bin/sh\necho hello\n")
    queued = {**build_info("hello", KEY, blob), "status": "queued", "url": None, "sha256": None, "size": None}
    hostile.answer("POST", "/v1/resolve", {"requested": [KEY], "builds": [queued]})
    finished = {**build_info("hello", KEY, blob), "name": "../../../../../escaped"}
    hostile.answer("POST", "/v1/wait", {"finished": [finished], "pending": [], "progress": []})
    hostile.answer("GET", f"/v1/artifacts/{KEY}.tar.zst", blob)
    before = tree(tmp_path)

    result = client.pkgc("install", "hello", "--prefix", str(client.prefix))

    assert result.returncode == BAD_ANSWER_EXIT, result.stderr
    [error] = error_lines(result.stderr)
    assert "invalid answer" in error and "name" in error, error
    assert tree(tmp_path) == before
    assert installed(client) == packages


def test_a_wait_answer_about_keys_not_asked_is_refused(hostile: HostileFarm, client: Client, tmp_path: Path) -> None:
    install_good(hostile, client)
    blob = artifact("hello", KEY, b"#!/bin/sh\necho hello\n")
    queued = {**build_info("hello", KEY, blob), "status": "queued", "url": None, "sha256": None, "size": None}
    hostile.answer("POST", "/v1/resolve", {"requested": [KEY], "builds": [queued]})
    other = {**build_info("other", "ef" * 32, blob)}
    hostile.answer("POST", "/v1/wait", {"finished": [other], "pending": [KEY], "progress": []})
    before = tree(tmp_path)

    result = client.pkgc("install", "hello", "--prefix", str(client.prefix))

    assert result.returncode == BAD_ANSWER_EXIT, result.stderr
    [error] = error_lines(result.stderr)
    assert "invalid answer" in error and "not asked" in error, error
    assert tree(tmp_path) == before


def test_an_answer_that_is_not_json_is_a_one_line_error(hostile: HostileFarm, client: Client, tmp_path: Path) -> None:
    hostile.answer("POST", "/v1/resolve", b"<html>surprise</html>")
    result = client.pkgc("install", "hello", "--prefix", str(client.prefix))
    assert result.returncode == BAD_ANSWER_EXIT, result.stderr
    [error] = error_lines(result.stderr)
    assert "invalid answer" in error, error


CATALOG_CASES = [
    pytest.param({"packages": [{"name": "../../x", "summary": "s", "latest": "1.0"}]}, "name", id="name"),
    pytest.param({"packages": [{"name": "x", "summary": "s", "latest": "../1"}]}, "latest", id="latest"),
    pytest.param({"packages": [{"name": "x", "summary": "s" * 100_000, "latest": "1"}]}, "summary", id="summary"),
    # A summary that would retitle the user's terminal window and clear the screen when `pkgc search` prints it.
    pytest.param(
        {"packages": [{"name": "x", "summary": "\x1b]0;owned\x07\x1b[2J", "latest": "1"}]},
        "control characters",
        id="terminal-escape",
    ),
]


@pytest.mark.parametrize(("document", "field_name"), CATALOG_CASES)
def test_a_crafted_catalog_is_refused_and_the_local_catalog_is_not_written(
    hostile: HostileFarm, client: Client, tmp_path: Path, document: dict[str, Any], field_name: str
) -> None:
    hostile.answer("GET", "/v1/catalog", {"packages": [{"name": "good", "summary": "a good one", "latest": "1.0"}]})
    assert client.pkgc("update").returncode == 0
    hostile.answer("GET", "/v1/catalog", document)
    before = tree(tmp_path)

    result = client.pkgc("update")

    assert result.returncode == BAD_ANSWER_EXIT, result.stderr
    [error] = error_lines(result.stderr)
    assert "invalid answer" in error and field_name in error, error
    assert tree(tmp_path) == before
    found = client.pkgc("search", "good")
    assert found.returncode == 0 and "good" in found.stdout


def test_a_crafted_catalog_etag_is_refused(hostile: HostileFarm, client: Client, tmp_path: Path) -> None:
    """The ETag is kept in the local catalog to ask 'changed since?': a farm cannot make it hold a novel."""
    hostile.answer("GET", "/v1/catalog", {"packages": [{"name": "good", "summary": "a good one", "latest": "1.0"}]})
    assert client.pkgc("update").returncode == 0
    document = {"packages": [{"name": "new", "summary": "n", "latest": "1.0"}]}
    hostile.answer("GET", "/v1/catalog", document, headers={"ETag": '"' + "e" * 5000 + '"'})
    before = tree(tmp_path)

    result = client.pkgc("update")

    assert tree(tmp_path) == before
    assert result.returncode == BAD_ANSWER_EXIT, result.stderr
    [error] = error_lines(result.stderr)
    assert "invalid answer" in error and "ETag" in error, error


DETAILS = {
    "name": "hello",
    "summary": "s",
    "homepage": "",
    "license": "GPL-3.0-or-later",
    "versions": ["1.0"],
    "variants": [],
    "global_options": [{"name": "opt", "description": "d", "default": "O2", "values": ["O2", "O3"]}],
    "build_dependencies": [],
    "runtime_dependencies": [],
}
# `info` syncs the local catalog first (it is missing here): an honest catalog, so that the details are what is tested.
CATALOG = {"packages": [{"name": "hello", "summary": "s", "latest": "1.0"}]}


@pytest.mark.parametrize(
    ("change", "field_name"),
    [
        pytest.param({"versions": ["../../1"]}, "versions", id="version"),
        pytest.param({"runtime_dependencies": ["/etc"]}, "runtime_dependencies", id="dependency"),
        pytest.param({"name": "other"}, "name", id="another-package"),
        pytest.param(
            {"variants": [{"name": "../x", "description": "", "default": "a", "values": ["a"]}]},
            "variants",
            id="variant-name",
        ),
    ],
)
def test_crafted_package_details_are_refused(
    hostile: HostileFarm, client: Client, change: dict[str, Any], field_name: str
) -> None:
    hostile.answer("GET", "/v1/catalog", CATALOG)
    hostile.answer("GET", "/v1/packages/hello", {**DETAILS, **change})
    hostile.answer("GET", "/v1/packages/hello/builds", {"builds": []})
    result = client.pkgc("info", "hello")
    assert result.returncode == BAD_ANSWER_EXIT, result.stderr
    [error] = error_lines(result.stderr)
    assert "invalid answer" in error and field_name in error, error


def test_crafted_builds_of_a_package_are_refused(hostile: HostileFarm, client: Client) -> None:
    blob = artifact("hello", KEY, b"x")
    hostile.answer("GET", "/v1/catalog", CATALOG)
    hostile.answer("GET", "/v1/packages/hello", DETAILS)
    hostile.answer("GET", "/v1/packages/hello/builds", {"builds": [{**build_info("hello", KEY, blob), "sha256": "x"}]})
    result = client.pkgc("info", "hello")
    assert result.returncode == BAD_ANSWER_EXIT, result.stderr
    [error] = error_lines(result.stderr)
    assert "invalid answer" in error and "sha256" in error, error


@pytest.mark.parametrize(
    ("answer_key", "change", "words"),
    [
        pytest.param(KEY, {"name": "../x"}, "name", id="name"),
        pytest.param(KEY, {"key": "ef" * 32}, "another build", id="another-key"),
    ],
)
def test_a_crafted_build_status_is_refused(
    hostile: HostileFarm, answer_key: str, change: dict[str, Any], words: str
) -> None:
    """`build(key)` serves `pkgc pending` and `rollback`: the answer must be the build asked for, well-formed."""
    hostile.answer("GET", f"/v1/builds/{answer_key}", {**build_info("hello", KEY, b"x"), **change})
    farm = FarmClient(hostile.url)
    try:
        with pytest.raises(BadFarmAnswer) as raised:
            farm.build(KEY)
    finally:
        farm.close()
    assert words in str(raised.value) and "\n" not in str(raised.value)


def test_an_honest_answer_from_the_same_server_installs(hostile: HostileFarm, client: Client) -> None:
    """The harness itself is sound: the same server, answering honestly, gets a package installed."""
    install_good(hostile, client)
    blob = artifact("hello", KEY, b"#!/bin/sh\necho hello\n")
    hostile.answer("POST", "/v1/resolve", {"requested": [KEY], "builds": [build_info("hello", KEY, blob)]})
    hostile.answer("GET", f"/v1/artifacts/{KEY}.tar.zst", blob)
    result = client.pkgc("install", "hello", "--prefix", str(client.prefix))
    assert result.returncode == 0, result.stderr
    assert [p["name"] for p in installed(client)] == ["good", "hello"]
    assert hostile.requests.count(f"GET /v1/artifacts/{KEY}.tar.zst") == 1


def test_terminal_escapes_in_a_failed_build_are_shown_inert(hostile: HostileFarm, client: Client) -> None:
    """A build log and a farm's error text reach the user's terminal: escapes in them are shown, not obeyed."""
    failed = {
        **build_info("hello", KEY, b"x"),
        "status": "failed",
        "url": None,
        "sha256": None,
        "size": None,
        "error": "make exited 2\x1b]0;owned\x07",
        "log_url": f"/v1/builds/{KEY}/log",
    }
    hostile.answer("POST", "/v1/resolve", {"requested": [KEY], "builds": [failed]})
    hostile.answer("GET", f"/v1/builds/{KEY}/log", b"cc -c hello.c\n\x1b[2J\x1b[31mhello.c:1: error\x9b2J\n")
    result = client.pkgc("install", "hello", "--prefix", str(client.prefix))
    assert result.returncode == 5, result.stderr
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr and "\x9b" not in result.stderr, result.stderr
    assert "\\x1b[31mhello.c:1: error" in result.stderr, result.stderr  # the log line is still there, inert
    assert "make exited 2\\x1b]0;owned\\x07" in result.stderr, result.stderr


def test_an_oversized_answer_is_refused_before_it_is_held_whole(hostile: HostileFarm, client: Client) -> None:
    """A farm cannot make the client read gigabytes: an answer past the cap is refused as it streams in."""
    from pkgc.client.farm_client import MAX_ANSWER_BYTES

    padding = b" " * (MAX_ANSWER_BYTES + 1024)  # valid JSON whitespace: only the size is wrong
    hostile.answer("GET", "/v1/catalog", padding + b'{"packages": []}')
    result = client.pkgc("update")
    assert result.returncode == BAD_ANSWER_EXIT, result.stderr
    [error] = error_lines(result.stderr)
    assert "larger than 64 MiB" in error, error


HERE = detect_platform()
OTHER_ARCH = "aarch64" if HERE.arch != "aarch64" else "x86_64"
NEWER_LIBC = ".".join([HERE.libc_version.split(".")[0], str(int(HERE.libc_version.split(".")[-1]) + 1)])


@pytest.mark.parametrize(
    "built_for",
    [
        pytest.param(Platform(HERE.os, OTHER_ARCH, HERE.libc, HERE.libc_version), id="another-architecture"),
        pytest.param(Platform(HERE.os, HERE.arch, HERE.libc, NEWER_LIBC), id="newer-libc"),
        pytest.param(Platform(HERE.os, HERE.arch, "musl" if HERE.libc != "musl" else "glibc", "9.9"), id="other-libc"),
    ],
)
def test_a_build_for_another_platform_is_refused_and_nothing_is_written(
    hostile: HostileFarm, client: Client, tmp_path: Path, built_for: Platform
) -> None:
    """The farm answers with a well-formed build whose artifact was made for a platform this machine cannot run: the
    client states its platform, downloads, sees the manifest's platform and refuses before unpacking a file."""
    packages = install_good(hostile, client)
    blob = artifact("hello", KEY, b"#!/bin/sh\necho hello\n", built_for)
    hostile.answer("POST", "/v1/resolve", {"requested": [KEY], "builds": [build_info("hello", KEY, blob)]})
    hostile.answer("GET", f"/v1/artifacts/{KEY}.tar.zst", blob)
    before = tree(tmp_path)
    asked_before = len(hostile.requests)

    result = client.pkgc("install", "hello", "--prefix", str(client.prefix))

    assert result.returncode == BAD_ANSWER_EXIT, result.stderr
    [error] = error_lines(result.stderr)
    assert f"made for {built_for}" in error and str(HERE) in error, error
    assert len(error) < 400, error
    assert tree(tmp_path) == before, "nothing in the prefix, the staging area or the download cache"
    assert hostile.requests[asked_before:] == ["POST /v1/resolve", f"GET /v1/artifacts/{KEY}.tar.zst"]
    stated = json.loads(hostile.bodies[asked_before])["platform"]
    assert stated == {**HERE.as_dict(), "cpu_levels": list(detect_cpu_levels(HERE.arch))}
    assert installed(client) == packages
    assert client.pkgc("verify", "--prefix", str(client.prefix)).returncode == 0


def test_a_build_for_a_cpu_level_this_machine_lacks_is_refused(
    hostile: HostileFarm, client: Client, tmp_path: Path
) -> None:
    """An x86-64-v4 build on a machine that does not run v4 would die with SIGILL: refused like another platform."""
    levels = detect_cpu_levels(HERE.arch)
    beyond = next((level for level in ("x86-64-v4", "armv9-a") if level not in levels), None)
    if beyond is None:
        pytest.skip("this processor runs every level the test could name")
    packages = install_good(hostile, client)
    content = b"#!/bin/sh\necho hello\n"
    manifest = Manifest(
        name="hello",
        version="1.0",
        key=KEY,
        options={"cpu": beyond},
        platform=HERE.as_dict(),
        dependencies=[],
        runtime_dependencies=[],
        smoke={},
        files=[FileEntry("hello", "file", 0o755, size=len(content), sha256=hashlib.sha256(content).hexdigest())],
    )
    member = tarfile.TarInfo("hello")
    member.mode = 0o755
    blob = artifact_bytes(manifest.to_json(), [(member, content)])
    hostile.answer("POST", "/v1/resolve", {"requested": [KEY], "builds": [build_info("hello", KEY, blob)]})
    hostile.answer("GET", f"/v1/artifacts/{KEY}.tar.zst", blob)
    before = tree(tmp_path)

    result = client.pkgc("install", "hello", "--prefix", str(client.prefix))

    assert result.returncode == BAD_ANSWER_EXIT, result.stderr
    [error] = error_lines(result.stderr)
    assert f"cpu='{beyond}'" in error, error
    assert tree(tmp_path) == before
    assert installed(client) == packages
