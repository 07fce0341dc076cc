"""libvirt memory units: ``<memory unit='MiB'>512</memory>`` to bytes and back.

Like libvirt's parser, unit names are case-insensitive: ``b``/``byte``/``bytes`` are bytes, a
bare letter or letter + ``iB`` is a power of 1024 (``k``, ``KiB``, ``M``, ``MiB``...), and
letter + ``B`` is a power of 1000 (``KB``, ``MB``...). With no unit, the value is in KiB.
"""

from __future__ import annotations

import re

from virtjob.config.validate import InvalidValue

__all__ = [
    "DEFAULT_UNIT",
    "KIB",
    "MAX_MEMORY",
    "UNITS",
    "check_memory",
    "parse_memory",
    "unit_multiplier",
]

KIB = 1024
"""One kibibyte; memory sizes are whole multiples of it."""

MAX_MEMORY = 16 * 1024**4
"""The largest memory size accepted: 16 TiB."""

DEFAULT_UNIT = "KiB"
"""The unit of a ``<memory>`` value written without ``unit=``."""

UNITS: dict[str, int] = {
    "b": 1,
    "bytes": 1,
    "KB": 1000,
    "k": 1024,
    "KiB": 1024,
    "MB": 1000**2,
    "M": 1024**2,
    "MiB": 1024**2,
    "GB": 1000**3,
    "G": 1024**3,
    "GiB": 1024**3,
    "TB": 1000**4,
    "T": 1024**4,
    "TiB": 1024**4,
}
"""The documented spellings and their size in bytes (other cases of the letters work too)."""

_SCALES: dict[str, tuple[int, int]] = {
    "k": (1024, 1000),
    "m": (1024**2, 1000**2),
    "g": (1024**3, 1000**3),
    "t": (1024**4, 1000**4),
}
_DIGITS = re.compile(r"[0-9]{1,20}")
_ALL_DIGITS = re.compile(r"[0-9]+")


def unit_multiplier(unit: str, what: str = "unit") -> int:
    """Return how many bytes one `unit` is; raises `InvalidValue` for an unknown unit."""
    folded = unit.lower()
    if folded in ("b", "byte", "bytes"):
        return 1
    scales = _SCALES.get(folded[:1])
    if scales is not None:
        binary, decimal = scales
        rest = folded[1:]
        if rest in ("", "ib"):
            return binary
        if rest == "b":
            return decimal
    listed = ", ".join(UNITS)
    raise InvalidValue(f"{what} {unit!r} is unknown; use one of {listed}")


def check_memory(size: int, what: str) -> int:
    """Check a memory size in bytes: an int, positive, a whole number of KiB, at most 16 TiB.

    Returns `size`; raises `InvalidValue` otherwise.
    """
    if not isinstance(size, int) or isinstance(size, bool):
        raise InvalidValue(f"{what} must be an integer number of bytes")
    if size <= 0:
        raise InvalidValue(f"{what} is {size} bytes; give a positive size")
    if size > MAX_MEMORY:
        raise InvalidValue(f"{what} is {size} bytes, more than the 16 TiB limit; give less")
    if size % KIB:
        raise InvalidValue(
            f"{what} is {size} bytes, not a whole number of KiB; use a multiple of 1024 bytes"
        )
    return size


def parse_memory(value: str, unit: str | None, what: str) -> int:
    """Turn the text of a ``<memory>`` element and its ``unit`` attribute into bytes.

    `unit` None means KiB. Raises `InvalidValue` for a value that is not a positive decimal
    integer, an unknown unit, or a size `check_memory` refuses.
    """
    multiplier = unit_multiplier(DEFAULT_UNIT if unit is None else unit, f"{what} unit")
    digits = value.strip()
    if not _DIGITS.fullmatch(digits):
        if _ALL_DIGITS.fullmatch(digits):
            raise InvalidValue(f"{what} {digits[:24]!r}... is far too large; give less")
        raise InvalidValue(
            f"{what} {digits!r} is not a positive whole number; write digits only, "
            "e.g. <memory unit='MiB'>512</memory>"
        )
    return check_memory(int(digits) * multiplier, what)
