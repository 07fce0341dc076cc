"""Keys a user names objects by (domain and network names or UUIDs, job ids), checked before
they become a segment of a request's path.

Some keys cannot name anything, and sending them would go wrong rather than simply find
nothing: a ``/`` (escaped as ``%2F``, which a server may decode before routing, so that
``id/wait`` reaches another route), ``.`` or ``..`` (which URL clients resolve away unless
escaped, and virtjobd refuses even escaped), a key too long for a URL, or text with no UTF-8
form (a lone surrogate). No domain, network or job can have such a key: a name is at most 64
characters, without ``/`` and not starting with ``.`` (`virtjob.config.validate.check_name`;
names become file names), a UUID at most 45 (``urn:uuid:`` and 36), a job id 12 hex digits.
The remote driver answers such a lookup as a local driver does, "no such object", and says
why, without asking the daemon.
"""

from __future__ import annotations

MAX_KEY_LENGTH = 64
"""Longest key sent: `virtjob.config.validate.MAX_NAME_LENGTH`, more than a UUID or a job id."""


def key_problem(key: str, what: str) -> str | None:
    """Why no object can have `key`, or None if one may; `what` names such keys in the answer
    ("domain name or UUID", "job id")."""
    if len(key) > MAX_KEY_LENGTH:
        return f"no {what} is longer than {MAX_KEY_LENGTH} characters"
    if "/" in key:
        return f"no {what} can hold '/'"
    if key in (".", ".."):
        return f"no {what} is '.' or '..'"
    if not key.isascii():
        try:
            key.encode()
        except UnicodeEncodeError as exc:
            char = ord(key[exc.start])
            return f"it holds a lone surrogate (U+{char:04X}), which no {what} can hold"
    return None


def shown(key: str) -> str:
    """`key` as an error message shows it: quoted, and cut short if it is long."""
    if len(key) > MAX_KEY_LENGTH:
        return f"{key[:MAX_KEY_LENGTH]!r}... ({len(key)} characters)"
    return repr(key)
