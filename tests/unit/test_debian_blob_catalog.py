"""The Debian catalog kept in a blob store (an AWS farm's): publishing the index as an immutable blob and its
pointer, and `BlobDebianCatalog` reading it with a fake clock over a directory blob store: the pointer re-read after
its TTL, no download while it is unchanged, a corrupt blob refused with the previous copy kept, none = empty."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import pytest

from pkgc.core.debian import parse_index
from pkgc.core.errors import FarmUnavailable, NotFound
from pkgc.core.platform import detect_platform
from pkgc.farm.adapters.local import DirectoryBlobStore
from pkgc.farm.adapters.memory import memory_ports
from pkgc.farm.bootstrap import FarmConfig, generated_recipes
from pkgc.farm.debian_blobs import (
    POINTER_NAME,
    BlobDebianCatalog,
    CatalogPointer,
    debian_blob_name,
    publish_index,
    read_pointer,
)
from pkgc.farm.debian_catalog import write_index
from pkgc.farm.service import FarmService

FIXTURE = Path(__file__).parent.parent / "fixtures" / "debian" / "Sources"
STANZAS = FIXTURE.read_text(encoding="utf-8").strip().split("\n\n")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingBlobs(DirectoryBlobStore):
    """A directory blob store that counts reads of the pointer and downloads of blobs."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.pointer_reads = 0
        self.downloaded: list[str] = []

    def get_bytes(self, name: str) -> bytes | None:
        if name == POINTER_NAME:
            self.pointer_reads += 1
        return super().get_bytes(name)

    def download_to(self, name: str, path: Path) -> bool:
        self.downloaded.append(name)
        return super().download_to(name, path)


class DownBlobs(DirectoryBlobStore):
    """A blob store whose service is out (S3 unreachable)."""

    def get_bytes(self, name: str) -> bytes | None:
        raise FarmUnavailable(f"S3 GetObject of bucket/{name}: connection refused")


def publish(blobs: DirectoryBlobStore, tmp_path: Path, text: str, now: float = 1234.5) -> CatalogPointer:
    parsed = parse_index(text)
    index = tmp_path / f"index-{len(parsed.packages)}.sqlite"
    write_index(parsed, index)
    return publish_index(blobs, index, len(parsed.packages), now=now)


@pytest.fixture
def blobs(tmp_path: Path) -> CountingBlobs:
    return CountingBlobs(tmp_path / "blobs")


def names(catalog: BlobDebianCatalog) -> list[str]:
    return sorted(row[0] for row in catalog.packages())


def test_publish_writes_an_immutable_blob_then_the_pointer(blobs: CountingBlobs, tmp_path: Path) -> None:
    pointer = publish(blobs, tmp_path, FIXTURE.read_text())
    assert read_pointer(blobs) == pointer
    assert pointer.blob == debian_blob_name(pointer.sha256) and pointer.packages == 11
    stored = blobs.get_bytes(pointer.blob)
    assert stored is not None and gzip.decompress(stored)[:16] == b"SQLite format 3\0"
    assert json.loads(blobs.get_bytes(POINTER_NAME) or b"") == {
        "blob": pointer.blob, "sha256": pointer.sha256, "packages": 11, "updated_at": 1234.5,
    }  # fmt: skip
    again = publish(blobs, tmp_path, FIXTURE.read_text())
    assert again.blob == pointer.blob, "the same index gives the same bytes, hence the same blob"


def test_absent_pointer_is_an_empty_catalog(blobs: CountingBlobs, tmp_path: Path) -> None:
    catalog = BlobDebianCatalog(blobs, tmp_path / "cache", clock=Clock())
    assert catalog.packages() == [] and catalog.recipe("libcbor") is None and catalog.identity("libcbor") is None
    assert catalog.pointer() is None and blobs.downloaded == []


def test_reads_the_pointer_once_per_ttl_and_downloads_only_when_it_changed(
    blobs: CountingBlobs, tmp_path: Path
) -> None:
    clock = Clock()
    first = publish(blobs, tmp_path, "\n\n".join(STANZAS[:3]))
    cache = tmp_path / "cache"
    catalog = BlobDebianCatalog(blobs, cache, ttl=60, clock=clock)
    assert names(catalog) == ["ddate", "exuberant-ctags", "libcbor"]
    recipe = catalog.recipe("libcbor")
    assert recipe is not None and recipe.origin == "generated" and recipe.name == "libcbor"
    assert (blobs.pointer_reads, blobs.downloaded) == (1, [first.blob])
    assert sorted(p.name for p in cache.iterdir()) == [f"{first.sha256}.sqlite"], "no temporary file left"

    second = publish(blobs, tmp_path, FIXTURE.read_text())
    clock.now += 59
    assert names(catalog) == ["ddate", "exuberant-ctags", "libcbor"], "within the TTL: the copy in use"
    assert blobs.pointer_reads == 1
    clock.now += 1
    assert "serd" in names(catalog) and len(names(catalog)) == 11, "after the TTL: the new index"
    assert blobs.pointer_reads == 2 and blobs.downloaded == [first.blob, second.blob]
    kept = sorted(p.name for p in cache.iterdir())
    assert kept == sorted([f"{first.sha256}.sqlite", f"{second.sha256}.sqlite"]), "the previous copy is kept a while"

    clock.now += 600
    assert catalog.identity("serd") is not None and catalog.pointer() == second
    assert blobs.pointer_reads == 3 and len(blobs.downloaded) == 2, "unchanged pointer: no download"

    blobs.put_named(POINTER_NAME, CatalogPointer(second.blob, second.sha256, 11, 9999.0).encode())
    clock.now += 60
    assert catalog.pointer() is not None and catalog.pointer().updated_at == 9999.0  # type: ignore[union-attr]
    assert len(blobs.downloaded) == 2, "a new time on the same blob is not a new index"

    third = publish(blobs, tmp_path, "\n\n".join(STANZAS[5:7]))
    clock.now += 60
    assert names(catalog) == ["libtar", "loadwatch"]
    kept = sorted(p.name for p in cache.iterdir())
    assert kept == sorted([f"{second.sha256}.sqlite", f"{third.sha256}.sqlite"]), "the one before is deleted"


def test_a_corrupt_blob_is_refused_in_one_line_and_the_previous_copy_stays(
    blobs: CountingBlobs, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    good = publish(blobs, tmp_path, "\n\n".join(STANZAS[:3]))
    catalog = BlobDebianCatalog(blobs, tmp_path / "cache", ttl=60, clock=clock)
    assert catalog.recipe("libcbor") is not None

    bad = publish(blobs, tmp_path, FIXTURE.read_text())
    packed = blobs.get_bytes(bad.blob)
    assert packed is not None
    blobs.path_of(bad.blob).write_bytes(packed[: len(packed) // 2])  # type: ignore[union-attr]  (truncated upload)
    clock.now += 60
    with caplog.at_level(logging.WARNING, logger="pkgc.farm.debian_blobs"):
        assert catalog.recipe("serd") is None and catalog.recipe("libcbor") is not None
    refusals = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(refusals) == 1 and "\n" not in refusals[0], refusals
    assert f"refused {bad.blob}" in refusals[0] and "sha256" in refusals[0]
    assert catalog.pointer() == good
    clock.now += 60
    assert catalog.recipe("serd") is None and blobs.downloaded.count(bad.blob) == 1, (
        "a refused blob is not fetched again"
    )
    repaired = publish(blobs, tmp_path, FIXTURE.read_text(), now=2000.0)  # the operator runs the update again
    assert repaired.blob == bad.blob
    clock.now += 60
    assert catalog.recipe("serd") is not None, "published again: the repaired blob is taken"
    assert catalog.pointer() == repaired
    good = repaired

    blobs.put_named(POINTER_NAME, b'{"blob": "../../etc/passwd", "sha256": "x"}')
    clock.now += 60
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pkgc.farm.debian_blobs"):
        assert catalog.recipe("libcbor") is not None, "a malformed pointer: the copy in use stays"
    assert any("malformed" in r.getMessage() for r in caplog.records)

    blobs.put_named(POINTER_NAME, CatalogPointer(debian_blob_name("a" * 64), "a" * 64, 1, 1.0).encode())
    clock.now += 60
    assert catalog.recipe("libcbor") is not None, "a pointer to a missing blob: the copy in use stays"

    (tmp_path / "blobs" / POINTER_NAME).unlink()
    clock.now += 60
    assert catalog.packages() == [], "the pointer removed: an empty catalog"


def test_pointer_decode_refuses_anything_but_an_index_blob() -> None:
    digest = "b" * 64
    valid = {"blob": debian_blob_name(digest), "sha256": digest, "packages": 3, "updated_at": 5}
    assert CatalogPointer.decode(json.dumps(valid).encode()).packages == 3
    for change in (
        {"blob": "catalog/snapshot.json"},
        {"blob": f"artifacts/sha256/bb/{digest}.tar.zst"},
        {"sha256": "c" * 64},
        {"packages": -1},
        {"packages": True},
        {"updated_at": "now"},
    ):
        with pytest.raises(ValueError):
            CatalogPointer.decode(json.dumps({**valid, **change}).encode())
    for data in (b"[]", b"not json", b"\xff", b" " * 5000):
        with pytest.raises(ValueError):
            CatalogPointer.decode(data)


def test_an_outage_without_a_copy_is_an_error_and_with_one_is_logged(tmp_path: Path) -> None:
    down = DownBlobs(tmp_path / "blobs")
    with pytest.raises(FarmUnavailable):
        BlobDebianCatalog(down, tmp_path / "cache").packages()
    blobs = CountingBlobs(tmp_path / "blobs")
    publish(blobs, tmp_path, FIXTURE.read_text())
    clock = Clock()
    catalog = BlobDebianCatalog(blobs, tmp_path / "cache", ttl=60, clock=clock)
    assert len(catalog.packages()) == 11
    catalog._blobs = down  # the service goes out after the first read
    clock.now += 60
    assert len(catalog.packages()) == 11, "the copy in use answers while S3 is out"


def test_a_private_cache_directory_is_made_and_removed(blobs: CountingBlobs, tmp_path: Path) -> None:
    publish(blobs, tmp_path, FIXTURE.read_text())
    catalog = BlobDebianCatalog(blobs, None, clock=Clock())
    assert len(catalog.packages()) == 11
    directory = catalog._cache_dir
    assert directory is not None and directory.is_dir() and directory.stat().st_mode & 0o077 == 0
    del catalog
    import gc

    gc.collect()
    assert not directory.exists()


def test_the_service_generates_recipes_from_the_blob_catalog(blobs: CountingBlobs, tmp_path: Path) -> None:
    """An AWS-shaped farm service: a curated catalog in memory, the Debian catalog from the blob store."""
    publish(blobs, tmp_path, FIXTURE.read_text())
    ports = memory_ports()
    service = FarmService.from_ports(
        ports,
        detect_platform(),
        generated=BlobDebianCatalog(blobs, tmp_path / "cache", clock=Clock()),
    )
    service.write_catalog_snapshot()
    assert [p.name for p in service.search("libcbor")] == ["libcbor"]
    details = service.details("libcbor")
    assert details.origin == "generated" and details.homepage == "https://github.com/PJK/libcbor"
    with pytest.raises(NotFound):
        service.details("no-such-package")


def test_the_composition_root_chooses_the_blob_catalog_for_aws(tmp_path: Path) -> None:
    env = {
        "PKGC_FARM_BACKEND": "aws",
        "PKGC_AWS_BUILDS_TABLE": "b",
        "PKGC_AWS_CATALOG_TABLE": "c",
        "PKGC_AWS_BUCKET": "bucket",
        "PKGC_AWS_QUEUES": json.dumps({str(detect_platform()): "http://127.0.0.1:1/q"}),
        "AWS_REGION": "us-east-1",
        "PKGC_FARM_DEBIAN_CACHE": str(tmp_path / "cache"),
        "PKGC_FARM_DEBIAN_POINTER_SECONDS": "5",
    }
    config = FarmConfig.from_env(env)
    chosen = generated_recipes(config, DirectoryBlobStore(tmp_path / "blobs"))
    assert isinstance(chosen, BlobDebianCatalog) and chosen._ttl == 5 and chosen._cache_dir == tmp_path / "cache"
    lambda_config = FarmConfig.from_env(
        {**env, "PKGC_FARM_DEBIAN_CACHE": "", "PKGC_FARM_DEBIAN_POINTER_SECONDS": "", "AWS_LAMBDA_FUNCTION_NAME": "api"}
    )
    assert lambda_config.debian_cache == Path("/tmp/pkgc-debian-catalog")
    assert lambda_config.debian_pointer_seconds is None
    from pkgc.core.errors import UsageError

    with pytest.raises(UsageError, match="PKGC_FARM_DEBIAN_CACHE"):
        FarmConfig.from_env({**env, "PKGC_FARM_DEBIAN_CACHE": "relative/dir"})
    with pytest.raises(UsageError, match="PKGC_FARM_DEBIAN_POINTER_SECONDS"):
        FarmConfig.from_env({**env, "PKGC_FARM_DEBIAN_POINTER_SECONDS": "forever"})


def test_catalog_update_refuses_an_unknown_backend_in_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import user_env

    refused = subprocess.run(
        [sys.executable, "-m", "pkgc", "farm", "catalog", "update", "--backend", "gcp", "--from", str(FIXTURE)],
        env=user_env(tmp_path), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert refused.returncode == 2 and refused.stderr.strip().splitlines() == [
        "error: --backend: unknown farm backend 'gcp' (use local or aws)"
    ], refused.stderr
    assert not (tmp_path / "farm" / "debian").exists(), "nothing was written"
