"""pydantic plugins installed beside pkgc do not see how it validates the farm's answers (and cost no start-up).

A distribution that declares a `pydantic` entry point is offered every validator pydantic builds. The test installs
one on a temporary path (a real dist-info with entry_points.txt) whose plugin writes a marker file, and validates a
protocol model in a fresh interpreter: without pkgc's CLI the plugin runs (so the test can fail), with it it does
not.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PLUGIN = """
import os

class _Plugin:
    def new_schema_validator(self, schema, schema_type, schema_type_path, schema_kind, config, plugin_settings):
        with open(os.environ["PKGC_TEST_PLUGIN_MARKER"], "a") as handle:
            handle.write(f"{schema_type_path.name}\\n")
        return None, None, None

plugin = _Plugin()
"""

VALIDATE = """
import sys
if sys.argv[1] == "cli":
    import pkgc.cli
from pkgc.core.protocol import ErrorBody
ErrorBody.model_validate_json(b'{"error": "not_found", "reason": "no such package"}')
"""


@pytest.fixture
def plugin_path(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    (site / "marker_plugin.py").parent.mkdir(parents=True)
    (site / "marker_plugin.py").write_text(PLUGIN)
    info = site / "marker_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: marker-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[pydantic]\nmarker = marker_plugin:plugin\n")
    return site


def _validate(plugin_path: Path, marker: Path, mode: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    env["PYTHONPATH"] = os.pathsep.join([str(plugin_path), *filter(None, [env.get("PYTHONPATH")])])
    env["PKGC_TEST_PLUGIN_MARKER"] = str(marker)
    subprocess.run([sys.executable, "-c", VALIDATE, mode], env=env, check=True, timeout=60)
    return marker.read_text() if marker.exists() else ""


def test_an_installed_pydantic_plugin_sees_validators_without_pkgc(plugin_path: Path, tmp_path: Path) -> None:
    assert "ErrorBody" in _validate(plugin_path, tmp_path / "bare.txt", "bare")


def test_pkgc_cli_keeps_pydantic_plugins_away_from_the_farm_answers(plugin_path: Path, tmp_path: Path) -> None:
    assert _validate(plugin_path, tmp_path / "cli.txt", "cli") == ""
