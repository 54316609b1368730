"""Running a recipe's smoke tests the way docs/recipes.md defines them (the runner is pkgc.worker.smoke)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pkgc.core.recipe import Recipe
from pkgc.worker.smoke import SmokeFailed, run_smoke_tests


def run_smoke(
    recipe: Recipe, prefix: Path, base_env: dict[str, str], dependency_prefixes: Sequence[Path] = ()
) -> str:
    """Run every smoke test of `recipe` in `prefix`; fail the test with the runner's one-line reason. Returns the
    tests' outputs, joined."""
    assert recipe.smoke_tests, f"{recipe.name} has no smoke test"
    try:
        results = run_smoke_tests(recipe.smoke_tests, prefix, base_env, dependency_prefixes=dependency_prefixes)
    except SmokeFailed as exc:
        raise AssertionError(f"{recipe.name}: {exc}") from None
    return "".join(result.output for result in results)
