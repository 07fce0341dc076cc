"""Paths as virtjob checks and shows them: the one home of these rules.

- `is_inside`: whether a resolved path is a directory or lies beneath it. File targets
  (`virtjob.files`), virtjobd's path policy and the QEMU driver's disk confinement all ask it.
- `printable` and `shown_path`: how a path (or any message) is written out. A path can hold
  bytes that are not UTF-8 (through ``surrogateescape``, or a JSON ``\\udcff`` escape); they
  are written as ``\\udcff`` escapes, so a message quoting such a path can always be encoded,
  sent and printed.
- `allowed_directory_itself`: the refusal of an allowed directory named as a file, worded
  the same wherever confinement is checked.
"""

from __future__ import annotations

import os

from virtjob.errors import InvalidArgError

__all__ = ["allowed_directory_itself", "is_inside", "is_text", "printable", "shown_path"]


def is_inside(path: str, directory: str) -> bool:
    """True when `path` is `directory` itself or lies beneath it.

    Both must be absolute and normalised (resolved, when symlinks matter): this compares
    text, it never looks at the file system. Raises nothing.
    """
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def is_text(text: str) -> bool:
    """True when `text` is valid text (UTF-8 can encode it: no lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable(text: str) -> str:
    """`text` with what UTF-8 cannot encode (lone surrogates) written as ``\\udcff`` escapes.

    Valid text comes back unchanged. Raises nothing.
    """
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def shown_path(path: str, real: str | None = None) -> str:
    """`path` for a message (`printable`), followed by ``(resolves to REAL)`` when `real`, its
    resolution, is given and differs from it. Raises nothing."""
    if real is None or real in (path, os.path.abspath(path)):
        return printable(path)
    return f"{printable(path)} (resolves to {printable(real)})"


def allowed_directory_itself(subject: str, path: str, real: str) -> InvalidArgError:
    """The error for `path` (resolving to `real`) that is an allowed directory, not a file in it.

    `subject` starts the message ("cannot write a save of domain 'x' to /p").
    """
    return InvalidArgError(
        f"{subject}: {shown_path(path, real)} is an allowed directory itself, not a file;"
        f" name a file inside it"
    )
