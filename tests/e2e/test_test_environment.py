"""The test harness itself: what it hands to the processes it starts must not make the tests flaky or lie.

A proxy in the developer's environment must not carry loopback traffic (the farm, the source server): a proxy
that is down, slow or logging would fail or slow the tests for reasons that have nothing to do with pkgc.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from tests.conftest import PROXY_VARIABLES, FarmEnv, subprocess_env

pytestmark = pytest.mark.e2e

# The discard port on loopback: nothing listens there, so any request sent through this "proxy" fails at once.
BOGUS_PROXY = "http://127.0.0.1:9"


@pytest.fixture
def bogus_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.setenv(name, BOGUS_PROXY)
        monkeypatch.setenv(name.lower(), BOGUS_PROXY)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)


@pytest.mark.usefixtures("bogus_proxy")
def test_the_test_helpers_reach_the_farm_past_a_bogus_proxy(farm: FarmEnv) -> None:
    env = subprocess_env({"PKGC_FARM": farm.url})
    assert not {k for k in env if k.upper() in PROXY_VARIABLES}, "no proxy variable reaches a test's subprocess"
    assert env["NO_PROXY"] == env["no_proxy"] == "127.0.0.1,localhost,::1"

    with farm.api() as api:  # the tests' own HTTP client ignores the proxy variables
        assert api.get("/v1/health").status_code == 200

    rebuilt = subprocess_env({k: v for k, v in farm.env.items() if k.startswith(("PKGC_", "XDG_", "HOME"))})
    result = subprocess.run(
        farm.pkgc_argv("info", "hello", "--json"), env=rebuilt, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["name"] == "hello"


def test_the_client_talks_to_a_loopback_farm_directly_whatever_the_proxy_variables_say(farm: FarmEnv) -> None:
    # A user's proxy settings are for the outside world; a farm on loopback is never reached through them.
    env = {k: v for k, v in farm.env.items() if k.upper() != "NO_PROXY"}
    for name in PROXY_VARIABLES:
        env[name] = env[name.lower()] = BOGUS_PROXY
    env["PKGC_FARM"] = farm.url
    result = subprocess.run(
        farm.pkgc_argv("info", "hello", "--json"), env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["name"] == "hello"


# A worker of a loaded machine can stall (no CPU for its heartbeat thread, a busy SQLite). This long a stall must not
# cost the build its lease: with too short a lease another worker builds it again and `attempts == 1` fails.
STALL_SECONDS = 10.0


def test_a_worker_stalled_for_seconds_keeps_its_build(farm: FarmEnv) -> None:
    from pkgc.farm.adapters.local import SqliteBuildStore, open_farm_database

    options = {"debug": "true"}  # a slowpoke (its build sleeps 8 s) no other test builds
    with farm.api() as api:
        body = api.post("/v1/resolve", json={"packages": [{"name": "slowpoke", "options": options}]}).json()
        key = body["requested"][0]
        deadline = time.monotonic() + 120
        while api.get(f"/v1/builds/{key}").json()["status"] != "building" and time.monotonic() < deadline:
            time.sleep(0.1)
    engine = open_farm_database(farm.farm_home / "farm.db")
    try:
        record = SqliteBuildStore(engine).get(key)
    finally:
        engine.dispose()
    assert record is not None and record.lease_owner, "the build was leased"
    pid = int(record.lease_owner.rsplit("-", 1)[1])  # the worker's id ends in its pid
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(STALL_SECONDS)  # the stall itself: what is being simulated, not a wait for a condition
    finally:
        os.kill(pid, signal.SIGCONT)
    finished = farm.wait_finished(key)
    assert finished["status"] == "ready"
    assert finished["attempts"] == 1, "the stalled worker lost its lease and the build ran again"
    assert len(farm.finished_events(key)) == 1


