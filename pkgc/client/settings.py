"""The user's settings: `config.toml` in the platform's config directory (honours XDG_CONFIG_HOME).

Every key is declared here with what it allows, so that `pkgc config set`, `pkgc config edit` and loading all give
the same one-line error naming the file, the key and what is allowed. Unknown keys are kept but warned about.

    farm = "embedded"                 # or an http(s) URL
    token = ""
    prefix = "~/.local/share/pkgc/prefix"
    install_mode = "wait"             # or "background"
    parallel_downloads = 4
    network_timeout = 30              # seconds without a byte from the farm before a request fails
    catalog_max_age = 3600            # seconds; search, info and outdated sync an older catalog copy first
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
import sys
from collections.abc import Callable, Mapping
from dataclasses import field
from pathlib import Path
from typing import Any

from pkgc.core.errors import UsageError
from pkgc.core.names import validate_name
from pkgc.core.options import GLOBAL_OPTION_NAMES, global_option_specs
from pkgc.core.platform import detect_platform
from pkgc.core.record import record
from pkgc.core.relocation import check_prefix_fits
from pkgc.core.versions import Version

DEFAULT_CATALOG_MAX_AGE = 3600
DEFAULT_FARM_IDLE_TIMEOUT = 900.0
MAX_FARM_IDLE_TIMEOUT = 604800
MAX_CATALOG_MAX_AGE = 30 * 24 * 3600


def _user_dir(variable: str, default: str, kind: str) -> Path:
    """pkgc's directory of one kind: on Linux the XDG base directory (what platformdirs answers there, without
    importing it on every command); elsewhere platformdirs' answer for the platform."""
    if sys.platform.startswith("linux"):
        base = os.environ.get(variable, "")  # the XDG spec ignores a relative one, as platformdirs does
        return Path(base if os.path.isabs(base) else os.path.expanduser(default)) / "pkgc"
    import platformdirs

    found: Path = getattr(platformdirs, f"user_{kind}_path")("pkgc")
    return found


def config_path() -> Path:
    return _user_dir("XDG_CONFIG_HOME", "~/.config", "config") / "config.toml"


def data_dir() -> Path:
    return _user_dir("XDG_DATA_HOME", "~/.local/share", "data")


def cache_dir() -> Path:
    return _user_dir("XDG_CACHE_HOME", "~/.cache", "cache")


@record
class Settings:
    farm: str = "embedded"
    token: str = ""
    prefix: Path = field(default_factory=lambda: data_dir() / "prefix")
    install_mode: str = "wait"
    parallel_downloads: int = 4
    network_timeout: float = 30.0
    catalog_max_age: int = DEFAULT_CATALOG_MAX_AGE
    farm_idle_timeout: float = DEFAULT_FARM_IDLE_TIMEOUT
    options: dict[str, str] = field(default_factory=dict)
    package_options: dict[str, dict[str, str]] = field(default_factory=dict)
    pins: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    origins: Mapping[str, Effective] = field(default_factory=dict)  # scalar keys: where each value comes from

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


def _max_age(value: Any) -> Any:
    number = int(value) if isinstance(value, str) and value.isdigit() else value
    if isinstance(number, int) and not isinstance(number, bool) and 0 <= number <= MAX_CATALOG_MAX_AGE:
        return number
    raise ValueError(f"a whole number of seconds from 0 (sync every time) to {MAX_CATALOG_MAX_AGE} (30 days)")


def _idle_seconds(value: Any) -> Any:
    number = int(value) if isinstance(value, str) and value.isdigit() else value
    if isinstance(number, int | float) and not isinstance(number, bool) and 0 <= number <= MAX_FARM_IDLE_TIMEOUT:
        return number
    raise ValueError(f"a number of seconds from 0 (never stop) to {MAX_FARM_IDLE_TIMEOUT} (a week)")


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
    "catalog_max_age": _max_age,
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
    import tomllib  # here: most commands of a user without a config file never need it

    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from None


# -- where each value comes from ------------------------------------------------------------------------------------

ORIGINS = ("default", "file", "environment", "command line")  # later ones win


def env_var(key: str) -> str:
    """The environment variable that overrides a scalar key: PKGC_<KEY> (PKGC_FARM, PKGC_PREFIX, ...)."""
    return "PKGC_" + key.upper()


def _defaults() -> dict[str, tuple[Any, str]]:
    """Each scalar key's default, and what it derives from (the environment variable that moves the data directory)."""
    data_from = "XDG_DATA_HOME" if os.environ.get("XDG_DATA_HOME") else ""
    return {
        "farm": ("embedded", ""),
        "token": ("", ""),
        "prefix": (str(data_dir() / "prefix"), data_from),
        "install_mode": ("wait", ""),
        "parallel_downloads": (4, ""),
        "network_timeout": (30.0, ""),
        "catalog_max_age": (DEFAULT_CATALOG_MAX_AGE, ""),
        "farm_idle_timeout": (DEFAULT_FARM_IDLE_TIMEOUT, ""),
    }


@record
class Effective:
    """A setting's value in effect and where it comes from: `origin` is one of ORIGINS, `where` the file, variable
    or flag (or, for a default, the variable it derives from)."""

    key: str
    value: Any
    origin: str
    where: str = ""

    @property
    def label(self) -> str:
        """`git config --show-origin` style: default, file:<path>, env:<VAR>, command line:<flag>."""
        short = {"default": "default", "file": "file", "environment": "env", "command line": "command line"}
        if self.origin == "default":
            return "default"
        return f"{short[self.origin]}:{self.where}"


def resolve(
    file_values: dict[str, Any],
    path: Path,
    command_line: dict[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Effective]:
    """Every scalar key (default < file < environment < command line) and every valid key of the file."""
    env = os.environ if environ is None else environ
    resolved: dict[str, Effective] = {}
    for key, (default, derived_from) in _defaults().items():
        chosen = Effective(key, default, "default", derived_from)
        if key in file_values:
            chosen = Effective(key, file_values[key], "file", str(path))
        raw = env.get(env_var(key))
        if raw:  # an empty variable counts as unset, as it always did for PKGC_FARM and PKGC_PREFIX
            try:
                chosen = Effective(key, SCALAR_KEYS[key](raw), "environment", env_var(key))
            except ValueError as exc:
                raise UsageError(
                    f"environment variable {env_var(key)} has a bad value {raw!r}", hint=f"allowed: {exc}"
                ) from None
        flag_value = (command_line or {}).get(key)
        if flag_value is not None:
            chosen = Effective(key, flag_value, "command line", f"--{key.replace('_', '-')}")
        resolved[key] = chosen
    for key, value in file_values.items():
        resolved.setdefault(key, Effective(key, value, "file", str(path)))
    return resolved


def settings_from(resolved: dict[str, Effective], warnings: list[str]) -> Settings:
    values = {key: item.value for key, item in resolved.items()}
    package_options: dict[str, dict[str, str]] = {}
    for key, value in values.items():
        if key.startswith("packages."):
            _, name, _, option = key.split(".")
            package_options.setdefault(name, {})[option] = value
    return Settings(
        farm=values["farm"],
        token=values["token"],
        prefix=Path(values["prefix"]).expanduser(),
        install_mode=values["install_mode"],
        parallel_downloads=values["parallel_downloads"],
        network_timeout=float(values["network_timeout"]),
        catalog_max_age=int(values["catalog_max_age"]),
        farm_idle_timeout=float(values["farm_idle_timeout"]),
        options={k.split(".", 1)[1]: v for k, v in values.items() if k.startswith("options.")},
        package_options=package_options,
        pins={k.split(".", 1)[1]: v for k, v in values.items() if k.startswith("pins.")},
        warnings=tuple(warnings),
        origins={key: item for key, item in resolved.items() if key in SCALAR_KEYS},
    )


def effective_settings(command_line: dict[str, Any] | None = None) -> tuple[dict[str, Effective], list[str]]:
    """What `config show` prints: every key in effect with its origin, and the warnings about the file."""
    path = config_path()
    values, warnings = validate_document(read_document(path), path)
    return resolve(values, path, command_line), warnings


def load_settings() -> Settings:
    """Read config.toml if there is one; PKGC_<KEY> variables override it (PKGC_FARM, PKGC_PREFIX, ...)."""
    path = config_path()
    values, warnings = validate_document(read_document(path), path)
    return settings_from(resolve(values, path), warnings)
