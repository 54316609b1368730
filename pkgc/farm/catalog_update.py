"""`pkgc farm catalog update` against the configured farm: store a Sources index where that farm reads it.

The embedded farm reads `<farm home>/debian/index.sqlite` directly. A farm on AWS reads the index from its blob
store (pkgc/farm/debian_blobs.py): the index is parsed and written in a temporary directory here, published as an
immutable blob plus its pointer, and the catalog snapshot is rewritten from that same local file, so `pkgc search`
lists the packages at once without this process downloading what it has just uploaded.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from pkgc.core.debian import parse_index
from pkgc.core.errors import UsageError
from pkgc.farm.bootstrap import FarmConfig, farm_service, open_ports
from pkgc.farm.debian_catalog import DebianCatalog, load_index_text, write_index


@dataclass(frozen=True)
class CatalogUpdate:
    """What an update stored: packages, stanzas skipped, and (AWS) the blob the pointer now names."""

    stored: int
    skipped: int
    blob: str | None = None


def update_catalog(config: FarmConfig, text: str) -> CatalogUpdate:
    """Parse the Sources index `text` and make it the configured farm's Debian catalog, then rewrite the catalog
    snapshot (an embedded farm that never started writes it at its first start)."""
    if config.backend == "local":
        home = config.paths.home
        stored, skipped = load_index_text(home, text)
        if config.paths.database.is_file():
            farm_service(config).write_catalog_snapshot()
        return CatalogUpdate(stored, skipped)
    from pkgc.farm.debian_blobs import publish_index

    parsed = parse_index(text)
    try:
        ports = open_ports(config)
    except ImportError as exc:  # boto3 is an optional extra
        raise UsageError(f"the AWS farm needs boto3 ({exc.name} is missing)", hint="pip install 'pkgc[aws]'") from None
    with tempfile.TemporaryDirectory(prefix="pkgc-debian-") as work:
        index = Path(work) / "index.sqlite"
        write_index(parsed, index)
        pointer = publish_index(ports.blobs, index, len(parsed.packages))
        farm_service(config, ports=ports, generated=DebianCatalog(index)).write_catalog_snapshot()
    return CatalogUpdate(len(parsed.packages), len(parsed.skipped), pointer.blob)
