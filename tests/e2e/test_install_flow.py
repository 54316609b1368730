"""End-to-end: the real CLI as a subprocess, a real embedded farm, real compiles of real upstream sources."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pkgc.core.recipe import load_recipe
from pkgc.core.relocation import PLACEHOLDER_BYTES
from pkgc.recipes import bundled_recipe_dir
from tests.conftest import FarmEnv
from tests.smoke import run_smoke

pytestmark = pytest.mark.e2e


def resolve(farm: FarmEnv, name: str, **options: str) -> dict:  # type: ignore[type-arg]
    with farm.api() as api:
        response = api.post("/v1/resolve", json={"packages": [{"name": name, "options": options}]})
    assert response.status_code == 200, response.text
    body = response.json()
    return next(b for b in body["builds"] if b["key"] == body["requested"][0])




def installed(farm: FarmEnv, prefix: Path) -> dict[str, dict]:  # type: ignore[type-arg]
    result = farm.pkgc("list", "--json", "--prefix", str(prefix), check=True)
    return {p["name"]: p for p in json.loads(result.stdout)}


def greeting(farm: FarmEnv, prefix: Path, language: str) -> str:
    """What the installed hello says in `language` (a non-C locale is needed for gettext to look at LANGUAGE)."""
    env = {**farm.env, "LANG": "C.UTF-8", "LANGUAGE": language}
    result = subprocess.run([prefix / "bin/hello"], capture_output=True, text=True, env=env, check=True)
    return result.stdout.strip().replace("\xa0", " ")


def no_placeholder_left(prefix: Path) -> None:
    for path in prefix.rglob("*"):
        if path.is_file() and not path.is_symlink() and ".pkgc" not in path.parts:
            assert PLACEHOLDER_BYTES not in path.read_bytes(), path


def test_hello_compiles_installs_and_finds_its_translations(farm: FarmEnv) -> None:
    prefix = farm.root / "first"
    result = farm.pkgc("install", "hello", "--wait", "--prefix", str(prefix), "--json", check=True)
    report = json.loads(result.stdout)
    assert [(p["name"], p["action"]) for p in report["packages"]] == [("hello", "installed")]

    english = subprocess.run([prefix / "bin/hello"], capture_output=True, text=True, env=farm.env, check=True)
    assert english.stdout.strip() == "Hello, world!"
    assert greeting(farm, prefix, "fr") == "Bonjour, le monde !"
    assert (prefix / "share/locale/fr/LC_MESSAGES/hello.mo").is_file()
    no_placeholder_left(prefix)
    record = installed(farm, prefix)["hello"]
    assert record["version"] == "2.10" and record["options"]["opt"] == "O2"


def test_second_prefix_is_a_cache_hit(farm: FarmEnv) -> None:
    farm.pkgc("install", "hello", "--prefix", str(farm.root / "warm"), check=True)
    key = resolve(farm, "hello")["key"]
    events_before = farm.finished_events(key)
    started = time.monotonic()
    prefix = farm.root / "second"
    farm.pkgc("install", "hello", "--prefix", str(prefix), check=True)
    elapsed = time.monotonic() - started
    print(f"cache-hit install of hello into a second prefix: {elapsed:.2f}s wall")
    assert farm.finished_events(key) == events_before, "a cache hit must not build again"
    assert resolve(farm, "hello")["attempts"] == 1
    assert greeting(farm, prefix, "fr") == "Bonjour, le monde !"


def test_options_decide_the_key_and_a_new_option_set_is_built(farm: FarmEnv) -> None:
    default = resolve(farm, "hello")["key"]
    o3_then_nls = resolve(farm, "hello", opt="O3", nls="false")
    with farm.api() as api:
        reordered = api.post(
            "/v1/resolve", json={"packages": [{"name": "hello", "options": {"nls": "off", "opt": "O3"}}]}
        ).json()["requested"][0]
    assert o3_then_nls["key"] == reordered, "same options in another order and spelling must give the same key"
    assert o3_then_nls["key"] != default
    assert resolve(farm, "hello", opt="O3")["key"] not in (default, o3_then_nls["key"])

    prefix = farm.root / "o3"
    farm.pkgc("install", "hello", "--opt", "opt=O3", "--opt", "nls=false", "--prefix", str(prefix), check=True)
    built = resolve(farm, "hello", opt="O3", nls="false")
    assert built["status"] == "ready" and built["attempts"] == 1
    with farm.api() as api:
        log = api.get(f"/v1/builds/{built['key']}/log").text
    assert "-O3" in log and "--disable-nls" in log
    assert installed(farm, prefix)["hello"]["options"]["nls"] == "false"
    assert greeting(farm, prefix, "fr") == "Hello, world!", "without NLS there is no French"


def jobs_sent(farm: FarmEnv, key: str) -> int:
    """How many jobs the real farm sent for a build key, from its queue's send count (the queue forgets acked jobs)."""
    from pkgc.farm.adapters.local import SqliteJobQueue, open_farm_database

    engine = open_farm_database(farm.farm_home / "farm.db")
    try:
        return SqliteJobQueue(engine).sent_count(key)
    finally:
        engine.dispose()


def test_twenty_concurrent_identical_requests_send_one_job(farm: FarmEnv) -> None:
    options = {"opt": "O1", "utils": "true", "libs": "both"}  # an option set no other test builds: a new build
    clients = 20
    barrier = threading.Barrier(clients)
    windows: list[tuple[float, float]] = []

    def client(_: int) -> dict:  # type: ignore[type-arg]
        with farm.api() as api:  # a client and a connection of its own, opened before the barrier
            assert api.get("/v1/health").status_code == 200
            barrier.wait(timeout=60)
            started = time.monotonic()
            response = api.post("/v1/resolve", json={"packages": [{"name": "cjson", "options": options}]})
            windows.append((started, time.monotonic()))
        assert response.status_code == 200, response.text
        body = response.json()
        return next(b for b in body["builds"] if b["key"] == body["requested"][0])  # type: ignore[no-any-return]

    with ThreadPoolExecutor(max_workers=clients) as pool:
        answers = list(pool.map(client, range(clients)))
    overlap = min(end for _, end in windows) - max(start for start, _ in windows)
    print(f"{clients} resolves released together; all in flight at once for {overlap * 1000:.1f} ms (< 0: never)")
    keys = {a["key"] for a in answers}
    assert len(keys) == 1
    key = keys.pop()
    assert jobs_sent(farm, key) == 1, "the farm must send exactly one job for one build key"

    finished = farm.wait_finished(key)
    assert finished["status"] == "ready" and finished["url"]
    assert len(farm.finished_events(key)) == 1
    assert finished["attempts"] == 1
    assert jobs_sent(farm, key) == 1


def test_worker_killed_mid_build_job_comes_back_and_client_gets_url(farm: FarmEnv) -> None:
    prefix = farm.root / "slow"
    client = subprocess.Popen(
        [sys.executable, "-m", "pkgc", "install", "slowpoke", "--prefix", str(prefix)],
        env=farm.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        key = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            info = resolve(farm, "slowpoke")
            key = info["key"]
            if info["status"] == "building":
                break
            time.sleep(0.2)
        assert info["status"] == "building", info
        before = farm.worker_pids()
        assert before
        for pid in before:
            os.kill(pid, signal.SIGKILL)
        _out, err = client.communicate(timeout=180)
    finally:
        if client.poll() is None:
            client.kill()
    assert client.returncode == 0, err
    final = resolve(farm, "slowpoke")
    assert final["status"] == "ready" and final["url"]
    assert final["attempts"] == 2, "the killed attempt and the one that finished"
    assert len(farm.finished_events(key)) == 1
    assert set(farm.worker_pids()).isdisjoint(before), "killed workers were replaced"
    smoke = subprocess.run([prefix / "bin/slowpoke"], capture_output=True, text=True, check=True)
    assert smoke.stdout.strip() == "slowpoke 1.0"


def test_failed_build_shows_log_tail_and_installs_nothing(farm: FarmEnv) -> None:
    prefix = farm.root / "broken"
    result = farm.pkgc("install", "broken", "--prefix", str(prefix))
    assert result.returncode == 5
    assert "this_is_not_c" in result.stderr, "the tail of the compiler's log is shown"
    assert result.stderr.strip().splitlines()[-1].startswith("error: build of broken@1.0 failed")
    assert "Traceback" not in result.stderr
    assert not (prefix / "bin").exists()
    assert installed(farm, prefix) == {}
    info = resolve(farm, "broken")
    assert info["status"] == "failed" and info["log_url"]
    with farm.api() as api:
        assert "this_is_not_c" in api.get(info["log_url"]).text


def test_a_failed_build_is_kept_until_retried_then_builds(farm: FarmEnv) -> None:
    prefix = farm.root / "flaky"
    farm.flaky_marker.touch()
    first = farm.pkgc("install", "flaky", "--prefix", str(prefix))
    assert first.returncode == 5, first.stderr
    assert "failing on purpose" in first.stderr and "--retry-failed" in first.stderr
    failed = resolve(farm, "flaky")
    assert failed["status"] == "failed" and failed["attempts"] == 1

    farm.flaky_marker.unlink()  # whatever broke the build is gone now
    kept = farm.pkgc("install", "flaky", "--prefix", str(prefix))
    assert kept.returncode == 5, "without --retry-failed the farm answers with the failure it has"
    assert resolve(farm, "flaky")["attempts"] == 1, "and does not build again"

    retried = farm.pkgc("install", "flaky", "--retry-failed", "--prefix", str(prefix))
    assert retried.returncode == 0, retried.stderr
    assert subprocess.run([str(prefix / "bin" / "flaky")], capture_output=True, text=True).stdout == "flaky built\n"
    built = resolve(farm, "flaky")
    assert built["status"] == "ready" and built["key"] == failed["key"], "the same build key, built again"
    assert [(p["name"], p["version"]) for p in installed(farm, prefix).values()] == [("flaky", "1.0")]


# The starter set, one per build system; the other bundled recipes are built by their own tests
# (test_recipe_format, test_hermetic_flow, a representative subset in test_curated_recipes) and all of them by
# tools/build_curated.py: building all 55 here would take most of CI's time on 2 cores.
STARTERS = ["cjson", "gzip", "hello", "lz4", "pigz", "pixman", "zlib"]


@pytest.mark.parametrize("name", STARTERS)
def test_starter_recipe_installs_and_passes_its_smoke_command(farm: FarmEnv, name: str) -> None:
    prefix = farm.root / "starters"
    farm.pkgc("install", name, "--prefix", str(prefix), check=True)
    recipe = load_recipe(bundled_recipe_dir() / f"{name}.toml")
    run_smoke(recipe, prefix, farm.env)
    assert name in installed(farm, prefix)
    no_placeholder_left(prefix)


def test_program_links_the_library_from_its_dependency_recipe(farm: FarmEnv) -> None:
    prefix = farm.root / "linked"
    farm.pkgc("install", "pigz", "--prefix", str(prefix), check=True)
    ldd = subprocess.run(["ldd", str(prefix / "bin/pigz")], capture_output=True, text=True, check=True).stdout
    assert f"{prefix}/lib/libz.so.1" in ldd
    assert installed(farm, prefix)["zlib"]["requested"] is False
    data = os.urandom(100_000)
    packed = subprocess.run([prefix / "bin/pigz", "-c"], input=data, capture_output=True, check=True).stdout
    assert subprocess.run([prefix / "bin/pigz", "-dc"], input=packed, capture_output=True, check=True).stdout == data


def test_artifact_download_supports_range_and_checksum_header(farm: FarmEnv) -> None:
    info = resolve(farm, "hello")
    if info["status"] != "ready":
        info = farm.wait_finished(info["key"])
    with farm.api() as api:
        whole = api.get(info["url"])
        part = api.get(info["url"], headers={"Range": "bytes=10-109"})
    assert whole.status_code == 200 and int(whole.headers["content-length"]) == info["size"]
    assert whole.headers["x-checksum-sha256"] == info["sha256"]
    assert part.status_code == 206 and part.content == whole.content[10:110]


def test_openapi_document_lists_the_protocol(farm: FarmEnv) -> None:
    with farm.api() as api:
        document = api.get("/openapi.json").json()
    assert {"/v1/resolve", "/v1/wait", "/v1/builds/{key}/log"} <= set(document["paths"])


def test_prefix_longer_than_placeholder_is_refused_before_download(farm: FarmEnv) -> None:
    prefix = farm.root / ("x" * 100) / ("y" * 100) / ("z" * 100)
    result = farm.pkgc("install", "hello", "--prefix", str(prefix))
    assert result.returncode == 2
    assert "prefix is" in result.stderr and "bytes" in result.stderr
    assert not prefix.exists()


def test_a_build_in_progress_shows_its_latest_log_line(farm: FarmEnv) -> None:
    info = resolve(farm, "slowpoke", opt="O0")
    deadline = time.monotonic() + 60
    seen = ""
    with farm.api() as api:
        while time.monotonic() < deadline and not seen:
            current = api.get(f"/v1/builds/{info['key']}").json()
            if current["status"] == "building":
                seen = current["last_line"]
            time.sleep(0.3)
        answer = api.post("/v1/wait", json={"keys": [info["key"]], "timeout": 1}).json()
    assert seen == "$ sleep 8", "the worker reports the line it is on: the recipe's first step"
    assert answer["pending"] == [info["key"]] and answer["progress"][0]["status"] == "building"
    assert farm.wait_finished(info["key"])["last_line"] == "", "a finished build has no live line"
