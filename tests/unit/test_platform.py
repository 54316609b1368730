"""The platform (pkgc.core.platform): parse/str round trip, validation of what arrives from the network,
compatibility (which builds run where) and the CPU levels of a processor."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from pkgc.core.errors import UsageError
from pkgc.core.options import CPU_TARGETS
from pkgc.core.platform import (
    Platform,
    choose_build_platform,
    cpu_levels_from_flags,
    detect_cpu_levels,
    detect_platform,
    parse_platforms,
)
from pkgc.core.protocol import ClientPlatform, PackageRequestModel, ResolveRequest

X86 = Platform("linux", "x86_64", "glibc", "2.36")


@pytest.mark.parametrize(
    "text", ["linux-x86_64-glibc-2.36", "linux-aarch64-musl-1.2.4", "linux-x86_64-glibc-2", "freebsd-amd64-libc-14.0"]
)
def test_str_and_parse_round_trip(text: str) -> None:
    platform = Platform.parse(text)
    assert str(platform) == text
    assert Platform.parse(str(platform)) == platform
    assert Platform.from_dict(platform.as_dict()) == platform


def test_fields_are_separate() -> None:
    assert X86.as_dict() == {"os": "linux", "arch": "x86_64", "libc": "glibc", "libc_version": "2.36"}


@pytest.mark.parametrize(
    "text",
    [
        "",
        "linux-x86_64-glibc2.36",  # the old spelling: the version is a field of its own now
        "linux-x86_64-glibc-2.36-extra",
        "Linux-x86_64-glibc-2.36",
        "linux-x86_64-glibc-2.36\n",
        "linux-../../x-glibc-2.36",
        "linux-x86_64-glibc-2..36",
        "linux-x86_64-glibc-02.36",
        "linux-x86_64-glibc-2.36.1.4",
        "linux-x86_64-glibc-99999.1",
        "linux-x86 64-glibc-2.36",
        "linux-" + "a" * 100 + "-glibc-2.36",
    ],
)
def test_parse_refuses_malformed_platforms(text: str) -> None:
    with pytest.raises(UsageError, match="invalid platform"):
        Platform.parse(text)


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"os": "linux", "arch": "x86_64", "libc": "glibc2.36"},  # a manifest of the old shape
        {"os": "linux", "arch": "x86_64", "libc": "glibc", "libc_version": 2.36},
        {"os": "linux", "arch": "x86_64", "libc": "glibc", "libc_version": "2.36", "extra": "x"},
        {"os": "linux", "arch": "x86_64/..", "libc": "glibc", "libc_version": "2.36"},
    ],
)
def test_from_dict_refuses_anything_but_four_valid_fields(data: dict[str, object]) -> None:
    with pytest.raises(UsageError, match="invalid platform"):
        Platform.from_dict(data)


def test_a_build_runs_on_the_same_or_a_newer_c_library_only() -> None:
    assert X86.can_run(Platform("linux", "x86_64", "glibc", "2.31"))
    assert X86.can_run(X86)
    assert not X86.can_run(Platform("linux", "x86_64", "glibc", "2.39"))
    assert not X86.can_run(Platform("linux", "aarch64", "glibc", "2.31"))
    assert not X86.can_run(Platform("linux", "x86_64", "musl", "1.2"))
    # Versions compare as numbers, not as text.
    assert Platform("linux", "x86_64", "glibc", "2.10").can_run(Platform("linux", "x86_64", "glibc", "2.9"))


def test_the_newest_runnable_build_platform_is_chosen() -> None:
    served = [
        Platform.parse(t)
        for t in (
            "linux-x86_64-glibc-2.28",
            "linux-x86_64-glibc-2.36",
            "linux-x86_64-glibc-2.39",
            "linux-aarch64-glibc-2.36",
        )
    ]
    assert choose_build_platform(Platform.parse("linux-x86_64-glibc-2.37"), served) == served[1]
    assert choose_build_platform(Platform.parse("linux-x86_64-glibc-2.40"), served) == served[2]
    assert choose_build_platform(Platform.parse("linux-aarch64-glibc-2.40"), served) == served[3]
    assert choose_build_platform(Platform.parse("linux-x86_64-glibc-2.17"), served) is None
    assert choose_build_platform(Platform.parse("linux-x86_64-musl-1.2"), served) is None


def test_parse_platforms_reads_a_configured_list() -> None:
    assert parse_platforms(" linux-x86_64-glibc-2.36, linux-aarch64-glibc-2.36 ,") == (
        X86,
        Platform("linux", "aarch64", "glibc", "2.36"),
    )
    with pytest.raises(UsageError):
        parse_platforms(" , ")
    with pytest.raises(UsageError):
        parse_platforms("linux-x86_64-glibc-2.36,bogus")


V2 = [
    "fpu",
    "cx8",
    "cmov",
    "mmx",
    "fxsr",
    "sse",
    "sse2",
    "syscall",
    "cx16",
    "lahf_lm",
    "popcnt",
    "pni",
    "sse4_1",
    "sse4_2",
    "ssse3",
]
V3 = [*V2, *["avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"]]
V4 = [*V3, *["avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"]]


@pytest.mark.parametrize(
    ("flags", "levels"),
    [
        ([], ("x86-64",)),
        (V2[:8], ("x86-64",)),
        (V2, ("x86-64", "x86-64-v2")),
        ([f for f in V3 if f != "movbe"], ("x86-64", "x86-64-v2")),  # one missing flag keeps the level out
        (V3, ("x86-64", "x86-64-v2", "x86-64-v3")),
        (V4, ("x86-64", "x86-64-v2", "x86-64-v3", "x86-64-v4")),
        ([f for f in V4 if f not in ("sse4_2",)], ("x86-64",)),  # a level needs every level below it
    ],
)
def test_x86_64_levels_follow_the_psabi_flags(flags: list[str], levels: tuple[str, ...]) -> None:
    assert cpu_levels_from_flags("x86_64", flags) == levels
    assert set(levels) <= set(CPU_TARGETS["x86_64"]), "levels are values of the cpu option"


def test_aarch64_states_its_baseline_and_unknown_architectures_nothing() -> None:
    assert cpu_levels_from_flags(
        "aarch64", ["fp", "asimd", "evtstrm", "aes", "pmull", "sha1", "sha2", "crc32", "atomics"]
    ) == ("armv8-a",)
    assert cpu_levels_from_flags("riscv64", []) == ()


def test_cpu_levels_are_read_from_the_first_flags_line(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {' '.join(V3)}\n\nprocessor\t: 1\nflags\t\t: {' '.join(V4)}\n")
    assert detect_cpu_levels("x86_64", cpuinfo) == ("x86-64", "x86-64-v2", "x86-64-v3")
    assert detect_cpu_levels("x86_64", tmp_path / "missing") == ("x86-64",)


def test_this_machine_is_a_valid_platform() -> None:
    here = detect_platform()
    assert Platform.parse(str(here)) == here
    levels = detect_cpu_levels(here.arch)
    assert levels and levels[0] == CPU_TARGETS[here.arch][0]


def _client(**change: object) -> dict[str, object]:
    return {**X86.as_dict(), "cpu_levels": ["x86-64", "x86-64-v2"], **change}


def test_a_resolve_request_carries_the_client_platform() -> None:
    request = ResolveRequest.model_validate({"packages": [{"name": "hello"}], "platform": _client()})
    assert request.platform is not None
    assert request.platform.platform() == X86
    assert request.platform.cpu_levels == ["x86-64", "x86-64-v2"]
    assert ResolveRequest(packages=[PackageRequestModel(name="hello")]).platform is None  # older clients
    assert ClientPlatform.of(X86, ["x86-64"]).platform() == X86


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"arch": "x86_64/../../x"}, "platform"),
        ({"libc_version": "2.36; rm -rf /"}, "libc version"),
        ({"libc_version": "two"}, "platform"),
        ({"os": ""}, "platform"),
        ({"cpu_levels": []}, "cpu_levels"),
        ({"cpu_levels": ["x86-64\n"]}, "cpu_levels"),
        ({"cpu_levels": ["x86-64"] * 100}, "cpu_levels"),
        ({"extra": "field"}, "extra"),
    ],
)
def test_a_malformed_client_platform_is_refused(change: dict[str, object], where: str) -> None:
    with pytest.raises(ValidationError) as raised:
        ResolveRequest.model_validate({"packages": [{"name": "hello"}], "platform": _client(**change)})
    assert where in str(raised.value)
