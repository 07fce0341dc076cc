"""Tests of virtjob.config (domain and network XML), and the helpers they share."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from virtjob.errors import ErrorCode, XMLError


def position_of(text: str, needle: str, occurrence: int = 0) -> tuple[int, int]:
    """The 1-based (line, column) of the `occurrence`-th `needle` in `text`."""
    offset = -1
    for _ in range(occurrence + 1):
        offset = text.index(needle, offset + 1)
    line = text.count("\n", 0, offset) + 1
    return line, offset - text.rfind("\n", 0, offset)


def expect_xml_error(
    parse: Callable[[str], object],
    text: str,
    where: tuple[int, int],
    *words: str,
) -> XMLError:
    """Parse `text`, expecting an `XMLError` at `where` whose message holds all `words`."""
    with pytest.raises(XMLError) as info:
        parse(text)
    error = info.value
    assert error.code is ErrorCode.XML_ERROR
    assert (error.line, error.column) == where, error.message
    assert error.message.startswith(f"line {where[0]}, column {where[1]}: ")
    for word in words:
        assert word in error.message, (word, error.message)
    return error
