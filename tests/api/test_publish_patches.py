"""A recipe with patch files beside it (recipes/NAME/FILE) publishes through every path the catalog is filled by:
`pkgc farm publish` (the client reads the files and sends one self-contained text), POST /v1/recipes, and the
embedded farm's start (PKGC_RECIPE_PATH). The farm stores that text, so the build spec it plans carries the patch
text a worker applies, and a changed patch is a new build key."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from pkgc.client.publish import read_recipe_file
from pkgc.core.buildspec import PackageRequest, plan_builds
from pkgc.core.errors import UsageError
from pkgc.core.protocol import PublishResponse
from pkgc.core.recipe import PATCH_TEXTS_KEY, parse_recipe
from pkgc.farm.embedded import publish_recipes
from tests.api.test_access import Farm, bearer, make_farm

PATCH = "--- a/src/main.c\n+++ b/src/main.c\n@@ -1 +1 @@\n-int x;\n+int x = 1; /* \"fixed\" {braces} */\n"


def write_recipe(directory: Path, patch: str = PATCH, name: str = "fixed") -> Path:
    sha = hashlib.sha256(patch.encode()).hexdigest()
    path = directory / f"{name}.toml"
    path.write_text(
        f'name = "{name}"\nsummary = "patched"\n\n[[versions]]\nversion = "1.0"\nsha256 = "{"c" * 64}"\n'
        'mirrors = ["mirror://debian/pool/main/f/fixed/fixed_1.0.orig.tar.gz"]\n'
        f'patches = [{{ file = "cve.patch", sha256 = "{sha}" }}]\n\n[build]\nsystem = "make"\n'
    )
    (directory / name).mkdir(exist_ok=True)
    (directory / name / "cve.patch").write_text(patch)
    return path


@pytest.fixture(params=["memory", "sqlite"])
def farm(request: pytest.FixtureRequest, tmp_path: Path) -> Farm:
    return make_farm(tmp_path, request.param)


def planned_patch_text(farm: Farm, name: str = "fixed") -> tuple[str, str]:
    """The patch text and key of the spec the farm plans from the recipe text its catalog stores."""
    text = farm.service.catalog.get_recipe_text(name)
    assert text is not None
    recipe = parse_recipe(text, source=f"{name}.toml")
    specs, _ = plan_builds([PackageRequest(name)], lambda _n: recipe, farm.service.platform)
    return specs[0].source.patches[0].text, specs[0].key


def test_farm_publish_sends_the_patch_files_inside_the_recipe_text(farm: Farm, tmp_path: Path) -> None:
    sent = read_recipe_file(write_recipe(tmp_path))
    assert f"[{PATCH_TEXTS_KEY}]" in sent.text
    with TestClient(farm.app) as client:
        answer = client.post(
            "/v1/recipes",
            json={"recipes": [{"file": sent.file, "text": sent.text}]},
            headers=bearer(farm.token("ops", admin=True)),
        )
    assert answer.status_code == 200, answer.text
    assert [p.name for p in PublishResponse.model_validate_json(answer.content).published] == ["fixed"]
    text, key = planned_patch_text(farm)
    assert text == PATCH
    # The same recipe with another patch is another build.
    other = read_recipe_file(write_recipe(tmp_path / "", PATCH.replace("= 1", "= 2")))
    farm.service.publish_batch([(other.file, other.text)])
    assert planned_patch_text(farm) != (text, key)


def test_a_recipe_without_its_patch_file_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    path = write_recipe(tmp_path)
    (tmp_path / "fixed" / "cve.patch").unlink()
    with pytest.raises(UsageError, match=r"fixed.toml: patch file cve.patch not found \(put it beside the recipe: fixed/cve.patch\)"):
        read_recipe_file(path)


def test_posting_a_recipe_whose_patch_text_is_missing_is_skipped_with_its_reason(farm: Farm, tmp_path: Path) -> None:
    bare = write_recipe(tmp_path).read_text()  # the TOML alone, without the [patch_texts] the client adds
    outcome = farm.service.publish_batch([("fixed.toml", bare)])
    assert outcome.published == []
    assert "patch file cve.patch not found" in str(outcome.skipped[0][1])


def test_the_embedded_farm_publishes_recipes_with_their_patch_files(
    farm: Farm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    write_recipe(recipes)
    monkeypatch.setenv("PKGC_RECIPE_PATH", str(recipes))
    skipped = publish_recipes(farm.service)
    assert [s for s in skipped if "fixed" in s.file] == []
    assert planned_patch_text(farm)[0] == PATCH
