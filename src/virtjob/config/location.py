"""Line and column (1-based) of elements and attributes in the text of an XML document.

lxml gives an element's ``sourceline`` (the line where its start tag *ends*) but no column.
`Locator` finds the exact start tag instead: in a well-formed document every ``<`` outside
comments, CDATA sections and processing instructions opens a tag, so the n-th start tag in the
text is the n-th element of the tree in document order. Columns count characters, not bytes.
"""

from __future__ import annotations

import bisect
import re

from lxml import etree

__all__ = ["Locator", "line_column", "qualified_name"]

_MARKUP = re.compile(
    r"<!--.*?-->|<!\[CDATA\[.*?\]\]>|<\?.*?\?>|<!.*?>|<(?P<start>[^\s/>!?][^\s/>]*)", re.S
)
_ATTRIBUTE = re.compile(r"""\s+(?P<name>[^\s=/>]+)\s*=\s*(?:"[^"]*"|'[^']*')""")


def line_column(text: str, offset: int) -> tuple[int, int]:
    """Return the 1-based (line, column) of character `offset` in `text`."""
    line = text.count("\n", 0, offset) + 1
    column = offset - text.rfind("\n", 0, offset)
    return line, column


def qualified_name(element: etree._Element) -> str:
    """The element's name as written in the text: ``prefix:local`` or ``local``."""
    local = etree.QName(element).localname
    return f"{element.prefix}:{local}" if element.prefix else local


class Locator:
    """Finds where elements and attributes of a parsed document start in its text.

    The index of start tags is built on first use (errors are rare, documents small).
    """

    __slots__ = ("_line_starts", "_root", "_starts", "_text")

    def __init__(self, text: str, root: etree._Element) -> None:
        self._text = text
        self._root = root
        self._starts: list[tuple[int, str]] | None = None
        self._line_starts: list[int] | None = None

    def _start_tags(self) -> list[tuple[int, str]]:
        if self._starts is None:
            self._starts = [
                (match.start(), match.group("start"))
                for match in _MARKUP.finditer(self._text)
                if match.group("start") is not None
            ]
        return self._starts

    def _position(self, offset: int) -> tuple[int, int]:
        if self._line_starts is None:
            starts = [0]
            starts.extend(m.end() for m in re.finditer("\n", self._text))
            self._line_starts = starts
        index = bisect.bisect_right(self._line_starts, offset) - 1
        return index + 1, offset - self._line_starts[index] + 1

    def _tag_offset(self, element: etree._Element) -> int | None:
        """Offset of the element's ``<``, or None if the text and tree disagree."""
        elements = (e for e in self._root.iter() if isinstance(e.tag, str))
        for index, candidate in enumerate(elements):
            if candidate is element:
                starts = self._start_tags()
                if index < len(starts) and starts[index][1] == qualified_name(element):
                    return starts[index][0]
                return None
        return None

    def locate(self, element: etree._Element, attribute: str | None = None) -> tuple[int, int]:
        """Return the (line, column) of `element`'s start tag, or of its `attribute`.

        Falls back to the element's start tag when the attribute is absent, and to the first
        column of lxml's ``sourceline`` when the tag cannot be found in the text.
        """
        offset = self._tag_offset(element)
        if offset is None:
            line = element.sourceline
            return (line if isinstance(line, int) and line > 0 else 1), 1
        if attribute is not None:
            position = offset + 1 + len(qualified_name(element))
            while (match := _ATTRIBUTE.match(self._text, position)) is not None:
                if match.group("name") == attribute:
                    return self._position(match.start("name"))
                position = match.end()
        return self._position(offset)
