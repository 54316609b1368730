"""Relocation: build once under a long placeholder prefix, install into any prefix that is not longer.

Text files get a plain replacement. In binaries the placeholder sits inside NUL-terminated strings (RPATHs,
compiled-in data directories such as hello's locale directory), whose length must not change: the string is
rewritten with the new prefix and padded with NUL bytes to its old length, as conda and Spack do. Every occurrence
inside one C string is replaced (an RPATH can name the prefix twice), and the prefix is refused up front when it is
longer than the placeholder, before anything is downloaded.
"""

from __future__ import annotations

from pkgc.core.errors import UsageError

PLACEHOLDER_COMPONENT = "__pkgc_placeholder__"
# 13 components of 21 bytes: 273 bytes, more than the 255 asked of us, every component below NAME_MAX.
PLACEHOLDER = "/" + "/".join([PLACEHOLDER_COMPONENT] * 13)
PLACEHOLDER_BYTES = PLACEHOLDER.encode()


def check_prefix_fits(prefix: str) -> None:
    """Refuse a prefix that cannot replace the placeholder in place."""
    encoded = prefix.encode()
    if len(encoded) > len(PLACEHOLDER_BYTES):
        raise UsageError(
            f"prefix is {len(encoded)} bytes long; pkgc can relocate into prefixes of at most "
            f"{len(PLACEHOLDER_BYTES)} bytes",
            hint="choose a shorter --prefix",
        )
    if not prefix.startswith("/"):
        raise UsageError(f"prefix {prefix!r} must be an absolute path")
    if PLACEHOLDER_COMPONENT in prefix:
        raise UsageError("prefix must not contain the pkgc placeholder")


def kind_of(data: bytes) -> str | None:
    """'text' or 'binary' when the placeholder occurs in `data`, None when the file needs no relocation."""
    if PLACEHOLDER_BYTES not in data:
        return None
    return "binary" if b"\0" in data else "text"


def relocate_text(data: bytes, new_prefix: str) -> bytes:
    return data.replace(PLACEHOLDER_BYTES, new_prefix.encode())


def relocate_binary(data: bytes, new_prefix: str) -> bytes:
    """Rewrite each C string holding the placeholder in place, NUL-padded, so no offset in the file moves."""
    new = new_prefix.encode()
    if len(new) > len(PLACEHOLDER_BYTES):
        raise UsageError("prefix longer than the placeholder")
    out = bytearray(data)
    position = out.find(PLACEHOLDER_BYTES)
    while position != -1:
        end = out.find(b"\0", position)
        if end == -1:
            end = len(out)
        segment = bytes(out[position:end])
        rewritten = segment.replace(PLACEHOLDER_BYTES, new)
        out[position:end] = rewritten + b"\0" * (len(segment) - len(rewritten))
        position = out.find(PLACEHOLDER_BYTES, position + len(rewritten))
    assert len(out) == len(data)
    return bytes(out)


def relocate(data: bytes, kind: str, new_prefix: str) -> bytes:
    if kind == "text":
        return relocate_text(data, new_prefix)
    if kind == "binary":
        return relocate_binary(data, new_prefix)
    raise ValueError(f"unknown relocation kind {kind!r}")
