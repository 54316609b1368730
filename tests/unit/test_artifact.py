"""The artifact format: pack_tree, unpack_artifact and its allowlist of members, relocate_tree."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import zstandard

from pkgc.artifact import (
    MANIFEST_NAME,
    FileEntry,
    Manifest,
    PackError,
    pack_tree,
    relocate_tree,
    unpack_artifact,
)
from pkgc.core.errors import IntegrityError
from pkgc.core.relocation import PLACEHOLDER, PLACEHOLDER_BYTES

P = PLACEHOLDER_BYTES


def _manifest(files: list[FileEntry] | None = None) -> Manifest:
    return Manifest(
        name="demo",
        version="1.0",
        key="ab" * 32,
        options={"opt": "O2"},
        platform={"os": "linux", "arch": "x86_64", "libc": "glibc2.36"},
        dependencies=[["libdemo", "cd" * 32]],
        runtime_dependencies=["libdemo"],
        smoke={"command": ["bin/demo"], "expect": "hi"},
        files=files or [],
    )


def _snapshot(root: Path, skip: set[Path]) -> set[str]:
    """Every path below `root` except those below `skip`, to prove nothing was written outside."""
    found: set[str] = set()
    for current, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if Path(current, d) not in skip]
        for name in dirnames + filenames:
            path = Path(current, name)
            if path not in skip:
                found.add(str(path.relative_to(root)))
    return found


# --- pack / unpack / relocate round trip ----------------------------------------------------------


def _build_tree(root: Path) -> None:
    (root / "bin").mkdir(parents=True)
    (root / "lib" / "pkgconfig").mkdir(parents=True)
    (root / "share" / "doc" / "demo" / "deep").mkdir(parents=True)
    script = root / "bin" / "demo-config"
    script.write_bytes(b"#!/bin/sh\necho " + P + b"/include\n")
    script.chmod(0o755)
    binary = root / "bin" / "demo"
    binary.write_bytes(b"\x7fELF\x02\x01\0\0" + P + b"/lib:" + P + b"/lib64\0tail\xff")
    binary.chmod(0o755)
    (root / "lib" / "libdemo.so.1.0").write_bytes(b"\x7fELF\0no placeholder\0")
    (root / "lib" / "libdemo.so.1").symlink_to("libdemo.so.1.0")
    (root / "lib" / "libdemo.so").symlink_to(PLACEHOLDER + "/lib/libdemo.so.1")
    (root / "bin" / "datadir").symlink_to(PLACEHOLDER + "/share")
    (root / "lib" / "pkgconfig" / "demo.pc").write_text(f"prefix={PLACEHOLDER}\nlibdir=${{prefix}}/lib\n")
    (root / "share" / "doc" / "demo" / "deep" / "README").write_text("plain text\n")
    (root / "share" / "empty").mkdir()


@pytest.fixture
def packed(tmp_path: Path) -> tuple[Path, Manifest]:
    root = tmp_path / "stage"
    _build_tree(root)
    out = tmp_path / "demo.tar.zst"
    manifest = pack_tree(root, _manifest(), out, level=1)
    return out, manifest


def test_pack_tree_manifest(packed: tuple[Path, Manifest]) -> None:
    _, manifest = packed
    by_path = {entry.path: entry for entry in manifest.files}
    assert by_path["bin/demo"].relocate == "binary"
    assert by_path["bin/demo-config"].relocate == "text"
    assert by_path["lib/pkgconfig/demo.pc"].relocate == "text"
    assert by_path["lib/libdemo.so.1.0"].relocate is None
    assert by_path["share/doc/demo/deep/README"].relocate is None
    assert by_path["share/empty"].type == "dir"
    assert by_path["lib/libdemo.so.1"] == FileEntry("lib/libdemo.so.1", "symlink", 0o777, target="libdemo.so.1.0")
    # Absolute symlinks into the placeholder become relative ones.
    assert by_path["lib/libdemo.so"].target == "libdemo.so.1"
    assert by_path["bin/datadir"].target == "../share"
    readme = b"plain text\n"
    assert by_path["share/doc/demo/deep/README"].sha256 == hashlib.sha256(readme).hexdigest()
    assert by_path["share/doc/demo/deep/README"].size == len(readme)
    assert by_path["bin/demo"].mode == 0o755
    assert manifest.name == "demo" and manifest.key == "ab" * 32


def test_archive_starts_with_manifest(packed: tuple[Path, Manifest]) -> None:
    out, manifest = packed
    raw = zstandard.ZstdDecompressor().stream_reader(out.open("rb")).read()
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        members = tar.getmembers()
        assert members[0].name == MANIFEST_NAME
        handle = tar.extractfile(members[0])
        assert handle is not None
        assert Manifest.from_json(handle.read()) == manifest
        assert {m.name for m in members[1:]} == {e.path for e in manifest.files}
        assert all(m.uid == 0 and m.mtime == 0 for m in members)


def test_round_trip_unpack_and_relocate(packed: tuple[Path, Manifest], tmp_path: Path) -> None:
    out, packed_manifest = packed
    dest = tmp_path / "dest"
    dest.mkdir()
    manifest = unpack_artifact(out, dest)
    assert manifest == packed_manifest

    prefix = "/opt/pkgc"
    relocate_tree(dest, manifest, prefix)

    assert (dest / "bin" / "demo-config").read_bytes() == b"#!/bin/sh\necho /opt/pkgc/include\n"
    binary = (dest / "bin" / "demo").read_bytes()
    original_length = len(b"\x7fELF\x02\x01\0\0" + P + b"/lib:" + P + b"/lib64\0tail\xff")
    assert len(binary) == original_length
    assert binary.startswith(b"\x7fELF\x02\x01\0\0/opt/pkgc/lib:/opt/pkgc/lib64\0")
    assert binary.endswith(b"\0tail\xff")
    assert (dest / "lib" / "pkgconfig" / "demo.pc").read_text() == "prefix=/opt/pkgc\nlibdir=${prefix}/lib\n"
    assert (dest / "share" / "doc" / "demo" / "deep" / "README").read_text() == "plain text\n"
    assert (dest / "share" / "empty").is_dir()

    assert os.readlink(dest / "lib" / "libdemo.so.1") == "libdemo.so.1.0"
    assert os.readlink(dest / "lib" / "libdemo.so") == "libdemo.so.1"
    assert (dest / "lib" / "libdemo.so").read_bytes() == b"\x7fELF\0no placeholder\0"
    assert os.readlink(dest / "bin" / "datadir") == "../share"
    assert (dest / "bin" / "datadir" / "doc" / "demo" / "deep" / "README").is_file()

    assert stat.S_IMODE(os.stat(dest / "bin" / "demo").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(dest / "bin" / "demo-config").st_mode) == 0o755

    for current, _, filenames in os.walk(dest):
        for name in filenames:
            path = Path(current, name)
            if not path.is_symlink():
                assert P not in path.read_bytes(), path
    assert not (dest / MANIFEST_NAME).exists()


def test_relocate_tree_detects_leftover_placeholder(packed: tuple[Path, Manifest], tmp_path: Path) -> None:
    out, _ = packed
    dest = tmp_path / "dest"
    manifest = unpack_artifact(out, dest)
    # Pretend the manifest forgot to mark a file that holds the placeholder.
    forgetful = Manifest(
        **{
            **manifest.__dict__,
            "files": [
                FileEntry(**{**e.as_dict(), "relocate": None}) if e.path == "bin/demo-config" else e
                for e in manifest.files
            ],
        }
    )
    with pytest.raises(IntegrityError, match="bin/demo-config"):
        relocate_tree(dest, forgetful, "/opt/pkgc")


def test_pack_refuses_absolute_symlink_outside_placeholder(tmp_path: Path) -> None:
    root = tmp_path / "stage"
    (root / "lib").mkdir(parents=True)
    (root / "lib" / "libc.so").symlink_to("/usr/lib/libc.so")
    with pytest.raises(PackError, match=r"lib/libc\.so"):
        pack_tree(root, _manifest(), tmp_path / "out.tar.zst")


def test_pack_refuses_symlink_to_placeholder_lookalike(tmp_path: Path) -> None:
    root = tmp_path / "stage"
    root.mkdir()
    (root / "x").symlink_to(PLACEHOLDER + "-other/lib")
    with pytest.raises(PackError):
        pack_tree(root, _manifest(), tmp_path / "out.tar.zst")


def test_pack_refuses_fifo(tmp_path: Path) -> None:
    root = tmp_path / "stage"
    root.mkdir()
    os.mkfifo(root / "pipe")
    with pytest.raises(PackError, match="pipe"):
        pack_tree(root, _manifest(), tmp_path / "out.tar.zst")


def test_pack_strips_setuid(tmp_path: Path) -> None:
    root = tmp_path / "stage"
    root.mkdir()
    (root / "tool").write_bytes(b"x")
    (root / "tool").chmod(0o4755)
    manifest = pack_tree(root, _manifest(), tmp_path / "out.tar.zst")
    assert manifest.files[0].mode == 0o755
    dest = tmp_path / "dest"
    unpack_artifact(tmp_path / "out.tar.zst", dest)
    assert stat.S_IMODE(os.stat(dest / "tool").st_mode) == 0o755


# --- hostile archives -----------------------------------------------------------------------------


@dataclass
class Member:
    name: str
    kind: bytes = tarfile.REGTYPE
    data: bytes = b""
    mode: int = 0o644
    linkname: str = ""
    # What the manifest says; by default it promises exactly this member, so only the allowlist can stop it.
    entry: FileEntry | None = None
    listed: bool = True


def _default_entry(member: Member) -> FileEntry:
    if member.kind == tarfile.DIRTYPE:
        return FileEntry(member.name, "dir", member.mode & 0o7777)
    if member.kind == tarfile.SYMTYPE:
        return FileEntry(member.name, "symlink", 0o777, target=member.linkname)
    return FileEntry(
        member.name,
        "file",
        member.mode & 0o7777,
        size=len(member.data),
        sha256=hashlib.sha256(member.data).hexdigest(),
    )


def _write_artifact(path: Path, members: list[Member], *, manifest: bytes | None = None) -> None:
    if manifest is None:
        entries = [m.entry or _default_entry(m) for m in members if m.listed]
        manifest = _manifest(entries).to_json().encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(MANIFEST_NAME)
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
        for member in members:
            info = tarfile.TarInfo(member.name)
            info.type = member.kind
            info.mode = member.mode
            info.linkname = member.linkname
            if member.kind == tarfile.CHRTYPE:
                info.devmajor, info.devminor = 1, 3
            if member.kind in (tarfile.REGTYPE, tarfile.AREGTYPE):
                info.size = len(member.data)
                tar.addfile(info, io.BytesIO(member.data))
            else:
                tar.addfile(info)
    path.write_bytes(zstandard.ZstdCompressor().compress(buffer.getvalue()))


def _assert_refused(tmp_path: Path, artifact: Path, *, match: str | None = None) -> Path:
    dest = tmp_path / "dest"
    dest.mkdir()
    before = _snapshot(tmp_path, {dest})
    with pytest.raises(IntegrityError, match=match):
        unpack_artifact(artifact, dest)
    assert _snapshot(tmp_path, {dest}) == before
    return dest


def test_well_formed_hand_made_archive_is_accepted(tmp_path: Path) -> None:
    # The control case: the crafting helper itself produces archives that unpack.
    artifact = tmp_path / "ok.tar.zst"
    _write_artifact(
        artifact,
        [
            Member("sub", tarfile.DIRTYPE, mode=0o755),
            Member("sub/file", data=b"hello"),
            Member("link", tarfile.SYMTYPE, mode=0o777, linkname="sub/file"),
        ],
    )
    dest = tmp_path / "dest"
    manifest = unpack_artifact(artifact, dest)
    assert [e.path for e in manifest.files] == ["sub", "sub/file", "link"]
    assert (dest / "link").read_bytes() == b"hello"


def test_member_escaping_with_dotdot(tmp_path: Path) -> None:
    artifact = tmp_path / "evil.tar.zst"
    _write_artifact(artifact, [Member("../evil", data=b"pwned")])
    _assert_refused(tmp_path, artifact, match="escapes")
    assert not (tmp_path / "evil").exists()


def test_member_escaping_with_dotdot_inside(tmp_path: Path) -> None:
    artifact = tmp_path / "evil.tar.zst"
    _write_artifact(artifact, [Member("sub/../../evil", data=b"pwned")])
    _assert_refused(tmp_path, artifact, match="'sub/../../evil' escapes the prefix")
    assert not (tmp_path / "evil").exists()


def test_member_with_absolute_path(tmp_path: Path) -> None:
    target = Path("/tmp") / f"pkgc-unit-evil-{uuid.uuid4().hex}"
    artifact = tmp_path / "evil.tar.zst"
    _write_artifact(artifact, [Member(str(target), data=b"pwned")])
    try:
        _assert_refused(tmp_path, artifact, match="escapes")
        assert not target.exists()
    finally:
        target.unlink(missing_ok=True)


def test_absolute_path_not_in_manifest(tmp_path: Path) -> None:
    target = Path("/tmp") / f"pkgc-unit-evil-{uuid.uuid4().hex}"
    artifact = tmp_path / "evil.tar.zst"
    _write_artifact(artifact, [Member(str(target), data=b"pwned", listed=False)])
    try:
        _assert_refused(tmp_path, artifact, match="escapes the prefix")
        assert not target.exists()
    finally:
        target.unlink(missing_ok=True)


def test_absolute_symlink(tmp_path: Path) -> None:
    artifact = tmp_path / "evil.tar.zst"
    _write_artifact(artifact, [Member("passwd", tarfile.SYMTYPE, mode=0o777, linkname="/etc/passwd")])
    dest = _assert_refused(tmp_path, artifact, match="outside")
    assert not os.path.lexists(dest / "passwd")


def test_symlink_up_and_out(tmp_path: Path) -> None:
    artifact = tmp_path / "evil.tar.zst"
    _write_artifact(artifact, [Member("up", tarfile.SYMTYPE, mode=0o777, linkname="../..")])
    dest = _assert_refused(tmp_path, artifact, match="outside")
    assert not os.path.lexists(dest / "up")


def test_nested_symlink_up_and_out(tmp_path: Path) -> None:
    artifact = tmp_path / "evil.tar.zst"
    _write_artifact(
        artifact,
        [
            Member("a", tarfile.DIRTYPE, mode=0o755),
            Member("a/up", tarfile.SYMTYPE, mode=0o777, linkname="../../outside"),
        ],
    )
    _assert_refused(tmp_path, artifact, match="outside")


def test_symlink_target_differing_from_manifest(tmp_path: Path) -> None:
    artifact = tmp_path / "evil.tar.zst"
    member = Member(
        "link",
        tarfile.SYMTYPE,
        mode=0o777,
        linkname="sub/other",
        entry=FileEntry("link", "symlink", 0o777, target="sub/file"),
    )
    _write_artifact(artifact, [member])
    _assert_refused(tmp_path, artifact, match="symlink 'link' -> 'sub/other' does not match its manifest")


def test_symlink_escaping_through_another_symlink(tmp_path: Path) -> None:
    # Guards: a lexical check alone would pass this. With "here" -> "." the target "here/../outside"
    # normalises to "outside" (inside), but the kernel resolves "here" first and then "..", so the link
    # points at a sibling of the prefix. unpack_artifact resolves every symlink after unpacking and refuses.
    artifact = tmp_path / "evil.tar.zst"
    _write_artifact(
        artifact,
        [
            Member("here", tarfile.SYMTYPE, mode=0o777, linkname="."),
            Member("escape", tarfile.SYMTYPE, mode=0o777, linkname="here/../outside"),
        ],
    )
    _assert_refused(tmp_path, artifact, match="'escape' resolves outside the prefix")


def test_hardlink_member(tmp_path: Path) -> None:
    artifact = tmp_path / "evil.tar.zst"
    hardlink = Member(
        "shadow",
        tarfile.LNKTYPE,
        linkname="/etc/shadow",
        entry=FileEntry("shadow", "file", 0o644, size=0, sha256=hashlib.sha256(b"").hexdigest()),
    )
    _write_artifact(artifact, [hardlink])
    dest = _assert_refused(tmp_path, artifact, match="hardlink")
    assert not os.path.lexists(dest / "shadow")


def test_hardlink_to_member_inside(tmp_path: Path) -> None:
    artifact = tmp_path / "evil.tar.zst"
    _write_artifact(
        artifact,
        [
            Member("file", data=b"x"),
            Member("alias", tarfile.LNKTYPE, linkname="file", entry=FileEntry("alias", "file", 0o644)),
        ],
    )
    _assert_refused(tmp_path, artifact, match="hardlink")


def test_character_device_member(tmp_path: Path) -> None:
    artifact = tmp_path / "evil.tar.zst"
    _write_artifact(
        artifact,
        [Member("null", tarfile.CHRTYPE, mode=0o666, entry=FileEntry("null", "file", 0o666))],
    )
    dest = _assert_refused(tmp_path, artifact, match="device")
    assert not os.path.lexists(dest / "null")


def test_fifo_member(tmp_path: Path) -> None:
    artifact = tmp_path / "evil.tar.zst"
    _write_artifact(artifact, [Member("pipe", tarfile.FIFOTYPE, entry=FileEntry("pipe", "file", 0o644))])
    # tarfile counts a FIFO as a device (TarInfo.isdev), so the message says "device"; either word is fine.
    dest = _assert_refused(tmp_path, artifact, match="device|fifo")
    assert not os.path.lexists(dest / "pipe")


@pytest.mark.parametrize("mode", [0o4755, 0o2755, 0o1755])
def test_setuid_setgid_sticky_file(tmp_path: Path, mode: int) -> None:
    artifact = tmp_path / "evil.tar.zst"
    _write_artifact(artifact, [Member("su", data=b"#!/bin/sh\n", mode=mode)])
    dest = _assert_refused(tmp_path, artifact, match="setuid")
    assert not os.path.lexists(dest / "su")


def test_setuid_directory(tmp_path: Path) -> None:
    artifact = tmp_path / "evil.tar.zst"
    _write_artifact(artifact, [Member("d", tarfile.DIRTYPE, mode=0o2755)])
    _assert_refused(tmp_path, artifact, match="setuid")


def test_file_with_wrong_checksum(tmp_path: Path) -> None:
    artifact = tmp_path / "evil.tar.zst"
    promised = b"good bytes"
    member = Member(
        "bin/tool",
        data=b"evil bytes",
        entry=FileEntry("bin/tool", "file", 0o755, size=len(promised), sha256=hashlib.sha256(promised).hexdigest()),
    )
    _write_artifact(artifact, [member])
    _assert_refused(tmp_path, artifact, match="checksum")


def test_file_with_wrong_size(tmp_path: Path) -> None:
    artifact = tmp_path / "evil.tar.zst"
    data = b"bytes"
    member = Member(
        "f",
        data=data,
        entry=FileEntry("f", "file", 0o644, size=len(data) + 1, sha256=hashlib.sha256(data).hexdigest()),
    )
    _write_artifact(artifact, [member])
    _assert_refused(tmp_path, artifact, match="file 'f' does not match its manifest")


def test_member_not_in_manifest(tmp_path: Path) -> None:
    artifact = tmp_path / "evil.tar.zst"
    _write_artifact(artifact, [Member("listed", data=b"a"), Member("stowaway", data=b"b", listed=False)])
    dest = _assert_refused(tmp_path, artifact, match="not in its manifest")
    assert not (dest / "stowaway").exists()


def test_member_listed_but_missing(tmp_path: Path) -> None:
    artifact = tmp_path / "evil.tar.zst"
    ghost = FileEntry("ghost", "file", 0o644, size=0, sha256=hashlib.sha256(b"").hexdigest())
    manifest = _manifest([ghost]).to_json().encode()
    _write_artifact(artifact, [], manifest=manifest)
    _assert_refused(tmp_path, artifact, match="lacks 'ghost', which its manifest lists")


def test_member_twice(tmp_path: Path) -> None:
    artifact = tmp_path / "evil.tar.zst"
    first = Member("f", data=b"a")
    _write_artifact(artifact, [first, Member("f", data=b"a", listed=False)])
    _assert_refused(tmp_path, artifact, match="twice")


def test_file_below_symlinked_directory(tmp_path: Path) -> None:
    artifact = tmp_path / "evil.tar.zst"
    _write_artifact(
        artifact,
        [
            Member("sub", tarfile.DIRTYPE, mode=0o755),
            Member("d", tarfile.SYMTYPE, mode=0o777, linkname="sub"),
            Member("d/x", data=b"through the link"),
        ],
    )
    dest = _assert_refused(tmp_path, artifact, match="below a symlink")
    assert not (dest / "sub" / "x").exists()


def test_file_below_symlink_pointing_outside_is_not_written(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    artifact = tmp_path / "evil.tar.zst"
    # "d" -> "sub/../.." would be refused itself; this one is inside but the file is still below a symlink.
    _write_artifact(
        artifact,
        [
            Member("d", tarfile.SYMTYPE, mode=0o777, linkname="."),
            Member("d/x", data=b"x"),
        ],
    )
    _assert_refused(tmp_path, artifact, match="below a symlink")
    assert list(outside.iterdir()) == []


def test_file_then_symlink_with_same_parent_name(tmp_path: Path) -> None:
    # Guards: a file "d/x" makes "d" a real directory; a later symlink member "d" then makes os.symlink
    # raise FileExistsError, which must come out as an IntegrityError (the CLI's error mapping only knows
    # PkgcError; a bare OSError would be a traceback), with nothing written outside the destination.
    artifact = tmp_path / "evil.tar.zst"
    _write_artifact(
        artifact,
        [
            Member("d/x", data=b"x"),
            Member("d", tarfile.SYMTYPE, mode=0o777, linkname="sub"),
        ],
    )
    _assert_refused(tmp_path, artifact, match="cannot be unpacked: File exists")


def test_missing_manifest(tmp_path: Path) -> None:
    artifact = tmp_path / "evil.tar.zst"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("bin/tool")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    artifact.write_bytes(zstandard.ZstdCompressor().compress(buffer.getvalue()))
    dest = _assert_refused(tmp_path, artifact, match="does not start with its manifest")
    assert list(dest.iterdir()) == []


def test_manifest_not_first(tmp_path: Path) -> None:
    artifact = tmp_path / "evil.tar.zst"
    data = b"abc"
    manifest = _manifest([FileEntry("a", "file", 0o644, size=3, sha256=hashlib.sha256(data).hexdigest())])
    text = manifest.to_json().encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("a")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo(MANIFEST_NAME)
        info.size = len(text)
        tar.addfile(info, io.BytesIO(text))
    artifact.write_bytes(zstandard.ZstdCompressor().compress(buffer.getvalue()))
    _assert_refused(tmp_path, artifact, match="does not start with its manifest")


def test_empty_tar(tmp_path: Path) -> None:
    artifact = tmp_path / "empty.tar.zst"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w"):
        pass
    artifact.write_bytes(zstandard.ZstdCompressor().compress(buffer.getvalue()))
    _assert_refused(tmp_path, artifact, match="artifact is empty")


@pytest.mark.parametrize(
    "manifest",
    [
        b"not json",
        b"{}",
        b'{"format": 1, "placeholder": "/other"}',
        b'{"format": 2, "placeholder": "' + P + b'"}',
    ],
    ids=["garbage", "empty-object", "wrong-placeholder", "wrong-format"],
)
def test_malformed_manifest(tmp_path: Path, manifest: bytes) -> None:
    artifact = tmp_path / "evil.tar.zst"
    _write_artifact(artifact, [], manifest=manifest)
    _assert_refused(tmp_path, artifact, match="artifact manifest (is malformed|has an unknown format)")


def test_manifest_with_unknown_entry_field(tmp_path: Path) -> None:
    import json

    artifact = tmp_path / "evil.tar.zst"
    data = json.loads(_manifest().to_json())
    data["files"] = [{"path": "a", "type": "file", "mode": 420, "evil": True}]
    _write_artifact(artifact, [], manifest=json.dumps(data).encode())
    _assert_refused(tmp_path, artifact, match="malformed")


def test_garbage_archive(tmp_path: Path) -> None:
    artifact = tmp_path / "garbage.tar.zst"
    artifact.write_bytes(os.urandom(4096))
    _assert_refused(tmp_path, artifact, match="not a valid .tar.zst")


def test_zstd_of_garbage(tmp_path: Path) -> None:
    artifact = tmp_path / "garbage.tar.zst"
    artifact.write_bytes(zstandard.ZstdCompressor().compress(b"this is not a tar archive" * 100))
    _assert_refused(tmp_path, artifact, match="not a valid .tar.zst")


def test_empty_file(tmp_path: Path) -> None:
    artifact = tmp_path / "empty.tar.zst"
    artifact.write_bytes(b"")
    _assert_refused(tmp_path, artifact, match="not a valid .tar.zst")


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.9])
def test_truncated_archive(tmp_path: Path, fraction: float) -> None:
    stage = tmp_path / "stage"
    stage.mkdir()
    (stage / "big").write_bytes(os.urandom(256 * 1024))
    good = tmp_path / "good.tar.zst"
    pack_tree(stage, _manifest(), good, level=1)
    data = good.read_bytes()
    artifact = tmp_path / "truncated.tar.zst"
    artifact.write_bytes(data[: int(len(data) * fraction)])
    _assert_refused(tmp_path, artifact, match="not a valid .tar.zst")


@pytest.mark.parametrize("name", [".pkgc-state", ".pkgc-manifest.json", ".pkgc", "./.pkgc-state"])
def test_reserved_member_names(tmp_path: Path, name: str) -> None:
    artifact = tmp_path / "evil.tar.zst"
    _write_artifact(artifact, [Member(name, data=b"{}")])
    dest = _assert_refused(tmp_path, artifact, match="reserved")
    assert list(dest.iterdir()) == []


def test_reserved_member_name_not_in_manifest(tmp_path: Path) -> None:
    artifact = tmp_path / "evil.tar.zst"
    _write_artifact(artifact, [Member(".pkgc-state", data=b"{}", listed=False)])
    dest = _assert_refused(tmp_path, artifact, match="reserved for pkgc")
    assert not (dest / ".pkgc-state").exists()


def test_member_type_differs_from_manifest(tmp_path: Path) -> None:
    artifact = tmp_path / "evil.tar.zst"
    member = Member("bin", tarfile.DIRTYPE, mode=0o755, entry=FileEntry("bin", "file", 0o755))
    _write_artifact(artifact, [member])
    _assert_refused(tmp_path, artifact, match="'bin' is a mismatched entry")


def _unpack_with_umask(artifact: Path, dest: Path, umask: int) -> None:
    previous = os.umask(umask)
    try:
        unpack_artifact(artifact, dest)
    finally:
        os.umask(previous)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_unpacked_directories_and_files_have_the_listed_modes_whatever_the_umask(
    packed: tuple[Path, Manifest], tmp_path: Path, umask: int
) -> None:
    """unpack_artifact sets a directory's mode only when mkdir's (the umask applied) differs: the result is the
    manifest's either way. The relocated digests relocate_tree returns are the files' as they are on disk."""
    out, manifest = packed
    dest = tmp_path / "dest"
    _unpack_with_umask(out, dest, umask)
    for entry in manifest.files:
        if entry.type in ("dir", "file"):
            expected = entry.mode | (0o700 if entry.type == "dir" else 0)
            assert stat.S_IMODE((dest / entry.path).lstat().st_mode) == expected, (entry.path, oct(umask))
    digests = relocate_tree(dest, manifest, "/opt/pkgc")
    for entry in manifest.files:
        if entry.type == "file":
            assert digests[entry.path] == hashlib.sha256((dest / entry.path).read_bytes()).hexdigest()


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o277])
def test_files_of_any_mode_are_written_whole_and_get_exactly_their_listed_mode(tmp_path: Path, umask: int) -> None:
    """A file is created with its listed mode and written through the same descriptor: a read-only or owner-only
    file still gets all its bytes, a setgid-free 0o750 keeps its group bits, and the umask never narrows any of them
    (even one that takes the owner's write bit)."""
    root = tmp_path / "stage"
    (root / "share").mkdir(parents=True)
    modes = {"share/readonly": 0o444, "share/private": 0o600, "share/group": 0o750, "share/none": 0o000}
    for index, (path, mode) in enumerate(sorted(modes.items())):
        (root / path).write_bytes(b"x" * (1000 + index))
        (root / path).chmod(mode)
    out = tmp_path / "modes.tar.zst"
    pack_tree(root, _manifest(), out, level=1)
    dest = tmp_path / "dest"
    _unpack_with_umask(out, dest, umask)
    for index, (path, mode) in enumerate(sorted(modes.items())):
        assert stat.S_IMODE((dest / path).lstat().st_mode) == mode, (path, oct(umask))
        (dest / path).chmod(0o600)
        assert (dest / path).read_bytes() == b"x" * (1000 + index)
