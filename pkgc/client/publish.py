"""`pkgc farm publish`: put recipe files into a farm's catalog (POST /v1/recipes, an admin token).

A recipe's patch files (`recipes/NAME/FILE` beside `recipes/NAME.toml`) are read with it and sent inside its text
(a `[patch_texts]` table, see pkgc.core.recipe.bundle_recipe_text), because the farm stores recipe texts. The files
are read and checked here first (readable UTF-8, within the size bound, valid TOML, a usable file name),
so a local mistake stops the command before anything is published. Whether a recipe's fields make a recipe is the
farm's call (its recipe schema is the one that counts): a recipe it refuses is skipped and named in the answer while
the others are published. A set larger than one request may carry (MAX_RECIPES_PER_PUBLISH recipes or
MAX_PUBLISH_BODY_BYTES of JSON) goes in several requests; publishing a recipe again is harmless, so a run cut short
is finished by running it again.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pkgc.client.farm_client import FarmClient
from pkgc.core.errors import PkgcError, UsageError
from pkgc.core.protocol_rules import MAX_PUBLISH_BODY_BYTES, MAX_RECIPE_BYTES, MAX_RECIPES_PER_PUBLISH
from pkgc.core.recipe import RecipeError, bundle_recipe_text
from pkgc.core.wire import PublishedRecipe, RecipeFile, SkippedRecipeFile
from pkgc.core.wire_schema import Invalid, dumps
from pkgc.recipes import bundled_recipe_dir

# Room for the request's own JSON around the recipes ({"recipes":[...]}), well above what it needs.
_ENVELOPE_BYTES = 1024


@dataclass(frozen=True)
class PublishReport:
    """Every recipe sent, published (in the catalog now) or skipped with the farm's one-line reason, in order."""

    published: list[PublishedRecipe]
    skipped: list[SkippedRecipeFile]
    requests: int


def read_recipe_file(path: Path) -> RecipeFile:
    """The recipe in `path`, checked as far as the client can: a UsageError naming the file otherwise."""
    shown = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read recipe {shown}: {exc.strerror or exc}") from None
    if len(data) > MAX_RECIPE_BYTES:
        raise UsageError(f"recipe {shown} is {len(data)} bytes; a farm takes at most {MAX_RECIPE_BYTES}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"recipe {shown} is not UTF-8 text (byte {exc.start})") from None
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"recipe {shown} is not valid TOML: {' '.join(str(exc).split())}") from None
    try:  # with its patch files (recipes/NAME/FILE), which travel inside its text
        text = bundle_recipe_text(path)
    except OSError as exc:
        raise UsageError(f"cannot read the patch files of recipe {shown}: {exc.strerror or exc}") from None
    except RecipeError as exc:
        raise UsageError(str(exc).replace(path.name, shown, 1)) from None
    size = len(text.encode("utf-8"))
    if size > MAX_RECIPE_BYTES:
        raise UsageError(f"recipe {shown} with its patch files is {size} bytes; a farm takes at most {MAX_RECIPE_BYTES}")
    try:
        return RecipeFile(file=path.name, text=text)
    except Invalid as exc:
        raise UsageError(f"recipe {shown}: {exc.describe()}") from None


def read_recipe_files(paths: Sequence[Path]) -> list[RecipeFile]:
    """The recipes of `paths`, each file name once (the farm's answer names recipes by file name)."""
    recipes: list[RecipeFile] = []
    seen: dict[str, Path] = {}
    for path in paths:
        recipe = read_recipe_file(path)
        if recipe.file in seen:
            raise UsageError(f"two recipe files are named {recipe.file}: {seen[recipe.file]} and {path}")
        seen[recipe.file] = path
        recipes.append(recipe)
    return recipes


def starter_recipe_paths() -> list[Path]:
    """The starter recipes shipped with pkgc (what the embedded farm serves by default)."""
    return sorted(bundled_recipe_dir().glob("*.toml"))


def _entry_bytes(recipe: RecipeFile) -> int:
    return len(dumps(recipe)) + 1  # and its comma


def batches(
    recipes: Iterable[RecipeFile],
    max_count: int = MAX_RECIPES_PER_PUBLISH,
    max_bytes: int = MAX_PUBLISH_BODY_BYTES - _ENVELOPE_BYTES,
) -> list[list[RecipeFile]]:
    """The recipes in request-sized groups, in order: at most `max_count` each and `max_bytes` of JSON entries."""
    groups: list[list[RecipeFile]] = []
    current: list[RecipeFile] = []
    size = 0
    for recipe in recipes:
        entry = _entry_bytes(recipe)
        if current and (len(current) >= max_count or size + entry > max_bytes):
            groups.append(current)
            current, size = [], 0
        current.append(recipe)
        size += entry
    if current:
        groups.append(current)
    return groups


def publish_recipes(farm: FarmClient, recipes: Sequence[RecipeFile]) -> PublishReport:
    """Publish `recipes` through the farm API, in as many requests as needed, and account for each one.

    The farm refuses the whole request (422) when none of its recipes could be published; its reason names each
    file. When that happens after earlier requests were published, the error says so.
    """
    if not recipes:
        raise UsageError("no recipes to publish: name recipe files, or pass --starter")
    published: list[PublishedRecipe] = []
    skipped: list[SkippedRecipeFile] = []
    groups = batches(recipes)
    for group in groups:
        try:
            answer = farm.publish(group)
        except PkgcError as exc:
            if published:
                exc.message = f"{len(published)} recipes were published before this request failed: {exc.message}"
            raise
        published.extend(answer.published)
        skipped.extend(answer.skipped)
    return PublishReport(published, skipped, len(groups))
