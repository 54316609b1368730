"""The user's settings: `config.toml` in the platform's config directory (honours XDG_CONFIG_HOME)."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from pkgc.core.errors import UsageError


def config_path() -> Path:
    return platformdirs.user_config_path("pkgc") / "config.toml"


def data_dir() -> Path:
    return platformdirs.user_data_path("pkgc")


def cache_dir() -> Path:
    return platformdirs.user_cache_path("pkgc")


@dataclass(frozen=True)
class Settings:
    farm: str = "embedded"
    token: str = ""
    prefix: Path = field(default_factory=lambda: data_dir() / "prefix")
    options: dict[str, str] = field(default_factory=dict)

    @property
    def embedded(self) -> bool:
        return self.farm == "embedded"


def load_settings() -> Settings:
    """Read config.toml if there is one; PKGC_FARM and PKGC_PREFIX override it (useful in scripts and tests)."""
    path = config_path()
    data: dict[str, object] = {}
    if path.is_file():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"{path}: not valid TOML: {exc}") from None
    farm = str(os.environ.get("PKGC_FARM") or data.get("farm", "embedded"))
    if farm != "embedded" and not farm.startswith(("http://", "https://")):
        raise UsageError(f"{path}: key 'farm' must be 'embedded' or an http(s) URL, not {farm!r}")
    prefix_value = os.environ.get("PKGC_PREFIX") or data.get("prefix")
    prefix = Path(str(prefix_value)).expanduser() if prefix_value else data_dir() / "prefix"
    options = data.get("options", {})
    if not isinstance(options, dict):
        raise UsageError(f"{path}: [options] must be a table of KEY = VALUE")
    return Settings(
        farm=farm,
        token=str(data.get("token", "")),
        prefix=prefix,
        options={str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in options.items()},
    )
