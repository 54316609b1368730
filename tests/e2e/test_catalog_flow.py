"""End-to-end: `pkgc update` (ETag), offline `pkgc search`, and `pkgc info`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import FarmEnv

pytestmark = pytest.mark.e2e


def test_update_then_search_offline(farm: FarmEnv, tmp_path: Path) -> None:
    env = {**farm.env, "XDG_DATA_HOME": str(tmp_path / "data")}

    def pkgc(*args: str, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(farm.pkgc_argv(*args), env={**env, **(extra or {})}, capture_output=True, text=True)

    never = pkgc("search", "zlib", extra={"PKGC_FARM": "http://127.0.0.1:9"})
    assert never.returncode == 4 and "no local catalog yet" in never.stderr, "no copy and no farm: an error"

    first = json.loads(pkgc("update", "--json").stdout)
    assert first["changed"] is True and first["packages"] >= 9
    again = json.loads(pkgc("update", "--json").stdout)
    assert again == {"changed": False, "packages": first["packages"]}, "an unchanged catalog is not downloaded"

    offline = {"PKGC_FARM": "http://127.0.0.1:9"}
    names = [r["name"] for r in json.loads(pkgc("search", "gzip", "--json", extra=offline).stdout)]
    assert names[0] == "gzip", "the exact name comes first"
    assert "pigz" in names, "pigz's summary mentions gzip"
    prefix_hits = [r["name"] for r in json.loads(pkgc("search", "gr", "--json", extra=offline).stdout)]
    assert prefix_hits[0] == "greet"
    words = [r["name"] for r in json.loads(pkgc("search", "compression", "--json", extra=offline).stdout)]
    assert {"zlib", "lz4"} <= set(words)
    plain = pkgc("search", "hello", extra=offline)
    assert plain.returncode == 0 and plain.stdout.splitlines()[0].startswith("hello 2.10 - ")
    nothing = pkgc("search", "no-such-thing-anywhere", "--json", extra=offline)
    assert nothing.returncode == 3 and json.loads(nothing.stdout) == [], "nothing found: exit 3, still JSON"
    assert "error: no package matches 'no-such-thing-anywhere'" in nothing.stderr


def test_info_shows_versions_options_builds_and_installed(farm: FarmEnv) -> None:
    prefix = farm.root / "info"
    farm.pkgc("install", "greet@1.0", "--prefix", str(prefix), check=True)
    details = json.loads(farm.pkgc("info", "greet", "--json", "--prefix", str(prefix), check=True).stdout)
    assert details["versions"] == ["2.0", "1.1", "1.0"]
    assert {o["name"]: o["default"] for o in details["global_options"]}["opt"] == "O2"
    assert any(b["version"] == "1.0" and b["status"] == "ready" for b in details["builds"])
    assert details["installed"]["version"] == "1.0"
    hello = json.loads(farm.pkgc("info", "hello", "--json", check=True).stdout)
    assert hello["variants"] == [
        {
            "name": "nls",
            "description": "Native language support: translated messages",
            "default": "true",
            "values": ["true", "false"],
        }
    ]
    text = farm.pkgc("info", "pigz", check=True).stdout
    assert "depends on: zlib" in text
    assert farm.pkgc("info", "nosuch").returncode == 3
