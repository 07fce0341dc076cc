"""Hardened parsing of domain and network XML, and errors that point into the document.

`parse_document` refuses, before lxml sees a byte of it, a document over `MAX_DOCUMENT_SIZE`,
one that is not UTF-8, and one carrying a DOCTYPE or an entity declaration (the "billion
laughs" and external-entity attacks need one). lxml then parses with entity expansion, DTD
loading and network access off. Every problem becomes an `XMLError` with a 1-based line and
column; `Document` offers the small reading helpers the domain and network parsers share.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

from lxml import etree

from virtjob.config.location import Locator, line_column, qualified_name
from virtjob.config.validate import InvalidValue
from virtjob.errors import InvalidArgError, XMLError

__all__ = ["MAX_DOCUMENT_SIZE", "Document", "parse_document", "xml_error"]

MAX_DOCUMENT_SIZE = 1024 * 1024
"""Largest document accepted, in bytes of UTF-8 (1 MiB)."""

_T = TypeVar("_T")
_SPECIAL = re.compile(r"<[!?]")
_LXML_POSITION = re.compile(r", line \d+, column \d+$")


def xml_error(message: str, line: int, column: int) -> XMLError:
    """Build an `XMLError` whose message starts with its line and column."""
    return XMLError(f"line {line}, column {column}: {message}", line, column)


def _too_large(size: int, prefix: str) -> XMLError:
    line, column = line_column(prefix, len(prefix))
    return xml_error(
        f"the document is {size} bytes, over the {MAX_DOCUMENT_SIZE}-byte (1 MiB) limit, "
        "which it passes here; domain and network documents are much smaller, so check "
        "that this is the right file",
        line,
        column,
    )


def _decode(data: str | bytes) -> tuple[str, bytes]:
    """Return the document as text and as UTF-8 bytes, refusing one over 1 MiB or not UTF-8."""
    if isinstance(data, str):
        if len(data) > MAX_DOCUMENT_SIZE:  # more characters than bytes allowed
            raise _too_large(len(data.encode("utf-8", "replace")), data[:MAX_DOCUMENT_SIZE])
        text = data.removeprefix("\ufeff")
        try:
            encoded = text.encode("utf-8")
        except UnicodeEncodeError as exc:
            line, column = line_column(text, exc.start)
            raise xml_error(
                f"the text holds a lone surrogate (U+{ord(text[exc.start]):04X}), which is not "
                "a character; fix how the document was decoded",
                line,
                column,
            ) from exc
        if len(encoded) > MAX_DOCUMENT_SIZE:
            prefix = encoded[:MAX_DOCUMENT_SIZE].decode("utf-8", "ignore")
            raise _too_large(len(encoded), prefix)
        return text, encoded
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidArgError(
            f"an XML document must be str or bytes, not {type(data).__name__}; "
            "pass the document's text"
        )
    raw = bytes(data)
    if len(raw) > MAX_DOCUMENT_SIZE:
        raise _too_large(len(raw), raw[:MAX_DOCUMENT_SIZE].decode("utf-8", "replace"))
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        good = raw[: exc.start].decode("utf-8-sig", "replace")
        line, column = line_column(good, len(good))
        raise xml_error(
            f"byte 0x{raw[exc.start]:02x} is not valid UTF-8; save the document as UTF-8",
            line,
            column,
        ) from exc
    return text, text.encode("utf-8")


def _refuse_declarations(text: str) -> None:
    """Refuse a DOCTYPE or ENTITY declaration outside comments, CDATA and instructions."""
    position = 0
    while (match := _SPECIAL.search(text, position)) is not None:
        start = match.start()
        if text.startswith("<?", start):
            end, skip = text.find("?>", start + 2), 2
        elif text.startswith("<!--", start):
            end, skip = text.find("-->", start + 4), 3
        elif text.startswith("<![CDATA[", start):
            end, skip = text.find("]]>", start + 9), 3
        else:
            keyword = text[start + 2 : start + 9].upper()
            if keyword.startswith(("DOCTYPE", "ENTITY")):
                line, column = line_column(text, start)
                raise xml_error(
                    f"a <!{'DOCTYPE' if keyword.startswith('DOCTYPE') else 'ENTITY'}> "
                    "declaration "
                    "is not allowed: DTDs and entities can read local files or expand to "
                    "gigabytes; remove the declaration and write the values out",
                    line,
                    column,
                )
            end, skip = start + 2, 0
        if end < 0:
            return  # unterminated: lxml reports it as malformed
        position = end + skip


def _new_parser() -> etree.XMLParser:
    """A fresh hardened parser (parsers must not be shared between threads)."""
    return etree.XMLParser(
        encoding="utf-8",
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_blank_text=False,
        collect_ids=False,
    )


def parse_document(data: str | bytes, root_tag: str) -> Document:
    """Parse `data` safely and check that its root element is `root_tag`.

    Raises `XMLError` (with line and column) for a document over 1 MiB, not UTF-8, carrying a
    DOCTYPE or entity declaration, not well-formed, or with another root element;
    `InvalidArgError` when `data` is neither str nor bytes.
    """
    text, encoded = _decode(data)
    _refuse_declarations(text)
    try:
        root = etree.fromstring(encoded, _new_parser())
    except etree.XMLSyntaxError as exc:
        line, column = exc.position
        reason = _LXML_POSITION.sub("", exc.msg or "syntax error")
        raise xml_error(
            f"malformed XML: {reason}; fix the document so it is well-formed XML",
            max(line, 1),
            max(column, 1),
        ) from exc
    doctype: str = getattr(root.getroottree().docinfo, "doctype", "")
    if doctype:
        raise xml_error("a <!DOCTYPE> declaration is not allowed; remove it", 1, 1)
    document = Document(text, root)
    if root.tag != root_tag:
        name = etree.QName(root).text if isinstance(root.tag, str) else "?"
        raise document.error(
            root,
            f"the root element is <{name}>, expected <{root_tag}>; pass a {root_tag} document here",
        )
    return document


class Document:
    """A parsed, hardened document: its text, root element and helpers that raise `XMLError`.

    Errors about an attribute point at the attribute; others at the element's start tag.
    """

    __slots__ = ("_locator", "root", "text")

    def __init__(self, text: str, root: etree._Element) -> None:
        self.text = text
        self.root = root
        self._locator = Locator(text, root)

    def error(
        self, element: etree._Element, message: str, attribute: str | None = None
    ) -> XMLError:
        """Build (not raise) an `XMLError` located at `element` or its `attribute`."""
        line, column = self._locator.locate(element, attribute)
        return xml_error(message, line, column)

    def children(self, parent: etree._Element, tag: str) -> list[etree._Element]:
        """Return every child of `parent` named `tag` (``{namespace}local`` for namespaces)."""
        return [child for child in parent if child.tag == tag]

    def child(self, parent: etree._Element, tag: str) -> etree._Element | None:
        """Return the only child named `tag`, or None; raises `XMLError` if there are two."""
        found = self.children(parent, tag)
        if len(found) > 1:
            raise self.error(
                found[1],
                f"<{qualified_name(found[1])}> appears more than once in "
                f"<{qualified_name(parent)}>; keep only one",
            )
        return found[0] if found else None

    def require_child(self, parent: etree._Element, tag: str, hint: str) -> etree._Element:
        """Return the only child named `tag`; raises `XMLError` (with `hint`) if it is absent."""
        found = self.child(parent, tag)
        if found is None:
            raise self.error(
                parent, f"<{qualified_name(parent)}> has no <{tag}> element; add {hint}"
            )
        return found

    def require_attribute(self, element: etree._Element, name: str, hint: str) -> str:
        """Return attribute `name` of `element`; raises `XMLError` (with `hint`) if absent."""
        value = element.get(name)
        if value is None:
            raise self.error(
                element,
                f"<{qualified_name(element)}> has no {name}= attribute; add one, e.g. {hint}",
            )
        return value

    def check(
        self,
        element: etree._Element,
        attribute: str | None,
        checker: Callable[[], _T],
    ) -> _T:
        """Run `checker`, turning its `InvalidValue` or `InvalidArgError` into an `XMLError`.

        The error is located at `element`, or at its `attribute` when given.
        """
        try:
            return checker()
        except (InvalidValue, InvalidArgError) as exc:
            raise self.error(element, str(exc), attribute) from exc
