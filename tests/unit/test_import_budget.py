"""Each command users wait on imports no more than it needs: a fixed deny-list, and a module-count budget.

Every command runs as `pkgc` runs (a fresh interpreter, `pkgc.cli.main()`), under an isolated HOME and XDG
directories, with a hook that writes `sys.modules` at exit. Counts are deterministic (modules, not times): the
budget is the number of modules the command imports beyond a bare interpreter's (which differs from machine to
machine with site hooks), recorded when the command was made fast, plus 15 % headroom. A change that pulls a heavy
library into one of these paths (SQLAlchemy for the installed database, pydantic through typer's adapters, rich for
output that is not a terminal, httpx's command-line client) fails here, as PDM's import-time test does.

When a budget fails because a command really needs more, raise it here and say why in the commit.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pkgc.localdb.catalog import CatalogCache, CatalogEntry
from pkgc.localdb.store import InstalledFile, InstalledPackage, InstalledStore

HEADROOM = 1.15

# The modules each command imports beyond a bare interpreter, measured when the client was made fast (typer 0.29,
# httpx 0.28, Python 3.11) and again when it stopped importing pydantic; the figures before are in brackets.
BUDGETS = {
    "version": 67,  # (86)
    "list": 76,  # (185: pydantic through typer's adapters)
    "search": 95,  # (201)
    "status": 153,  # (336: pydantic, rich, httpx's CLI)
    "info": 198,  # (380; 274 while the client validated answers with pydantic)
    "install": 209,  # (390 up to the farm request, SQLAlchemy too once it recorded the install; 285 with pydantic)
}

# Never on these paths (heavy, and not needed there).
# pydantic and the protocol's pydantic models are the farm's: the client validates answers with pkgc.core.wire.
NEVER = (
    "sqlalchemy",
    "rich",
    "pygments",
    "click",
    "httpx._main",
    "typer._adapters",
    "typer.rich_utils",
    "pydantic",
    "pydantic_core",
    "pkgc.core.protocol",
)
# Not needed where no farm is asked: validation models, HTTP.
LOCAL_ONLY = ("httpx", "httpcore", "pkgc.core.wire", "pkgc.core.wire_schema")

HOOK = """
import atexit, json, sys
def _dump():
    with open({out!r}, "w") as handle:
        json.dump(sorted(name for name, module in sys.modules.items() if module is not None), handle)
atexit.register(_dump)
if {args!r} is not None:
    sys.argv = ["pkgc", *{args!r}]
    from pkgc.cli import main
    main()
"""


@dataclass
class Sandbox:
    root: Path
    env: dict[str, str]
    prefix: Path

    def modules(self, args: list[str] | None, *, expect: int = 0) -> set[str]:
        """The modules a `pkgc ARGS` process has imported when it exits (a bare interpreter's for None)."""
        out = self.root / "modules.json"
        script = HOOK.format(out=str(out), args=args)
        result = subprocess.run(
            [sys.executable, "-c", script],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        assert result.returncode == expect, f"pkgc {args}: exit {result.returncode}\n{result.stdout}{result.stderr}"
        return set(json.loads(out.read_text()))


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    root = tmp_path_factory.mktemp("budget")
    farm = f"http://127.0.0.1:{_closed_port()}"  # nothing listens: the farm "cannot be reached"
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("PKGC_") and k not in ("FORCE_COLOR", "TTY_COMPATIBLE")
    }
    for name in ("home", "data", "cache", "config"):
        (root / name).mkdir()
    env.update(
        HOME=str(root / "home"),
        XDG_DATA_HOME=str(root / "data"),
        XDG_CACHE_HOME=str(root / "cache"),
        XDG_CONFIG_HOME=str(root / "config"),
        PKGC_FARM_HOME=str(root / "farm"),
        PKGC_FARM=farm,
        NO_COLOR="1",
    )
    prefix = root / "prefix"
    package = InstalledPackage("zlib", "1.3", "a" * 64, {"opt": "O2"}, True, [], 0.0)
    InstalledStore(prefix).commit_transaction("tx", "install", [], [(package, [InstalledFile("lib/libz.a", "file")])])
    entries = [
        CatalogEntry("zlib", "General-purpose lossless data-compression library", "1.3"),
        CatalogEntry("hello", "GNU Hello: prints a friendly greeting", "2.10"),
    ]
    CatalogCache(root / "data" / "pkgc" / "catalog.sqlite").replace(entries, None, farm)  # fresh: no sync is due
    yield Sandbox(root, env, prefix)


@pytest.fixture(scope="module")
def baseline(sandbox: Sandbox) -> set[str]:
    return sandbox.modules(None)


def _check(name: str, imported: set[str], baseline: set[str], denied: tuple[str, ...]) -> None:
    found = sorted(m for m in imported if any(m == d or m.startswith(d + ".") for d in denied))
    assert not found, f"{name} imports {found[:5]}"
    count = len(imported - baseline)
    assert count <= BUDGETS[name] * HEADROOM, f"{name} imports {count} modules, budget {BUDGETS[name]} (+15 %)"


def test_version(sandbox: Sandbox, baseline: set[str]) -> None:
    _check("version", sandbox.modules(["--version"]), baseline, NEVER + LOCAL_ONLY)


def test_list(sandbox: Sandbox, baseline: set[str]) -> None:
    _check("list", sandbox.modules(["list", "--prefix", str(sandbox.prefix)]), baseline, NEVER + LOCAL_ONLY)


def test_search_on_a_fresh_catalog(sandbox: Sandbox, baseline: set[str]) -> None:
    _check("search", sandbox.modules(["search", "compression"]), baseline, NEVER + LOCAL_ONLY)


def test_farm_status_with_no_farm(sandbox: Sandbox, baseline: set[str]) -> None:
    imported = sandbox.modules(["farm", "status"], expect=4)
    _check("status", imported, baseline, (*NEVER, "pkgc.core.wire"))


def test_info_from_the_offline_catalog(sandbox: Sandbox, baseline: set[str]) -> None:
    _check("info", sandbox.modules(["info", "zlib", "--prefix", str(sandbox.prefix)]), baseline, NEVER)


def test_install_up_to_the_farm_request(sandbox: Sandbox, baseline: set[str]) -> None:
    """Everything an install imports is imported before it asks the farm (here unreachable: exit 4)."""
    imported = sandbox.modules(["install", "hello", "--prefix", str(sandbox.root / "fresh")], expect=4)
    assert "pkgc.client.install" in imported and "pkgc.localdb.store" in imported
    _check("install", imported, baseline, NEVER)


def test_the_embedded_clients_api_prefix_is_the_protocols() -> None:
    """embedded.py keeps its own copy, so that `farm status` does not build the protocol's models."""
    from pkgc.client.embedded import API_PREFIX
    from pkgc.core.protocol import API_PREFIX as PROTOCOL_PREFIX

    assert API_PREFIX == PROTOCOL_PREFIX
