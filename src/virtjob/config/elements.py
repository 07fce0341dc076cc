"""Readers for the elements domain and network XML share: ``<name>`` and ``<uuid>``."""

from __future__ import annotations

import uuid

from lxml import etree

from virtjob.config.parser import Document
from virtjob.config.validate import check_name

__all__ = ["read_name", "read_uuid", "stripped_text"]


def stripped_text(element: etree._Element) -> str:
    """The element's text without surrounding whitespace ('' when it has none)."""
    return (element.text or "").strip()


def read_name(document: Document, parent: etree._Element, example: str) -> str:
    """Return the checked ``<name>`` of `parent`; raises `XMLError` if absent or invalid."""
    element = document.require_child(parent, "name", f"<name>{example}</name>")
    return document.check(element, None, lambda: check_name(stripped_text(element), "<name>"))


def read_uuid(document: Document, parent: etree._Element) -> uuid.UUID:
    """Return the ``<uuid>`` of `parent`, or a new random one when there is none.

    Raises `XMLError` when the text is not a UUID.
    """
    element = document.child(parent, "uuid")
    if element is None:
        return uuid.uuid4()
    text = stripped_text(element)
    try:
        return uuid.UUID(text)
    except ValueError as exc:
        raise document.error(
            element,
            f"<uuid> {text!r} is not a UUID; write 32 hex digits like "
            "'c7a5fdbd-edaf-9455-926a-d65c16db1809', or leave <uuid> out to get a new one",
        ) from exc
