"""A farm that serves a hostile artifact: the install stops, nothing lands in the prefix or the database.

A real farm never produces such an artifact, so this is the one place where the farm is an httpx MockTransport.
"""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

import httpx
import pytest

from pkgc.artifact import FileEntry, Manifest
from pkgc.client.farm_client import FarmClient
from pkgc.client.install import InstallPackages
from pkgc.core.errors import IntegrityError
from pkgc.core.platform import detect_platform
from pkgc.localdb.store import InstalledStore
from tests.conftest import artifact_bytes

KEY = "ab" * 32


def hostile_artifact(member: tarfile.TarInfo, data: bytes = b"") -> bytes:
    entry_type = {tarfile.SYMTYPE: "symlink", tarfile.LNKTYPE: "file", tarfile.DIRTYPE: "dir"}.get(member.type, "file")
    manifest = Manifest(
        name="hello",
        version="2.10",
        key=KEY,
        options={},
        platform=detect_platform().as_dict(),
        dependencies=[],
        runtime_dependencies=[],
        smoke={},
        files=[
            FileEntry("bin/ok", "file", 0o755, size=2, sha256=hashlib.sha256(b"ok").hexdigest()),
            FileEntry(
                member.name,
                entry_type,
                0o644,
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
                target=member.linkname,
            ),
        ],
    )
    ok = tarfile.TarInfo("bin/ok")
    ok.mode = 0o755
    return artifact_bytes(manifest.to_json(), [(ok, b"ok"), (member, data if member.isreg() else None)])


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, mode
    return info


# Each case with the reason it must be refused for: a refusal for another reason (say, a checksum mismatch of a
# badly crafted case) would hide that the check the case is about no longer works.
CASES = [
    pytest.param(member("../escaped"), r"member '\.\./escaped' escapes the prefix", id="dotdot"),
    pytest.param(member("lib/../../escaped"), r"member 'lib/\.\./\.\./escaped' escapes the prefix", id="dotdot-inside"),
    pytest.param(
        member("bin/abs", tarfile.SYMTYPE, "/etc/passwd"),
        r"symlink 'bin/abs' -> '/etc/passwd' points outside the prefix",
        id="absolute-symlink",
    ),
    pytest.param(member("bin/hard", tarfile.LNKTYPE, "bin/ok"), r"member 'bin/hard' is a hardlink", id="hardlink"),
    pytest.param(member("bin/suid", mode=0o4755), r"member 'bin/suid' has a setuid, setgid or sticky bit", id="setuid"),
]


@pytest.mark.parametrize(("evil", "reason"), CASES)
def test_hostile_artifact_installs_nothing(tmp_path: Path, evil: tarfile.TarInfo, reason: str) -> None:
    artifact = hostile_artifact(evil, b"x")
    sha = hashlib.sha256(artifact).hexdigest()
    build = {
        "key": KEY,
        "name": "hello",
        "version": "2.10",
        "options": {},
        "status": "ready",
        "url": "/v1/artifacts/x.tar.zst",
        "sha256": sha,
        "size": len(artifact),
    }

    def farm(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/resolve":
            return httpx.Response(200, json={"requested": [KEY], "builds": [build]})
        if request.url.path == "/v1/artifacts/x.tar.zst":
            return httpx.Response(200, content=artifact)
        return httpx.Response(404, json={"error": "not_found", "reason": request.url.path})

    prefix = tmp_path / "prefix"
    prefix.mkdir()
    client = FarmClient(
        "http://farm.test", client=httpx.Client(base_url="http://farm.test", transport=httpx.MockTransport(farm))
    )
    store = InstalledStore(prefix)
    with pytest.raises(IntegrityError, match=reason):
        InstallPackages(farm=client, store=store, cache_dir=tmp_path / "cache")(["hello"], {})
    leftovers = [p for p in prefix.rglob("*") if ".pkgc" not in p.relative_to(prefix).parts]
    assert leftovers == []
    assert not (tmp_path / "escaped").exists()
    tx_dir = prefix / ".pkgc" / "tx"
    assert not tx_dir.exists() or not any(tx_dir.iterdir()), "the staging area was cleaned up"
    assert store.packages() == []
