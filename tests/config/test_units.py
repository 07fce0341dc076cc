"""Memory units: the table, libvirt's case rules, and the checks on sizes."""

from __future__ import annotations

import pytest

from virtjob.config.units import (
    MAX_MEMORY,
    UNITS,
    check_memory,
    parse_memory,
    unit_multiplier,
)
from virtjob.config.validate import InvalidValue

TABLE = [
    ("b", 1),
    ("bytes", 1),
    ("byte", 1),
    ("KB", 1000),
    ("k", 1024),
    ("KiB", 1024),
    ("MB", 1000**2),
    ("M", 1024**2),
    ("MiB", 1024**2),
    ("GB", 1000**3),
    ("G", 1024**3),
    ("GiB", 1024**3),
    ("TB", 1000**4),
    ("T", 1024**4),
    ("TiB", 1024**4),
]


@pytest.mark.parametrize(("unit", "size"), TABLE)
def test_units_table(unit: str, size: int) -> None:
    assert unit_multiplier(unit) == size


def test_documented_table_matches_multipliers() -> None:
    assert {unit: size for unit, size in TABLE if unit != "byte"} == UNITS


@pytest.mark.parametrize(
    ("unit", "size"), [("K", 1024), ("kib", 1024), ("mib", 1024**2), ("kb", 1000), ("B", 1)]
)
def test_units_are_case_insensitive_like_libvirt(unit: str, size: int) -> None:
    assert unit_multiplier(unit) == size


@pytest.mark.parametrize("unit", ["", "XB", "KiBi", "PiB", "kbit", "MiB "])
def test_unknown_unit_is_refused_with_the_list(unit: str) -> None:
    with pytest.raises(InvalidValue, match="is unknown; use one of b, bytes, KB"):
        unit_multiplier(unit)


@pytest.mark.parametrize(
    ("value", "unit", "size"),
    [
        ("1024", None, 1024 * 1024),
        (" 512\n", "MiB", 512 * 1024**2),
        ("1", "G", 1024**3),
        ("2048", "b", 2048),
        ("1024", "KB", 1_024_000),
        ("16", "TiB", MAX_MEMORY),
        ("007", "KiB", 7 * 1024),
    ],
)
def test_parse_memory(value: str, unit: str | None, size: int) -> None:
    assert parse_memory(value, unit, "<memory>") == size


@pytest.mark.parametrize(
    ("value", "unit", "words"),
    [
        ("0", "KiB", "positive"),
        ("-1", "KiB", "not a positive whole number"),
        ("1.5", "GiB", "not a positive whole number"),
        ("", "KiB", "not a positive whole number"),
        ("abc", None, "not a positive whole number"),
        ("1e6", None, "not a positive whole number"),
        ("\u0661\u0662", None, "not a positive whole number"),
        ("1000", "b", "not a whole number of KiB"),
        ("1", "KB", "not a whole number of KiB"),
        ("17", "TiB", "16 TiB limit"),
        ("9" * 30, "b", "far too large"),
        ("9" * 5000, "b", "far too large"),
    ],
)
def test_parse_memory_refuses(value: str, unit: str | None, words: str) -> None:
    with pytest.raises(InvalidValue, match=words) as info:
        parse_memory(value, unit, "<memory>")
    assert str(info.value).startswith("<memory>")


def test_check_memory_refuses_non_integers() -> None:
    with pytest.raises(InvalidValue, match="integer"):
        check_memory(True, "memory")
    with pytest.raises(InvalidValue, match="integer"):
        check_memory(1024.0, "memory")  # type: ignore[arg-type]
