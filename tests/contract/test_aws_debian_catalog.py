"""The Debian catalog of an AWS farm, on the session's moto server: `pkgc farm catalog update --from FILE` (a real
process, PKGC_FARM_BACKEND=aws) publishes the index blob and its pointer to S3 and rewrites the snapshot; the API
Lambda (`api_handler` behind the loopback API Gateway bridge) then answers `/v1/packages/<generated package>` with a
generated recipe, lists it in `/v1/catalog`, plans a build of it, and the client's `pkgc search`/`pkgc info` find
it. `BlobDebianCatalog` over `S3BlobStore` refuses a corrupt blob and keeps the copy in use."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pkgc.core.debian import parse_index
from pkgc.core.platform import detect_platform
from pkgc.farm.bootstrap import FarmConfig, farm_service
from pkgc.farm.debian_blobs import POINTER_NAME, BlobDebianCatalog, publish_index, read_pointer
from pkgc.farm.debian_catalog import write_index
from tests.conftest import subprocess_env, user_env
from tests.moto_server import LambdaFarm, MotoServer, lambda_farm_on

FIXTURE = Path(__file__).parent.parent / "fixtures" / "debian" / "Sources"
_HERE = detect_platform()
# A platform of this module's own on the shared moto server (its queue names are fresh anyway).
PLATFORM = f"{_HERE.os}-{_HERE.arch}-{_HERE.libc}-2.{uuid.uuid4().int % 10**4}"


@dataclass
class AwsFarm(LambdaFarm):
    tmp: Path

    def pkgc(self, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pkgc", *args], env=env, capture_output=True, text=True, timeout=120, check=False
        )


@pytest.fixture
def aws_farm(
    moto_server: MotoServer, aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[AwsFarm]:
    """A farm on moto with the curated hello and an API container already warm (it has read the empty pointer)."""
    extra = {
        "PKGC_FARM_DEBIAN_POINTER_SECONDS": "1",  # a warm container sees a new index within a second
        "PKGC_FARM_DEBIAN_CACHE": str(tmp_path / "lambda-tmp"),
    }
    with lambda_farm_on(moto_server, aws_env, monkeypatch, PLATFORM, token_name="debian-test", extra_env=extra) as farm:
        yield AwsFarm(farm.env, farm.ports, farm.token, farm.bridge, tmp_path)


def test_catalog_update_against_the_aws_farm_serves_generated_recipes(aws_farm: AwsFarm) -> None:
    with aws_farm.api() as api:
        assert api.get("/v1/packages/libcbor").status_code == 404, "before the update: unknown"
        assert [p["name"] for p in api.get("/v1/catalog").json()["packages"]] == ["hello"]

    operator = subprocess_env({**aws_farm.env, "HOME": str(aws_farm.tmp / "operator")})
    updated = aws_farm.pkgc(operator, "farm", "catalog", "update", "--from", str(FIXTURE))
    assert updated.returncode == 0, updated.stderr
    assert "Debian catalog: 11 source packages (0 skipped)" in updated.stdout
    pointer = read_pointer(aws_farm.ports.blobs)
    assert pointer is not None and pointer.packages == 11 and pointer.blob in updated.stdout
    assert aws_farm.ports.blobs.exists(pointer.blob)

    with aws_farm.api() as api:
        # The warm container sees it once its pointer TTL (1 s) and the service's recipe TTL (2 s) have passed.
        deadline = time.monotonic() + 6
        while (details := api.get("/v1/packages/libcbor")).status_code == 404 and time.monotonic() < deadline:
            time.sleep(0.25)
        assert details.status_code == 200, details.text
        assert details.json()["origin"] == "generated"
        assert details.json()["homepage"] == "https://github.com/PJK/libcbor"
        assert api.get("/v1/packages/hello").json()["origin"] == "curated"
        listed = {p["name"] for p in api.get("/v1/catalog").json()["packages"]}
        assert {"hello", "libcbor", "serd", "libtar"} <= listed and len(listed) == 12
        assert [r["name"] for r in api.get("/v1/packages", params={"q": "libcbor"}).json()["results"]] == ["libcbor"]
        planned = api.post(
            "/v1/resolve",
            json={"packages": [{"name": "libcbor"}]},
            headers={"Authorization": f"Bearer {aws_farm.token}"},
        )
        assert planned.status_code == 200, planned.text
        (build,) = planned.json()["builds"]
        assert build["name"] == "libcbor" and build["status"] == "queued"
    record = aws_farm.ports.builds.get(build["key"])
    assert record is not None and record.spec["recipe_content"]["origin"] == "generated"
    job = aws_farm.ports.queues.for_platform(PLATFORM).receive(visibility_timeout=5, wait=5)
    assert job is not None and job.body == build["key"], "the generated package's build went to the workers"

    user = user_env(aws_farm.tmp / "user", PKGC_FARM=aws_farm.bridge.url)
    found = aws_farm.pkgc(user, "search", "libcbor", "--json")
    assert found.returncode == 0, found.stderr
    assert [r["name"] for r in json.loads(found.stdout)] == ["libcbor"]
    info = aws_farm.pkgc(user, "info", "libcbor", "--json")
    assert info.returncode == 0 and json.loads(info.stdout)["origin"] == "generated", info.stderr


def test_catalog_update_needs_the_aws_settings(aws_farm: AwsFarm) -> None:
    env = subprocess_env({"HOME": str(aws_farm.tmp / "nobody"), "PKGC_FARM_BACKEND": "aws"})
    refused = aws_farm.pkgc(env, "farm", "catalog", "update", "--from", str(FIXTURE))
    assert refused.returncode == 2, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "PKGC_AWS_" in refused.stderr


def test_the_blob_catalog_over_s3_refuses_a_corrupt_blob(aws_farm: AwsFarm, caplog: pytest.LogCaptureFixture) -> None:
    blobs = aws_farm.ports.blobs
    stanzas = FIXTURE.read_text().strip().split("\n\n")
    first = parse_index("\n\n".join(stanzas[:2]))
    write_index(first, aws_farm.tmp / "first.sqlite")
    publish_index(blobs, aws_farm.tmp / "first.sqlite", len(first.packages))
    now = [0.0]
    catalog = BlobDebianCatalog(blobs, aws_farm.tmp / "cache", ttl=10, clock=lambda: now[0])
    assert sorted(row[0] for row in catalog.packages()) == ["ddate", "exuberant-ctags"]

    everything = parse_index(FIXTURE.read_text())
    write_index(everything, aws_farm.tmp / "all.sqlite")
    pointer = publish_index(blobs, aws_farm.tmp / "all.sqlite", len(everything.packages))
    packed = blobs.get_bytes(pointer.blob)
    assert packed is not None
    blobs.put_named(pointer.blob, packed[:-100])  # the object damaged after its pointer was written
    now[0] += 10
    with caplog.at_level(logging.WARNING, logger="pkgc.farm.debian_blobs"):
        assert sorted(row[0] for row in catalog.packages()) == ["ddate", "exuberant-ctags"]
    (line,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert line.startswith(f"Debian catalog: refused {pointer.blob}") and "sha256" in line

    blobs.put_named(pointer.blob, packed)  # a new pointer to a good blob is taken
    write_index(parse_index("\n\n".join(stanzas[2:4])), aws_farm.tmp / "two.sqlite")
    publish_index(blobs, aws_farm.tmp / "two.sqlite", 2)
    now[0] += 10
    assert sorted(row[0] for row in catalog.packages()) == ["libcbor", "libevdevplus"]
    assert blobs.get_bytes(POINTER_NAME) is not None


def _synthetic_sources(count: int) -> str:
    """A Sources index the size of Debian's (34,000 packages), made up: names, versions and sums are fake."""

    def stanza(i: int) -> str:
        name = f"synthetic-package-{i:05d}"
        return (
            f"Package: {name}\nBinary: {name}, lib{name}-dev\nVersion: 1.{i}-1\nSection: utils\n"
            f"Homepage: https://example.org/projects/{name}\nDirectory: pool/main/s/{name}\nFormat: 3.0 (quilt)\n"
            f"Checksums-Sha256:\n {'a' * 64} 1000 {name}_1.{i}.orig.tar.gz\n {'b' * 64} 100 {name}_1.{i}-1.debian.tar.xz\n"
        )

    return "\n".join(stanza(i) for i in range(count))


def test_the_whole_catalog_fits_a_lambda_response(aws_farm: AwsFarm) -> None:
    """Debian's 34,000 packages make a catalog document of about 6 MB, over a Lambda's 6 MB response limit (API
    Gateway then answers 502): the API sends it gzipped to clients that accept gzip (every pkgc does), as binary
    media (infra/api.yaml's BinaryMediaTypes, which the bridge applies as API Gateway does)."""
    from pkgc.farm.debian_catalog import DebianCatalog
    from tests.apigw_bridge import LAMBDA_RESPONSE_LIMIT

    index = aws_farm.tmp / "big.sqlite"
    write_index(parse_index(_synthetic_sources(34_000)), index)
    config = FarmConfig.from_env(aws_farm.env)
    farm_service(config, ports=aws_farm.ports, generated=DebianCatalog(index)).write_catalog_snapshot()
    snapshot = aws_farm.ports.catalog.read_snapshot()
    assert snapshot is not None and len(snapshot) > LAMBDA_RESPONSE_LIMIT, "the document really is that large"

    with aws_farm.api() as api:
        deadline = time.monotonic() + 6  # the warm container rereads the snapshot within its recipe TTL (2 s)
        while len((answer := api.get("/v1/catalog", params={"debian": "1"})).content) < 1_000_000:
            assert time.monotonic() < deadline, answer.text[:300]
            time.sleep(0.25)
        assert answer.status_code == 200 and answer.headers["content-encoding"] == "gzip"
        assert len(answer.json()["packages"]) == 34_001
        plain = api.get("/v1/catalog", headers={"Accept-Encoding": "identity"})
        assert plain.status_code == 502, "uncompressed, the same document is more than a Lambda can answer"

    user = user_env(aws_farm.tmp / "user", PKGC_FARM=aws_farm.bridge.url)
    found = aws_farm.pkgc(user, "search", "synthetic-package-33999", "--json")
    assert found.returncode == 0, found.stderr
    assert [r["name"] for r in json.loads(found.stdout)][:1] == ["synthetic-package-33999"]
