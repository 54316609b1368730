"""End-to-end: what a request's dependencies get and where they end up, through the real CLI and the session farm.

`usesgen` (a test recipe of tests/conftest.py) runs the tool `gen` while it builds and needs `greet` at run time.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import FarmEnv

pytestmark = pytest.mark.e2e


def listed(farm: FarmEnv, prefix: Path, env: dict[str, str] | None = None) -> dict[str, dict]:  # type: ignore[type-arg]
    result = subprocess.run(
        farm.pkgc_argv("list", "--json", "--prefix", str(prefix)),
        env=env or farm.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return {p["name"]: p for p in json.loads(result.stdout)}


def test_build_only_dependencies_stay_on_the_farm(farm: FarmEnv) -> None:
    prefix = farm.root / "buildonly"
    farm.pkgc("install", "usesgen", "--prefix", str(prefix), check=True)
    packages = listed(farm, prefix)
    assert sorted(packages) == ["greet", "usesgen"], "gen is needed to build usesgen, not to run it"
    assert not (prefix / "bin/gen").exists()
    ran = subprocess.run([prefix / "bin/usesgen"], capture_output=True, text=True, check=True)
    assert ran.stdout.strip() == "made by gen 1.0"
    assert packages["usesgen"]["requested"] is True and packages["greet"]["requested"] is False
    assert packages["usesgen"]["dependencies"] == ["greet"]

    upgraded = json.loads(farm.pkgc("upgrade", "usesgen", "--json", "--prefix", str(prefix), check=True).stdout)
    assert upgraded["changes"] == [], "an upgrade leaves build-only dependencies on the farm too"
    assert sorted(listed(farm, prefix)) == ["greet", "usesgen"]


def test_a_request_needing_two_builds_of_one_package_is_refused(farm: FarmEnv, tmp_path: Path) -> None:
    """usesgen runs with greet 2.0: asking for greet 1.0 too cannot be met in one prefix."""
    prefix = tmp_path / "two"
    refused = farm.pkgc("install", "usesgen", "greet@1.0", "--prefix", str(prefix))
    assert refused.returncode == 7, refused.stderr
    assert refused.stderr.strip() == (
        "error: these packages need two different builds of greet (2.0 and 1.0); a prefix holds one"
        " (install them one at a time, or ask for the build the others need)"
    )
    assert listed(farm, prefix) == {}


def test_pending_install_leaves_build_only_dependencies_on_the_farm(farm: FarmEnv, tmp_path: Path) -> None:
    prefix = tmp_path / "later"
    p = ("--prefix", str(prefix))
    fresh = ("--opt", "opt=O0")  # options of its own: these builds are not ready yet
    started = json.loads(farm.pkgc("install", "usesgen", *fresh, "--background", "--json", *p, check=True).stdout)
    assert started["pending"] == ["usesgen"]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        statuses = {e["status"] for e in json.loads(farm.pkgc("pending", "--json", *p, check=True).stdout)}
        assert "failed" not in statuses
        if statuses == {"ready"}:
            break
        time.sleep(0.5)
    finished = json.loads(farm.pkgc("pending", "--install", "--json", *p, check=True).stdout)
    assert finished["installed"] == ["usesgen"]
    packages = listed(farm, prefix)
    assert sorted(packages) == ["greet", "usesgen"]
    assert packages["usesgen"]["options"]["opt"] == packages["greet"]["options"]["opt"] == "O0"


def test_option_levels_for_the_package_and_its_dependencies(farm: FarmEnv, tmp_path: Path) -> None:
    """[options] < [packages.NAME.options] < --opt for NAME; its dependencies get [options] and --opt only."""
    config = tmp_path / "config" / "pkgc" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text('[options]\nopt = "O3"\n[packages.usesgen.options]\nopt = "O1"\n')
    env = {**farm.env, "XDG_CONFIG_HOME": str(tmp_path / "config")}

    def install(prefix: Path, *opts: str) -> dict[str, dict]:  # type: ignore[type-arg]
        argv = farm.pkgc_argv("install", "usesgen", "--prefix", str(prefix), *opts)
        result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr
        return listed(farm, prefix, env)

    both = install(tmp_path / "both", "--opt", "debug=true")
    assert both["usesgen"]["options"]["opt"] == "O1", "[packages.usesgen.options] beats [options]"
    assert both["greet"]["options"]["opt"] == "O3", "a dependency gets [options], not usesgen's own"
    assert both["usesgen"]["options"]["debug"] == both["greet"]["options"]["debug"] == "true"
    upgrade = farm.pkgc_argv("upgrade", "--all", "--json", "--prefix", str(tmp_path / "both"))
    kept = subprocess.run(upgrade, env=env, capture_output=True, text=True, timeout=600, check=True)
    assert json.loads(kept.stdout)["changes"] == [], "an upgrade keeps the options the dependencies were built with"

    command_line = install(tmp_path / "cli", "--opt", "opt=Os")
    assert command_line["usesgen"]["options"]["opt"] == "Os", "--opt beats [packages.usesgen.options]"
    assert command_line["greet"]["options"]["opt"] == "Os", "--opt applies to the whole request"


def test_a_dependency_stays_a_dependency_until_asked_for_by_name(farm: FarmEnv, tmp_path: Path) -> None:
    prefix = tmp_path / "marks"
    p = ("--prefix", str(prefix))
    farm.pkgc("install", "usesgen", *p, check=True)
    farm.pkgc("downgrade", "greet", "1.1", *p, check=True)
    assert listed(farm, prefix)["greet"]["requested"] is False, "a downgrade keeps the mark"
    farm.pkgc("upgrade", "greet", *p, check=True)
    packages = listed(farm, prefix)
    assert packages["greet"]["version"] == "2.0" and packages["greet"]["requested"] is False
    assert packages["usesgen"]["requested"] is True

    again = json.loads(farm.pkgc("install", "greet", "--json", *p, check=True).stdout)
    assert [(i["name"], i["action"]) for i in again["packages"]] == [("greet", "marked as requested")]
    assert listed(farm, prefix)["greet"]["requested"] is True
    farm.pkgc("remove", "usesgen", *p, check=True)
    assert json.loads(farm.pkgc("autoremove", "--dry-run", "--json", *p, check=True).stdout)["removed"] == []


def test_remove_names_what_is_no_longer_needed_and_autoremove_takes_it(farm: FarmEnv, tmp_path: Path) -> None:
    prefix = tmp_path / "auto"
    p = ("--prefix", str(prefix))
    farm.pkgc("install", "usesgen", *p, check=True)
    removed = farm.pkgc("remove", "usesgen", *p, check=True)
    assert removed.stdout.splitlines()[-1] == (
        "The following packages are no longer needed: greet; use 'pkgc autoremove' to remove them"
    )
    dry = json.loads(farm.pkgc("autoremove", "--dry-run", "--json", *p, check=True).stdout)
    assert [item["name"] for item in dry["removed"]] == ["greet"] and (prefix / "bin/greet").exists()
    entries = len(json.loads(farm.pkgc("history", "--json", *p, check=True).stdout))

    done = json.loads(farm.pkgc("autoremove", "--json", *p, check=True).stdout)
    assert [item["name"] for item in done["removed"]] == ["greet"]
    assert listed(farm, prefix) == {} and not (prefix / "bin/greet").exists()
    history = json.loads(farm.pkgc("history", "--json", *p, check=True).stdout)
    assert len(history) == entries + 1, "one transaction"
    assert farm.pkgc("autoremove", *p, check=True).stdout == "autoremove: nothing to do\n"

    farm.pkgc("rollback", *p, check=True)
    assert listed(farm, prefix)["greet"]["requested"] is False
    assert subprocess.run([prefix / "bin/greet"], capture_output=True, text=True, check=True).stdout == "greet 2.0\n"
