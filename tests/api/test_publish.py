"""POST /v1/recipes: publishing recipes into a farm's catalog with an admin token, on the in-memory fakes and on the
SQLite adapters, through the real app (TestClient).

An admin publishes; a user token is 403 and no token 401 (before the body is even looked at); a broken recipe is
skipped and named while the others are published; nothing publishable is a 422; a farm without tokens takes no
recipes at all; another API container's search and resolve see the new package within the recipe TTL.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pkgc.core.errors import NotFound
from pkgc.core.protocol import MAX_RECIPE_BYTES, PublishResponse
from pkgc.farm.api import MAX_BODY_BYTES, MAX_PUBLISH_BODY_BYTES, create_app
from pkgc.farm.service import FarmService
from pkgc.recipes import bundled_recipe_dir
from tests.api.test_access import Farm, bearer, make_farm

HELLO = (bundled_recipe_dir() / "hello.toml").read_text(encoding="utf-8")


def recipe(name: str, summary: str = "a salutation in other words") -> str:
    """hello's recipe as a new package `name` (not in the catalog yet)."""
    text = HELLO.replace('name = "hello"', f'name = "{name}"', 1)
    return text.replace('summary = "GNU Hello: prints a friendly, translated greeting"', f'summary = "{summary}"', 1)


def publication(*recipes: tuple[str, str]) -> dict[str, Any]:
    return {"recipes": [{"file": file, "text": text} for file, text in recipes]}


@pytest.fixture(params=["memory", "sqlite"])
def farm(request: pytest.FixtureRequest, tmp_path: Path) -> Farm:
    return make_farm(tmp_path, request.param)


@pytest.fixture
def client(farm: Farm) -> Any:
    with TestClient(farm.app) as test_client:
        yield test_client


def other_container(service: FarmService, ttl: float) -> FarmService:
    """A second API process over the same stores (another Lambda container), with its own caches."""
    return FarmService(
        catalog=service.catalog,
        builds=service.builds,
        queues=service.queues,
        blobs=service.blobs,
        platform=service.platform,
        recipe_ttl=ttl,
    )


def test_an_admin_publishes_and_the_catalog_has_the_package(farm: Farm, client: TestClient) -> None:
    admin = farm.token("ops", admin=True)
    answer = client.post(
        "/v1/recipes", json=publication(("salute.toml", recipe("salute")), ("hello.toml", HELLO)), headers=bearer(admin)
    )
    assert answer.status_code == 200, answer.text
    parsed = PublishResponse.model_validate_json(answer.content)
    assert [(p.file, p.name, p.version) for p in parsed.published] == [
        ("salute.toml", "salute", "2.10"),
        ("hello.toml", "hello", "2.10"),
    ]
    assert parsed.skipped == []
    assert farm.service.catalog.get_recipe_text("salute") == recipe("salute")
    found = client.get("/v1/packages", params={"q": "salute"}).json()["results"]
    assert [p["name"] for p in found] == ["salute"], "the publishing container sees it at once"
    catalog = client.get("/v1/catalog").json()["packages"]
    assert "salute" in [p["name"] for p in catalog]
    assert client.get("/v1/packages/salute").json()["summary"] == "a salutation in other words"


def test_a_user_token_is_403_and_no_token_401_and_nothing_is_published(farm: Farm, client: TestClient) -> None:
    user = farm.token("ci")
    body = publication(("salute.toml", recipe("salute")))
    forbidden = client.post("/v1/recipes", json=body, headers=bearer(user))
    assert forbidden.status_code == 403
    assert forbidden.json() == {
        "error": "forbidden",
        "reason": "publishing recipes needs an admin token; 'ci' is not one",
    }
    missing = client.post("/v1/recipes", json=body)
    assert missing.status_code == 401 and missing.json()["error"] == "unauthorized"
    assert "publishing recipes needs an API token" in missing.json()["reason"]
    unknown = client.post("/v1/recipes", json=body, headers=bearer("pkgc_not-a-token"))
    assert unknown.status_code == 401 and "not known" in unknown.json()["reason"]
    # The token is checked before the body: a caller without one learns nothing about what would be accepted.
    assert client.post("/v1/recipes", json={"nonsense": 1}).status_code == 401
    assert client.post("/v1/recipes", json={"nonsense": 1}, headers=bearer(user)).status_code == 403
    assert farm.service.catalog.get_recipe_text("salute") is None
    assert client.get("/v1/packages", params={"q": "salute"}).json()["results"] == []


def test_a_broken_recipe_is_skipped_and_named_and_the_others_are_published(farm: Farm, client: TestClient) -> None:
    admin = farm.token("ops", admin=True)
    answer = client.post(
        "/v1/recipes",
        json=publication(
            ("bad-toml.toml", 'name = "x"\nsummary = \n'),
            ("salute.toml", recipe("salute")),
            ("no-versions.toml", 'name = "empty"\nsummary = "s"\nhomepage = "h"\nlicense = "MIT"\n'),
        ),
        headers=bearer(admin),
    )
    assert answer.status_code == 200, answer.text
    parsed = PublishResponse.model_validate_json(answer.content)
    assert [p.name for p in parsed.published] == ["salute"]
    assert [s.file for s in parsed.skipped] == ["bad-toml.toml", "no-versions.toml"]
    assert parsed.skipped[0].error.startswith("not valid TOML")
    assert parsed.skipped[1].error == "at least one [[versions]] entry is needed"
    assert all("\n" not in s.error for s in parsed.skipped)
    assert farm.service.catalog.get_recipe_text("empty") is None
    assert farm.service.catalog.get_recipe_text("salute") is not None


def test_nothing_publishable_is_422_naming_each_file(farm: Farm, client: TestClient) -> None:
    admin = farm.token("ops", admin=True)
    before = client.get("/v1/catalog")
    answer = client.post(
        "/v1/recipes",
        json=publication(("a.toml", "[[["), ("b.toml", 'name = "Bad Name"\n')),
        headers=bearer(admin),
    )
    assert answer.status_code == 422
    reason = answer.json()["reason"]
    assert answer.json()["error"] == "invalid_recipe"
    assert reason.startswith("no recipe could be published: a.toml: not valid TOML")
    assert "; b.toml: invalid package name" in reason and "\n" not in reason
    after = client.get("/v1/catalog")
    assert after.headers["etag"] == before.headers["etag"], "the catalog is unchanged"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"recipes": []}, "recipes: List should have at least 1 item"),
        (publication(*((f"r{i}.toml", "x") for i in range(101))), "recipes: List should have at most 100 items"),
        (publication(("../etc/passwd.toml", "x")), "is not a recipe file name"),
        (publication(("hello.txt", "x")), "is not a recipe file name"),
        (publication(("a.toml", "x"), ("a.toml", "y")), "the file a.toml is listed twice"),
        (publication(("big.toml", "#" * (MAX_RECIPE_BYTES + 1))), "at most 65536 characters"),
        (publication(("wide.toml", "é" * (MAX_RECIPE_BYTES // 2 + 1))), "more than 65536"),
        ({"recipes": [{"file": "a.toml", "text": "x", "extra": 1}]}, "Extra inputs are not permitted"),
    ],
)
def test_bad_publications_are_422_with_a_reason(
    farm: Farm, client: TestClient, body: dict[str, Any], reason: str
) -> None:
    admin = farm.token("ops", admin=True)
    answer = client.post("/v1/recipes", json=body, headers=bearer(admin))
    assert answer.status_code == 422, answer.text
    assert reason in answer.json()["reason"]


def test_this_route_takes_a_larger_body_than_the_others_but_not_without_end(farm: Farm, client: TestClient) -> None:
    admin = farm.token("ops", admin=True)
    # Two recipes padded with comments to 60 KiB each: over the other routes' 64 KiB, under this route's 1 MiB.
    padded = [(f"p{i}.toml", recipe(f"padded{i}") + "#" * (60 * 1024) + "\n") for i in range(2)]
    answer = client.post("/v1/recipes", json=publication(*padded), headers=bearer(admin))
    assert answer.status_code == 200, answer.text
    assert len(answer.request.content) > MAX_BODY_BYTES
    too_many = [(f"q{i}.toml", "#" * 60_000) for i in range(MAX_PUBLISH_BODY_BYTES // 60_000 + 1)]
    refused = client.post("/v1/recipes", json=publication(*too_many), headers=bearer(admin))
    assert refused.status_code == 413 and refused.json()["error"] == "too_large"
    other = client.post("/v1/resolve", content=b" " * (MAX_BODY_BYTES + 1), headers=bearer(admin))
    assert other.status_code == 413, "the other routes keep their 64 KiB"


def test_another_container_sees_the_new_package_within_the_recipe_ttl(farm: Farm, client: TestClient) -> None:
    ttl = 0.3
    other = other_container(farm.service, ttl)
    assert other.search("salute") == []  # its snapshot and its (absent) recipe are now cached
    with pytest.raises(Exception, match="unknown package 'salute'"):
        other.details("salute")
    admin = farm.token("ops", admin=True)
    assert client.post(
        "/v1/recipes", json=publication(("salute.toml", recipe("salute"))), headers=bearer(admin)
    ).is_success
    deadline = time.monotonic() + ttl + 1.0

    def seen() -> bool:
        """By its search (the catalog snapshot) and its details (the recipe): two caches, each with the TTL."""
        if not other.search("salute"):
            return False
        try:
            other.details("salute")
        except NotFound:
            return False
        return True

    while not seen():
        assert time.monotonic() < deadline, "not seen within the recipe TTL"
        time.sleep(0.05)
    assert [p.name for p in other.search("salute")] == ["salute"]
    assert other.details("salute").name == "salute"
    assert "salute" in [p.name for p in other.catalog_snapshot()]


def test_a_farm_without_tokens_takes_no_recipes(tmp_path: Path) -> None:
    """The embedded farm's default (no access policy): nobody is an admin, so nobody publishes over the API."""
    farm = make_farm(tmp_path, "memory")
    with TestClient(create_app(farm.service)) as open_client:
        answer = open_client.post(
            "/v1/recipes", json=publication(("salute.toml", recipe("salute"))), headers=bearer("anything")
        )
    assert answer.status_code == 403
    assert answer.json()["reason"].startswith("this farm takes no recipes over the API: it has no API tokens")
    assert "PKGC_FARM_REQUIRE_TOKEN=1" in answer.json()["reason"]
    assert farm.service.catalog.get_recipe_text("salute") is None
