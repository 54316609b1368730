"""Settings in effect and their origins: default < file < environment (PKGC_<KEY>) < command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from pkgc.client.settings import SCALAR_KEYS, env_var, resolve, settings_from
from pkgc.core.errors import UsageError

FILE = Path("/home/user/.config/pkgc/config.toml")


def test_every_scalar_key_has_a_default_and_an_origin() -> None:
    resolved = resolve({}, FILE, environ={})
    assert set(SCALAR_KEYS) <= set(resolved)
    assert {item.origin for item in resolved.values()} == {"default"}
    settings = settings_from(resolved, [])
    assert (settings.farm, settings.parallel_downloads, settings.catalog_max_age) == ("embedded", 4, 3600)


def test_later_origins_win() -> None:
    file_values = {"prefix": "/from/file", "parallel_downloads": 8, "pins.hello": "2.10"}
    environ = {"PKGC_PREFIX": "/from/env", "PKGC_NETWORK_TIMEOUT": "5", "PKGC_INSTALL_MODE": ""}
    resolved = resolve(file_values, FILE, {"prefix": "/from/cli"}, environ)
    assert (resolved["prefix"].value, resolved["prefix"].origin, resolved["prefix"].where) == (
        "/from/cli",
        "command line",
        "--prefix",
    )
    assert (resolved["network_timeout"].value, resolved["network_timeout"].label) == (5.0, "env:PKGC_NETWORK_TIMEOUT")
    assert resolved["parallel_downloads"].label == f"file:{FILE}"
    assert resolved["install_mode"].origin == "default", "an empty variable counts as unset"
    assert resolved["pins.hello"].origin == "file"
    without_cli = resolve(file_values, FILE, None, environ)
    assert without_cli["prefix"].label == "env:PKGC_PREFIX"
    assert settings_from(without_cli, []).prefix == Path("/from/env")


@pytest.mark.parametrize(
    ("key", "raw", "allowed"),
    [("farm", "ftp://x", "http"), ("parallel_downloads", "99", "1 to 16"), ("catalog_max_age", "-1", "0 (sync")],
)
def test_a_bad_environment_value_names_the_variable(key: str, raw: str, allowed: str) -> None:
    with pytest.raises(UsageError) as caught:
        resolve({}, FILE, environ={env_var(key): raw})
    assert env_var(key) in str(caught.value) and allowed in str(caught.value)


@pytest.mark.parametrize("value", [None, "", "   ", "/tmp/xdg base", "relative/dir"])
def test_the_user_directories_are_platformdirs_answers(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    """settings computes the XDG directories itself on Linux (platformdirs costs an import on every command): the
    same answers as platformdirs, set, empty, blank or unset."""
    import platformdirs

    from pkgc.client import settings

    for variable in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME"):
        if value is None:
            monkeypatch.delenv(variable, raising=False)
        else:
            monkeypatch.setenv(variable, value)
    assert settings.config_path() == platformdirs.user_config_path("pkgc") / "config.toml"
    assert settings.data_dir() == platformdirs.user_data_path("pkgc")
    assert settings.cache_dir() == platformdirs.user_cache_path("pkgc")
