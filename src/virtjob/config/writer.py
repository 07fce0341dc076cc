"""A tiny XML writer producing libvirt's style: two-space indent, single-quoted attributes.

The parsers read what it writes back to equal values: text escapes ``& < >`` and CR,
attribute values also escape both quotes, tab, LF and CR (which XML would otherwise turn
into spaces).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Node", "render"]

_TEXT_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})
_ATTRIBUTE_ESCAPES = str.maketrans(
    {
        "&": "&amp;",
        "<": "&lt;",
        ">": "&gt;",
        "'": "&apos;",
        '"': "&quot;",
        "\t": "&#9;",
        "\n": "&#10;",
        "\r": "&#13;",
    }
)


@dataclass(slots=True)
class Node:
    """An element to write: a tag, attributes in order, and either text or children."""

    tag: str
    attributes: dict[str, str] = field(default_factory=dict)
    text: str | None = None
    children: list[Node] = field(default_factory=list)

    def add(
        self, tag: str, attributes: dict[str, str] | None = None, text: str | None = None
    ) -> Node:
        """Append a child element and return it."""
        child = Node(tag, dict(attributes or {}), text)
        self.children.append(child)
        return child


def _lines(node: Node, depth: int, out: list[str]) -> None:
    indent = "  " * depth
    attributes = "".join(
        f" {name}='{value.translate(_ATTRIBUTE_ESCAPES)}'"
        for name, value in node.attributes.items()
    )
    if node.children:
        out.append(f"{indent}<{node.tag}{attributes}>")
        for child in node.children:
            _lines(child, depth + 1, out)
        out.append(f"{indent}</{node.tag}>")
    elif node.text is not None:
        text = node.text.translate(_TEXT_ESCAPES)
        out.append(f"{indent}<{node.tag}{attributes}>{text}</{node.tag}>")
    else:
        out.append(f"{indent}<{node.tag}{attributes}/>")


def render(root: Node) -> str:
    """Return the document rooted at `root`, pretty-printed, ending with a newline."""
    out: list[str] = []
    _lines(root, 0, out)
    return "\n".join(out) + "\n"
