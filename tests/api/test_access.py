"""Who may ask (issue 8, part 2 item 6): the real app with a farm that requires tokens, over TestClient and over
uvicorn on loopback, with the in-memory fakes and with the SQLite adapters behind it.

Without a token a resolve that would start a build is a 401 and creates nothing; an existing build's answer
(a cache hit, a build in progress) needs none while reads are public; past a quota a 429 with Retry-After; a
revoked token is refused at its next request; retrying failed builds needs an admin token (403).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from pkgc.core.errors import UsageError
from pkgc.core.platform import detect_platform
from pkgc.core.protocol import BuildStatus
from pkgc.farm.access import AccessPolicy, AccessSettings, access_policy
from pkgc.farm.adapters.local import open_farm_database
from pkgc.farm.adapters.local_tokens import SqliteTokenStore
from pkgc.farm.adapters.memory import MemoryBlobStore, MemoryBuildStore, MemoryCatalogStore, MemoryQueueRouter
from pkgc.farm.adapters.memory_tokens import MemoryTokenStore
from pkgc.farm.api import create_app
from pkgc.farm.bootstrap import FarmConfig, open_ports
from pkgc.farm.embedded import build_service
from pkgc.farm.paths import FarmPaths
from pkgc.farm.ports import TokenStore
from pkgc.farm.service import FarmService
from pkgc.farm.token_admin import create_token, revoke_token
from pkgc.recipes import recipe_files
from tests.conftest import serve_asgi

NOW = 1_700_000_000.0  # a fixed clock for the policy: no test straddles an hourly window
WINDOW_END = NOW - NOW % 3600 + 3600


def _memory_farm(tmp_path: Path) -> tuple[FarmService, TokenStore]:
    service = FarmService(
        catalog=MemoryCatalogStore(),
        builds=MemoryBuildStore(),
        queues=MemoryQueueRouter(),
        blobs=MemoryBlobStore(),
        platform=detect_platform(),
    )
    for path in recipe_files():
        service.publish_recipe(path.read_text(encoding="utf-8"), source=path.name)
    return service, MemoryTokenStore()


def _sqlite_farm(tmp_path: Path) -> tuple[FarmService, TokenStore]:
    engine = open_farm_database(tmp_path / "farm.db")
    service = build_service(FarmPaths(tmp_path), engine)
    for path in recipe_files():
        service.publish_recipe(path.read_text(encoding="utf-8"), source=path.name)
    return service, SqliteTokenStore(engine)


@dataclass
class Farm:
    service: FarmService
    tokens: TokenStore
    policy: AccessPolicy
    app: Any

    def token(self, name: str, *, admin: bool = False, hourly: int = 20, flying: int = 10) -> str:
        made = create_token(self.tokens, name, admin=admin, builds_per_hour=hourly, in_flight=flying, clock=lambda: NOW)
        return made.secret

    def count_builds(self, *names: str) -> int:
        return sum(len(self.service.builds.builds_of(name)) for name in names or ("hello", "gzip", "lz4"))

    def finish(self, key: str, status: BuildStatus = BuildStatus.READY) -> None:
        """What a worker does: take the lease and finish the build."""
        lease = self.service.builds.acquire_lease(key, "test-worker", now=1.0, ttl=60.0)
        assert lease is not None
        assert self.service.builds.finish(
            lease, 2.0, status=status, artifact="artifacts/x", sha256="0" * 64, size=1, log="logs/x", error="e"
        )


def make_farm(tmp_path: Path, kind: str, *, public_read: bool = True) -> Farm:
    service, tokens = (_memory_farm if kind == "memory" else _sqlite_farm)(tmp_path)
    policy = access_policy(
        AccessSettings(public_read=public_read, require_token=True), tokens, service.builds, clock=lambda: NOW
    )
    assert policy is not None
    return Farm(service, tokens, policy, create_app(service, access=policy))


@pytest.fixture(params=["memory", "sqlite"])
def farm(request: pytest.FixtureRequest, tmp_path: Path) -> Farm:
    return make_farm(tmp_path, request.param)


@pytest.fixture
def client(farm: Farm) -> Iterator[TestClient]:
    with TestClient(farm.app) as test_client:
        yield test_client


def body(name: str = "hello", retry_failed: bool = False, **options: str) -> dict[str, Any]:
    return {"packages": [{"name": name, "options": options}], "retry_failed": retry_failed}


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def option_sets(count: int) -> list[dict[str, Any]]:
    """`count` distinct (package, options) requests of packages without dependencies: one new build each."""
    combos = itertools.product(
        ("hello", "gzip", "lz4"), ("O0", "O1", "O2", "O3", "Os"), ("false", "true"), ("false", "true")
    )
    return [
        {"name": name, "options": {"opt": opt, "debug": debug, "lto": lto}}
        for name, opt, debug, lto in itertools.islice(combos, count)
    ]


def test_starting_a_build_without_a_valid_token_is_401_and_creates_nothing(farm: Farm, client: TestClient) -> None:
    answer = client.post("/v1/resolve", json=body())
    assert answer.status_code == 401
    assert answer.json()["error"] == "unauthorized" and "needs an API token" in answer.json()["reason"]
    assert answer.headers["www-authenticate"].startswith("Bearer")
    for header, reason in [
        ("Bearer pkgc_not-a-token", "not known"),
        ("Basic dXNlcjpwYXNz", "must be 'Bearer <token>'"),
        ("Bearer a\tb", "malformed"),
        ("Bearer " + "x" * 300, "malformed"),
    ]:
        refused = client.post("/v1/resolve", json=body(), headers={"Authorization": header})
        assert refused.status_code == 401 and reason in refused.json()["reason"], header
    assert farm.count_builds() == 0, "a refused resolve creates no build"
    assert client.get("/v1/packages", params={"q": "hello"}).status_code == 200, "reads are public"


def test_existing_builds_are_answered_without_a_token(farm: Farm, client: TestClient) -> None:
    secret = farm.token("ci")
    started = client.post("/v1/resolve", json=body(), headers=bearer(secret))
    assert started.status_code == 200
    key = started.json()["builds"][0]["key"]
    in_progress = client.post("/v1/resolve", json=body())
    assert in_progress.status_code == 200 and in_progress.json()["builds"][0]["status"] == "queued"
    farm.finish(key)
    for _ in range(2):  # the second is a cache hit, answered from memory on the event loop
        hit = client.post("/v1/resolve", json=body())
        assert hit.status_code == 200 and hit.json()["builds"][0]["status"] == "ready"
    assert farm.count_builds() == 1


def test_past_the_hourly_quota_is_429_with_retry_after(farm: Farm, client: TestClient) -> None:
    secret = farm.token("ci", hourly=2, flying=10)
    for opt in ("O0", "O1"):
        assert client.post("/v1/resolve", json=body(opt=opt), headers=bearer(secret)).status_code == 200
    refused = client.post("/v1/resolve", json=body(opt="O3"), headers=bearer(secret))
    assert refused.status_code == 429
    assert refused.json()["error"] == "rate_limited"
    assert "started 2 of its 2 builds this hour" in refused.json()["reason"]
    assert int(refused.headers["retry-after"]) == WINDOW_END - NOW
    assert farm.count_builds() == 2
    again = client.post("/v1/resolve", json=body(opt="O1"), headers=bearer(secret))
    assert again.status_code == 200, "asking again for a build it started costs nothing"


def test_past_the_in_flight_quota_is_429_until_a_build_finishes(farm: Farm, client: TestClient) -> None:
    secret = farm.token("ci", hourly=100, flying=1)
    first = client.post("/v1/resolve", json=body(opt="O0"), headers=bearer(secret))
    assert first.status_code == 200
    refused = client.post("/v1/resolve", json=body(opt="O1"), headers=bearer(secret))
    assert refused.status_code == 429 and "has 1 of its 1 builds in flight" in refused.json()["reason"]
    assert refused.headers["retry-after"] == "60"
    farm.finish(first.json()["builds"][0]["key"], BuildStatus.FAILED)
    assert client.post("/v1/resolve", json=body(opt="O1"), headers=bearer(secret)).status_code == 200


def test_a_revoked_token_is_refused_at_once(farm: Farm, client: TestClient) -> None:
    secret = farm.token("ci")
    assert client.post("/v1/resolve", json=body(opt="O0"), headers=bearer(secret)).status_code == 200
    revoke_token(farm.tokens, "ci", clock=lambda: NOW)
    refused = client.post("/v1/resolve", json=body(opt="O1"), headers=bearer(secret))
    assert refused.status_code == 401 and "'ci' was revoked" in refused.json()["reason"]
    assert farm.count_builds() == 1


def test_retrying_failed_builds_needs_an_admin_token(farm: Farm, client: TestClient) -> None:
    user, admin = farm.token("ci"), farm.token("ops", admin=True)
    key = client.post("/v1/resolve", json=body(), headers=bearer(user)).json()["builds"][0]["key"]
    farm.finish(key, BuildStatus.FAILED)
    asked = client.post("/v1/resolve", json=body(), headers=bearer(user))
    assert asked.status_code == 200 and asked.json()["builds"][0]["status"] == "failed", "no retry: no new build"
    assert client.post("/v1/resolve", json=body(retry_failed=True)).status_code == 401
    refused = client.post("/v1/resolve", json=body(retry_failed=True), headers=bearer(user))
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    assert "needs an admin token" in refused.json()["reason"]
    record = farm.service.builds.get(key)
    assert record is not None and record.status == BuildStatus.FAILED, "a refused retry changes nothing"
    retried = client.post("/v1/resolve", json=body(retry_failed=True), headers=bearer(admin))
    assert retried.status_code == 200 and retried.json()["builds"][0]["status"] == "queued"


def test_fifty_option_sets_past_a_quota_of_ten_start_nothing(farm: Farm, client: TestClient) -> None:
    secret = farm.token("ci", hourly=10, flying=100)
    refused = client.post("/v1/resolve", json={"packages": option_sets(50)}, headers=bearer(secret))
    assert refused.status_code == 429
    assert "would start 50 new builds" in refused.json()["reason"] and "retry-after" in refused.headers
    assert farm.count_builds() == 0
    stored = farm.tokens.get(farm.tokens.list_tokens()[0].token_hash)
    assert stored is not None and stored.builds_started == 0


def test_reads_need_a_token_when_not_public(tmp_path: Path) -> None:
    farm = make_farm(tmp_path, "memory", public_read=False)
    secret = farm.token("reader", hourly=0, flying=0)
    with TestClient(farm.app) as client:
        assert client.get("/v1/health").status_code == 200, "health stays open for monitoring"
        for path in ("/v1/packages?q=hello", "/v1/catalog", "/v1/packages/hello", f"/v1/builds/{'a' * 64}"):
            refused = client.get(path)
            assert refused.status_code == 401 and refused.json()["error"] == "unauthorized", path
        assert client.get("/v1/packages/hello", headers=bearer(secret)).status_code == 200
        assert client.post("/v1/resolve", json=body()).status_code == 401
        no_builds = client.post("/v1/resolve", json=body(), headers=bearer(secret))
        assert no_builds.status_code == 429, "a token with a quota of 0 reads but starts nothing"
        revoke_token(farm.tokens, "reader")
        assert client.get("/v1/packages/hello", headers=bearer(secret)).status_code == 401


def test_access_settings_from_the_environment() -> None:
    assert AccessSettings.from_env({}, "local") == AccessSettings(public_read=True, require_token=False)
    assert AccessSettings.from_env({}, "aws") == AccessSettings(public_read=True, require_token=True)
    assert AccessSettings.from_env({"PKGC_FARM_REQUIRE_TOKEN": "1"}, "local").require_token
    assert not AccessSettings.from_env({"PKGC_FARM_PUBLIC_READ": "off"}, "aws").public_read
    with pytest.raises(UsageError, match="PKGC_FARM_REQUIRE_TOKEN"):
        AccessSettings.from_env({"PKGC_FARM_REQUIRE_TOKEN": "maybe"}, "local")
    with pytest.raises(UsageError):
        AccessSettings(public_read=False, require_token=False)
    assert access_policy(AccessSettings(), None, MemoryBuildStore()) is None, "an open farm checks nothing"


def _concurrently(url: str, bodies: list[dict[str, Any]], secret: str) -> list[httpx.Response]:
    """POST each body to /v1/resolve from its own thread, all released at once."""
    barrier = threading.Barrier(len(bodies))
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def send(payload: dict[str, Any]) -> None:
        with httpx.Client(base_url=url, timeout=60, trust_env=False) as http:
            barrier.wait()
            answer = http.post("/v1/resolve", json=payload, headers=bearer(secret))
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=send, args=(payload,)) for payload in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def test_quota_holds_under_twenty_concurrent_requests(farm: Farm) -> None:
    secret = farm.token("ci", hourly=10, flying=100)
    for url in serve_asgi(farm.app):
        big = _concurrently(url, [{"packages": option_sets(50)} for _ in range(20)], secret)
        assert [a.status_code for a in big] == [429] * 20
        assert farm.count_builds() == 0, "20 requests of 50 option sets each, 10 per hour: nothing started"

        small = _concurrently(url, [{"packages": [one]} for one in option_sets(20)], secret)
        codes = sorted(a.status_code for a in small)
        assert codes == [200] * 10 + [429] * 10, codes
        assert all("retry-after" in a.headers for a in small if a.status_code == 429)
    assert farm.count_builds() == 10, "exactly the quota's 10 builds were created"
    stored = farm.tokens.list_tokens()[0]
    assert stored.builds_started == 10 and stored.window_count == 10


def test_the_embedded_farm_asks_for_tokens_only_when_told(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pkgc.farm.embedded import embedded_access

    paths = FarmPaths(tmp_path)
    engine = open_farm_database(paths.database)
    ports = open_ports(FarmConfig.local(paths.home), engine=engine)
    monkeypatch.delenv("PKGC_FARM_REQUIRE_TOKEN", raising=False)
    monkeypatch.delenv("PKGC_FARM_PUBLIC_READ", raising=False)
    assert embedded_access(paths, ports) is None, "loopback, one user: no tokens by default"
    monkeypatch.setenv("PKGC_FARM_REQUIRE_TOKEN", "1")
    policy = embedded_access(paths, ports)
    assert policy is not None and policy.settings == AccessSettings(public_read=True, require_token=True)
    made = create_token(SqliteTokenStore(engine), "ci", clock=lambda: NOW)  # what `pkgc farm token create` does
    assert policy.authenticate(f"Bearer {made.secret}") == made.record, "the farm sees the CLI's tokens"
