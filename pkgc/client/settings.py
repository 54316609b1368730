"""The user's settings: `config.toml` in the platform's config directory (honours XDG_CONFIG_HOME).

Every key is declared here with what it allows, so that `pkgc config set`, `pkgc config edit` and loading all give
the same one-line error naming the file, the key and what is allowed. Unknown keys are kept but warned about.

    farm = "embedded"                 # or an http(s) URL
    token = ""
    prefix = "~/.local/share/pkgc/prefix"
    install_mode = "wait"             # or "background"
    parallel_downloads = 4
    network_timeout = 30              # seconds without a byte from the farm before a request fails
    farm_idle_timeout = 900           # seconds the embedded farm runs with nothing to do; 0: until `pkgc farm stop`
    [options]                         # defaults for every package: global options only
    opt = "O3"
    [packages.hello.options]          # per package, any of its options
    nls = "false"
    [pins]                            # upgrade --all leaves these alone
    hello = "2.10"
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from pkgc.core.errors import UsageError
from pkgc.core.names import validate_name
from pkgc.core.options import GLOBAL_OPTION_NAMES, global_option_specs
from pkgc.core.platform import detect_platform
from pkgc.core.relocation import check_prefix_fits
from pkgc.core.versions import Version


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
    install_mode: str = "wait"
    parallel_downloads: int = 4
    network_timeout: float = 30.0
    farm_idle_timeout: float = 900.0
    options: dict[str, str] = field(default_factory=dict)
    package_options: dict[str, dict[str, str]] = field(default_factory=dict)
    pins: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def embedded(self) -> bool:
        return self.farm == "embedded"

    def options_for(self, name: str) -> dict[str, str]:
        return {**self.options, **self.package_options.get(name, {})}


# -- the schema -----------------------------------------------------------------------------------------------------


def _farm(value: Any) -> Any:
    if value == "embedded" or (isinstance(value, str) and value.startswith(("http://", "https://"))):
        return value.rstrip("/")
    raise ValueError("'embedded' or an http:// or https:// URL")


def _text(value: Any) -> Any:
    if isinstance(value, str):
        return value
    raise ValueError("a string")


def _prefix(value: Any) -> Any:
    if not isinstance(value, str) or not value:
        raise ValueError("an absolute path")
    expanded = os.path.expanduser(value)
    try:
        check_prefix_fits(expanded)
    except UsageError as exc:
        raise ValueError(f"an absolute path that pkgc can relocate into ({exc.message})") from None
    return value


def _install_mode(value: Any) -> Any:
    if value in ("wait", "background"):
        return value
    raise ValueError("'wait' or 'background'")


def _parallel(value: Any) -> Any:
    number = int(value) if isinstance(value, str) and value.isdigit() else value
    if isinstance(number, int) and not isinstance(number, bool) and 1 <= number <= 16:
        return number
    raise ValueError("a whole number from 1 to 16")


def _seconds(value: Any) -> Any:
    number = float(value) if isinstance(value, str) and value.replace(".", "", 1).isdigit() else value
    if isinstance(number, (int, float)) and not isinstance(number, bool) and 1 <= number <= 600:
        return number
    raise ValueError("a number of seconds from 1 to 600")


def _idle_seconds(value: Any) -> Any:
    number = int(value) if isinstance(value, str) and value.isdigit() else value
    if isinstance(number, (int, float)) and not isinstance(number, bool) and 0 <= number <= 604800:
        return number
    raise ValueError("a number of seconds from 0 (never stop) to 604800")


def _global_option(name: str) -> Callable[[Any], Any]:
    spec = global_option_specs(detect_platform().arch)[name]

    def check(value: Any) -> Any:
        try:
            return spec.canonical(value)
        except UsageError:
            raise ValueError(spec.allowed()) from None

    return check


def _option_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value:
        return value
    raise ValueError("a non-empty string or true/false (checked against the package when it is installed)")


def _pin(value: Any) -> Any:
    try:
        Version(str(value))
    except UsageError:
        raise ValueError("a version such as 2.10") from None
    return str(value)


SCALAR_KEYS: dict[str, Callable[[Any], Any]] = {
    "farm": _farm,
    "token": _text,
    "prefix": _prefix,
    "install_mode": _install_mode,
    "parallel_downloads": _parallel,
    "network_timeout": _seconds,
    "farm_idle_timeout": _idle_seconds,
}


def validator_for(key: str) -> Callable[[Any], Any] | None:
    """The check for a dotted key (`farm`, `options.opt`, `packages.hello.options.nls`, `pins.hello`), or None."""
    if key in SCALAR_KEYS:
        return SCALAR_KEYS[key]
    parts = key.split(".")
    if len(parts) == 2 and parts[0] == "options" and parts[1] in GLOBAL_OPTION_NAMES:
        return _global_option(parts[1])
    try:
        if len(parts) == 4 and parts[0] == "packages" and parts[2] == "options":
            validate_name(parts[1])
            validate_name(parts[3])
            return _option_value
        if len(parts) == 2 and parts[0] == "pins":
            validate_name(parts[1])
            return _pin
    except UsageError:
        return None
    return None


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def validate_document(data: dict[str, Any], path: Path) -> tuple[dict[str, Any], list[str]]:
    """Check every key; return the valid values (dotted keys) and warnings for unknown keys."""
    values: dict[str, Any] = {}
    warnings: list[str] = []
    for key, value in flatten(data).items():
        check = validator_for(key)
        if check is None:
            warnings.append(f"{path}: unknown key '{key}' is ignored")
            continue
        try:
            values[key] = check(value)
        except ValueError as exc:
            raise UsageError(f"{path}: key '{key}' has a bad value {value!r}", hint=f"allowed: {exc}") from None
    return values, warnings


def read_document(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from None


def settings_from(values: dict[str, Any], warnings: list[str]) -> Settings:
    package_options: dict[str, dict[str, str]] = {}
    for key, value in values.items():
        if key.startswith("packages."):
            _, name, _, option = key.split(".")
            package_options.setdefault(name, {})[option] = value
    farm = os.environ.get("PKGC_FARM") or values.get("farm", "embedded")
    try:
        farm = _farm(farm)
    except ValueError:
        raise UsageError(f"PKGC_FARM must be 'embedded' or an http(s) URL, not {farm!r}") from None
    prefix_value = os.environ.get("PKGC_PREFIX") or values.get("prefix")
    idle = os.environ.get("PKGC_FARM_IDLE_TIMEOUT") or values.get("farm_idle_timeout", 900)
    try:
        idle = _idle_seconds(idle)
    except ValueError as exc:
        raise UsageError(f"PKGC_FARM_IDLE_TIMEOUT must be {exc}, not {idle!r}") from None
    return Settings(
        farm=farm,
        token=values.get("token", ""),
        prefix=Path(prefix_value).expanduser() if prefix_value else data_dir() / "prefix",
        install_mode=values.get("install_mode", "wait"),
        parallel_downloads=values.get("parallel_downloads", 4),
        network_timeout=float(values.get("network_timeout", 30.0)),
        farm_idle_timeout=float(idle),
        options={k.split(".", 1)[1]: v for k, v in values.items() if k.startswith("options.")},
        package_options=package_options,
        pins={k.split(".", 1)[1]: v for k, v in values.items() if k.startswith("pins.")},
        warnings=tuple(warnings),
    )


def load_settings() -> Settings:
    """Read config.toml if there is one; PKGC_FARM, PKGC_PREFIX and PKGC_FARM_IDLE_TIMEOUT override it (useful in scripts and tests)."""
    path = config_path()
    values, warnings = validate_document(read_document(path), path)
    return settings_from(values, warnings)
