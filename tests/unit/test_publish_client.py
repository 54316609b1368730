"""The client side of `pkgc farm publish`: local checks before anything is sent, request-sized batches, and the
farm's answer held to what was sent (pkgc/client/publish.py, FarmClient.publish)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from pkgc.client.farm_client import FarmClient
from pkgc.client.publish import batches, publish_recipes, read_recipe_file, read_recipe_files
from pkgc.core.errors import BadFarmAnswer, Forbidden, UsageError
from pkgc.core.protocol_rules import MAX_PUBLISH_BODY_BYTES, MAX_RECIPE_BYTES
from pkgc.core.wire import RecipeFile
from pkgc.core.wire_schema import encode


def _farm(handler: httpx.MockTransport) -> FarmClient:
    return FarmClient("http://127.0.0.1:9", token="pkgc_admin", client=httpx.Client(transport=handler))


def test_batches_hold_at_most_100_recipes_and_about_a_mebibyte_each_in_order() -> None:
    small = [RecipeFile(file=f"r{i}.toml", text="x") for i in range(250)]
    assert [len(group) for group in batches(small)] == [100, 100, 50]
    big = [RecipeFile(file=f"b{i}.toml", text="#" * (MAX_RECIPE_BYTES - 10)) for i in range(40)]
    groups = batches(big)
    assert [r.file for group in groups for r in group] == [r.file for r in big]
    for group in groups:
        body = json.dumps({"recipes": [encode(r) for r in group]}, separators=(",", ":"))
        assert len(body.encode()) <= MAX_PUBLISH_BODY_BYTES
    assert len(groups) == 3


def test_local_problems_are_one_line_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"cannot read recipe .*missing.toml: No such file"):
        read_recipe_file(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\nsummary = \n')
    with pytest.raises(UsageError, match=r"recipe .*bad.toml is not valid TOML: .*line 2"):
        read_recipe_file(bad)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe")
    with pytest.raises(UsageError, match="is not UTF-8 text"):
        read_recipe_file(binary)
    huge = tmp_path / "huge.toml"
    huge.write_text("#" * (MAX_RECIPE_BYTES + 1))
    with pytest.raises(UsageError, match="a farm takes at most 65536"):
        read_recipe_file(huge)
    odd = tmp_path / "two words.toml"
    odd.write_text("")
    with pytest.raises(UsageError, match="is not a recipe file name"):
        read_recipe_file(odd)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "same.toml").write_text("")
    (tmp_path / "same.toml").write_text("")
    with pytest.raises(UsageError, match=r"two recipe files are named same\.toml"):
        read_recipe_files([tmp_path / "a" / "same.toml", tmp_path / "same.toml"])


def test_the_answer_must_account_for_exactly_the_files_sent() -> None:
    recipes = [RecipeFile(file="a.toml", text="x"), RecipeFile(file="b.toml", text="y")]

    def answering(body: dict[str, object]) -> httpx.MockTransport:
        return httpx.MockTransport(lambda request: httpx.Response(200, json=body))

    good = {
        "published": [{"file": "a.toml", "name": "a", "version": "1"}],
        "skipped": [{"file": "b.toml", "error": "e"}],
    }
    report = publish_recipes(_farm(answering(good)), recipes)
    assert [p.name for p in report.published] == ["a"] and [s.file for s in report.skipped] == ["b.toml"]
    stray = {
        "published": [{"file": "c.toml", "name": "c", "version": "1"}],
        "skipped": [{"file": "b.toml", "error": "e"}],
    }
    with pytest.raises(BadFarmAnswer, match=r"c\.toml was not sent"):
        publish_recipes(_farm(answering(stray)), recipes)
    silent = {"published": [{"file": "a.toml", "name": "a", "version": "1"}], "skipped": []}
    with pytest.raises(BadFarmAnswer, match=r"nothing said about b\.toml"):
        publish_recipes(_farm(answering(silent)), recipes)
    escape = {"published": [], "skipped": [{"file": "a.toml", "error": "\x1b[2J"}, {"file": "b.toml", "error": "e"}]}
    with pytest.raises(BadFarmAnswer, match="control characters"):
        publish_recipes(_farm(answering(escape)), recipes)


def test_a_refusal_after_earlier_batches_says_how_many_were_published() -> None:
    recipes = [RecipeFile(file=f"r{i}.toml", text="x") for i in range(150)]
    seen: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent = json.loads(request.content)["recipes"]
        seen.append(len(sent))
        assert request.headers["authorization"] == "Bearer pkgc_admin"
        if len(seen) == 1:
            published = [{"file": r["file"], "name": r["file"][:-5], "version": "1"} for r in sent]
            return httpx.Response(200, json={"published": published, "skipped": []})
        return httpx.Response(403, json={"error": "forbidden", "reason": "revoked meanwhile"})

    with pytest.raises(Forbidden, match=r"^100 recipes were published before this request failed: revoked meanwhile"):
        publish_recipes(_farm(httpx.MockTransport(handler)), recipes)
    assert seen == [100, 50]
