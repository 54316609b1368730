"""Version strings as upstreams write them, ordered the way their users expect.

Upstreams do not follow one scheme: `2.10` must beat `2.9`, `1.0rc1` comes before `1.0`, `2.1.12-stable` is the
release itself and `1.0.8+dfsg` is a repack that sorts just after `1.0.8`. The rules, in order:

- an optional Debian-style epoch `N:` wins over everything else;
- the rest splits into numeric and alphabetic segments at `.`, `-`, `_`, `+` and at digit/letter boundaries;
- numbers compare as numbers and beat any word; a pre-release word (alpha, beta, rc, pre, preview, dev, or a
  single a/b/c followed by a number, or Debian's `~`) sorts before the end of the version; any other word
  (stable, final, p, dfsg, a lone letter as in OpenSSL's 1.1.1a) sorts after it.
"""

from __future__ import annotations

import re
from functools import total_ordering

from pkgc.core.errors import UsageError
from pkgc.core.record import frozen_delattr, frozen_setattr

_VALID = re.compile(r"^(?:\d+:)?[A-Za-z0-9][A-Za-z0-9.+~_-]*$")
_SEGMENT = re.compile(r"\d+|[A-Za-z]+|~")
_PRERELEASE_WORDS = {"alpha": 0, "beta": 1, "pre": 2, "preview": 2, "rc": 3, "dev": -1}
_PRERELEASE_LETTERS = {"a": 0, "b": 1, "c": 3}
MAX_VERSION_LENGTH = 64

# Sort keys: (rank, number, word). Pre-releases rank below the end of the version, numbers rank above everything.
_Key = tuple[int, int, str]
_END: _Key = (1, 0, "")


def _segment_keys(text: str) -> tuple[_Key, ...]:
    tokens = _SEGMENT.findall(text)
    keys: list[_Key] = []
    for index, token in enumerate(tokens):
        next_is_number = index + 1 < len(tokens) and tokens[index + 1].isdigit()
        lowered = token.lower()
        if token == "~":
            keys.append((0, -2, ""))
        elif token.isdigit():
            keys.append((3, int(token), ""))
        elif lowered in _PRERELEASE_WORDS:
            keys.append((0, _PRERELEASE_WORDS[lowered], ""))
        elif lowered in _PRERELEASE_LETTERS and next_is_number:
            keys.append((0, _PRERELEASE_LETTERS[lowered], ""))
        else:
            keys.append((2, 0, lowered))
    return tuple(keys)


@total_ordering
class Version:
    """A validated version string with a total order; `str()` gives back exactly what upstream wrote.

    Immutable, as a frozen dataclass is; a plain class because every command imports it, and a dataclass costs
    about 0.5 ms to make, for three methods written here anyway.
    """

    text: str
    _epoch: int
    _keys: tuple[_Key, ...]

    def __init__(self, text: str) -> None:
        # No `..`: versions become parts of file names and URLs, where it must never read as a parent directory.
        if len(text) > MAX_VERSION_LENGTH or not _VALID.fullmatch(text) or ".." in text:
            raise UsageError(
                f"invalid version {text!r}",
                hint="versions use letters, digits and . + ~ _ - (for example 2.10 or 1.0.8+dfsg)",
            )
        epoch, sep, rest = text.partition(":")
        object.__setattr__(self, "text", text)
        object.__setattr__(self, "_epoch", int(epoch) if sep else 0)
        object.__setattr__(self, "_keys", _segment_keys(rest if sep else text))

    __setattr__ = frozen_setattr
    __delattr__ = frozen_delattr

    def __repr__(self) -> str:
        return f"Version(text={self.text!r})"

    def _compare_key(self) -> tuple[int, tuple[_Key, ...]]:
        return self._epoch, self._keys

    def _padded(self, length: int) -> tuple[_Key, ...]:
        return self._keys + (_END,) * (length - len(self._keys))

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        if self._epoch != other._epoch:
            return self._epoch < other._epoch
        length = max(len(self._keys), len(other._keys))
        return self._padded(length) < other._padded(length)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        length = max(len(self._keys), len(other._keys))
        return self._epoch == other._epoch and self._padded(length) == other._padded(length)

    def __hash__(self) -> int:
        keys = list(self._keys)
        while keys and keys[-1] == _END:
            keys.pop()
        return hash((self._epoch, tuple(keys)))

    def __str__(self) -> str:
        return self.text


def parse_version(text: str) -> Version:
    return Version(text)


def newest(versions: list[str]) -> str:
    """The highest of a non-empty list of version strings."""
    return max(versions, key=Version)
