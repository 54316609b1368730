"""What a blob name may look like: one rule for the blob stores, the API's blob route and `farm reset`.

Names come back from the network (a client asks for `/v1/blobs/NAME`), so they are checked before they reach a
path: slash-separated segments of letters, digits, '.', '_' and '-', each starting with a letter or a digit (so no
'.', '..', hidden or temporary file), at most 8 deep. Content blobs (see `ports.content_blob_name`) are named by
their bytes' sha256 and never change.
"""

from __future__ import annotations

import re

BLOB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}(?:/[A-Za-z0-9][A-Za-z0-9._-]{0,199}){0,7}")
CONTENT_BLOB_NAME = re.compile(r"(artifacts|logs)/sha256/([0-9a-f]{2})/([0-9a-f]{64})\.(?:tar\.zst|log)")
MAX_BLOB_NAME_LENGTH = 1024


def valid_blob_name(name: str) -> bool:
    return len(name) <= MAX_BLOB_NAME_LENGTH and BLOB_NAME.fullmatch(name) is not None


def is_content_blob(name: str) -> bool:
    """A name made by `content_blob_name` (its digest directory agreeing with its digest): immutable bytes."""
    return content_digest(name) is not None


def content_digest(name: str) -> str | None:
    """The sha256 a content blob's name states (None for other names): what the bytes served must hash to."""
    found = CONTENT_BLOB_NAME.fullmatch(name)
    return found.group(3) if found is not None and found.group(3).startswith(found.group(2)) else None
