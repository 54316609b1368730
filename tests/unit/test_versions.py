"""Ordering and validation of upstream version strings (pkgc.core.versions)."""

from __future__ import annotations

import itertools
import random

import pytest

from pkgc.core.errors import UsageError
from pkgc.core.versions import Version, newest, parse_version


@pytest.mark.parametrize(
    ("higher", "lower"),
    [
        ("2.10", "2.9"),
        ("1.2.13", "1.2.9"),
        ("590", "5.4.4"),
        ("2.1.12-stable", "2.1.12"),
        ("1.0.8+dfsg", "1.0.8"),
        ("1.0.9", "1.0.8+dfsg"),
        ("1.0", "1.0rc1"),
        ("1.0", "1.0~beta"),
        ("1.1.1a", "1.1.1"),
        ("1:0.1", "9.9"),
        ("1.0rc2", "1.0rc1"),
        ("1.0rc1", "1.0beta2"),
        ("1.0beta1", "1.0alpha3"),
        ("1.0a1", "1.0.dev1"),
        ("1.0", "1.0b2"),
        ("1.0.1", "1.0"),
        ("1.1.1b", "1.1.1a"),
        ("2:1.0", "1:99"),
    ],
)
def test_order(higher: str, lower: str) -> None:
    high, low = Version(higher), Version(lower)
    assert high > low
    assert low < high
    assert high >= low
    assert low <= high
    assert high != low
    assert not high < low


def test_separators_do_not_matter_for_equality_and_hash() -> None:
    assert Version("1.0-1") == Version("1.0.1")
    assert hash(Version("1.0-1")) == hash(Version("1.0.1"))
    assert Version("0:1.0") == Version("1.0")
    assert hash(Version("0:1.0")) == hash(Version("1.0"))
    assert len({Version("2.10"), Version("2_10"), Version("2.9")}) == 2


def test_prerelease_words_are_case_insensitive() -> None:
    assert Version("1.0RC1") == Version("1.0rc1")
    assert Version("1.0RC1") < Version("1.0")


def test_sorting_a_shuffled_list() -> None:
    expected = [
        "0.9",
        "1.0~beta",
        "1.0rc1",
        "1.0",
        "1.0.8",
        "1.0.8+dfsg",
        "1.0.9",
        "1.1.1",
        "1.1.1a",
        "1.2.9",
        "1.2.13",
        "2.1.12",
        "2.1.12-stable",
        "2.9",
        "2.10",
        "5.4.4",
        "590",
        "1:0.1",
    ]
    for seed in range(5):
        shuffled = expected[:]
        random.Random(seed).shuffle(shuffled)
        assert [str(v) for v in sorted(Version(s) for s in shuffled)] == expected
        assert sorted(shuffled, key=Version) == expected


def test_newest() -> None:
    assert newest(["2.9", "2.10", "2.10rc1", "1:0.1", "590"]) == "1:0.1"
    assert newest(["2.9", "2.10", "2.10rc1"]) == "2.10"


@pytest.mark.parametrize(
    "bad", ["", "a b", "../x", "-1", "1" * 65, "1.0/2", ":1.0", "1.0;rm", ".1", "0..1", "1.0..", "1:.."]
)
def test_invalid_versions_are_usage_errors(bad: str) -> None:
    with pytest.raises(UsageError) as info:
        Version(bad)
    assert "invalid version" in str(info.value)
    with pytest.raises(UsageError):
        parse_version(bad)


def test_maximum_length_is_accepted() -> None:
    assert str(Version("1" * 64)) == "1" * 64


def test_trailing_newline_is_rejected() -> None:
    # Guards: `$` also matches before a trailing newline, so a regex search would accept "1.0\n" as a
    # version; Version uses re.fullmatch, which refuses it.
    with pytest.raises(UsageError, match="invalid version"):
        Version("1.0\n")


@pytest.mark.parametrize("text", ["2.10", "1:0.1", "1.0.8+dfsg", "1.0~beta", "2.1.12-stable", "1.0RC1", "1_2"])
def test_str_round_trips(text: str) -> None:
    assert str(Version(text)) == text
    assert str(parse_version(text)) == text
    assert Version(str(Version(text))) == Version(text)


def test_comparing_with_other_types() -> None:
    assert Version("1.0") != "1.0"
    with pytest.raises(TypeError):
        _ = Version("1.0") < "2.0"  # type: ignore[operator]


PROPERTY_VERSIONS = [
    "0.1",
    "1.0.dev1",
    "1.0a1",
    "1.0~beta",
    "1.0beta2",
    "1.0rc1",
    "1.0",
    "1.0.0",
    "1-0",
    "1.0-stable",
    "1.0+dfsg",
    "1.0a",
    "1.0.1",
    "1.10",
    "1:0.1",
    "0:1.0",
]


def test_order_is_antisymmetric_and_total() -> None:
    versions = [Version(v) for v in PROPERTY_VERSIONS]
    for a, b in itertools.product(versions, repeat=2):
        relations = [a < b, a == b, a > b]
        assert relations.count(True) == 1, (a, b, relations)
        assert (a < b) == (b > a)
        assert (a == b) == (b == a)
        if a <= b and b <= a:
            assert a == b
            assert hash(a) == hash(b)


def test_order_is_transitive() -> None:
    versions = [Version(v) for v in PROPERTY_VERSIONS]
    for a, b, c in itertools.product(versions, repeat=3):
        if a < b and b < c:
            assert a < c, (a, b, c)
        if a <= b and b <= c:
            assert a <= c, (a, b, c)
        if a == b and b == c:
            assert a == c, (a, b, c)


def test_a_version_is_immutable_and_survives_pickle_and_copy() -> None:
    """Versions are keys of sets and dicts: nothing may change one after it is made."""
    import copy
    import dataclasses
    import pickle

    version = Version("1:2.0rc1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        version.text = "3.0"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del version.text
    assert str(version) == "1:2.0rc1" and repr(version) == "Version(text='1:2.0rc1')"
    for copied in (pickle.loads(pickle.dumps(version)), copy.deepcopy(version), copy.copy(version)):
        assert copied == version and hash(copied) == hash(version) and copied < Version("1:2.0")
