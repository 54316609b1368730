"""Requests that `install --background` left compiling on the farm, kept per prefix in `.pkgc/pending.json`."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pkgc.client.farm_client import FarmClient
from pkgc.client.install import InstallPackages, PendingRequest
from pkgc.core.names import parse_spec
from pkgc.core.protocol_rules import BuildStatus
from pkgc.core.wire import BuildInfo, PackageRequestModel
from pkgc.localdb.store import STATE_DIR, InstalledStore


def _path(prefix: Path) -> Path:
    return prefix / STATE_DIR / "pending.json"


def load_pending(prefix: Path) -> list[PendingRequest]:
    try:
        data: list[dict[str, Any]] = json.loads(_path(prefix).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [PendingRequest(d["spec"], d["key"], d["options"], d.get("dependency_options")) for d in data]


def save_pending(prefix: Path, requests: list[PendingRequest]) -> None:
    """Atomic replace; the caller holds the prefix lock."""
    path = _path(prefix)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps([r.__dict__ for r in requests]), encoding="utf-8")
    os.replace(temporary, path)


def add_pending(prefix: Path, new: list[PendingRequest]) -> None:
    merged = {r.key: r for r in load_pending(prefix)}
    merged.update({r.key: r for r in new})
    save_pending(prefix, list(merged.values()))


@dataclass(frozen=True)
class PendingStatus:
    request: PendingRequest
    build: BuildInfo


def pending_status(farm: FarmClient, prefix: Path) -> list[PendingStatus]:
    return [PendingStatus(r, farm.build(r.key)) for r in load_pending(prefix)]


@dataclass(frozen=True)
class FinishedPending:
    installed: list[str]
    failed: list[str]
    still_pending: list[str]


def install_finished(farm: FarmClient, store: InstalledStore, install: InstallPackages) -> FinishedPending:
    """Install every pending request whose build is ready; drop the failed ones (their log stays on the farm)."""
    installed, failed, waiting = [], [], []
    for status in pending_status(farm, store.prefix):
        if status.build.status == BuildStatus.READY:
            # The very request that was left compiling: its options were decided when it was made.
            name, version = parse_spec(status.request.spec)
            request = PackageRequestModel(
                name=name,
                version=version,
                options=status.request.options,
                dependency_options=status.request.dependency_options,
            )
            install.install_requests([status.request.spec], [request])
            installed.append(status.request)
        elif status.build.status == BuildStatus.FAILED:
            failed.append(status.request)
        else:
            waiting.append(status.request)
    save_pending(store.prefix, waiting)
    return FinishedPending([r.spec for r in installed], [r.spec for r in failed], [r.spec for r in waiting])
