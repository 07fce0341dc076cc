"""Who may talk to virtjobd and which files it may touch on their behalf.

- `PathPolicy` confines save, restore and dump paths to the ``--allow-dir`` directories.
  Paths are resolved with ``os.path.realpath`` first (symlinks and ``..`` included), so a
  symlink inside an allowed directory that points outside it is refused.
- `load_token` reads the bearer token from ``--token-file``; `token_matches` compares a
  presented token in constant time.
"""

from __future__ import annotations

import hmac
import os
import stat

from virtjob.errors import AccessDeniedError, InvalidArgError

MIN_TOKEN_LENGTH = 16


class PathPolicy:
    """The directories clients may read and write files in, resolved once at start-up."""

    def __init__(self, allow_dirs: list[str]) -> None:
        """Raises `InvalidArgError` if a directory does not exist."""
        resolved: list[str] = []
        for directory in allow_dirs:
            real = os.path.realpath(directory)
            if not os.path.isdir(real):
                raise InvalidArgError(
                    f"--allow-dir {directory} is not a directory; create it first"
                )
            resolved.append(real)
        self.dirs = tuple(dict.fromkeys(resolved))

    def check(self, path: str, what: str) -> str:
        """Return `path` resolved (symlinks, ``..``) if it lies inside an allowed directory.

        Raises `InvalidArgError` for a relative or malformed path, `AccessDeniedError` for one
        outside every allowed directory. `what` names the use in messages ("save file").
        """
        if not isinstance(path, str) or not path or "\0" in path:
            raise InvalidArgError(f"the {what} path {path!r} is not a valid file path")
        if not os.path.isabs(path):
            raise InvalidArgError(
                f"the {what} path {path!r} is relative; give an absolute path (the daemon"
                f" does not know the client's working directory)"
            )
        try:
            real = os.path.realpath(path)
        except (OSError, ValueError) as exc:
            raise InvalidArgError(f"the {what} path {path!r} cannot be resolved: {exc}") from None
        for directory in self.dirs:
            if real == directory or real.startswith(directory.rstrip("/") + "/"):
                if real == directory:
                    break  # the directory itself is never a file
                return real
        allowed = ", ".join(self.dirs) or "(none)"
        shown = path if real == path else f"{path} (resolves to {real})"
        raise AccessDeniedError(
            f"the {what} path {shown} is outside the directories this daemon may use"
            f" ({allowed}); use a path inside one of them, or start virtjobd with"
            f" --allow-dir for the directory you need"
        )


def load_token(path: str) -> str:
    """Read a bearer token from `path`: one line of at least 16 characters.

    Raises `InvalidArgError` if the file is missing, empty, too short or readable by others.
    """
    try:
        info = os.stat(path)
        with open(path, encoding="utf-8") as handle:
            token = handle.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidArgError(f"cannot read the token file {path}: {exc}") from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InvalidArgError(
            f"the token file {path} is accessible to other users (mode"
            f" {stat.S_IMODE(info.st_mode):o}); run chmod 600 {path}"
        )
    if len(token) < MIN_TOKEN_LENGTH or any(c.isspace() for c in token):
        raise InvalidArgError(
            f"the token file {path} must hold one token of at least {MIN_TOKEN_LENGTH}"
            f" non-blank characters, e.g. from: python -c 'import secrets;"
            f" print(secrets.token_urlsafe(32))'"
        )
    return token


def token_matches(expected: bytes, authorization: bytes | None) -> bool:
    """True when an ``Authorization: Bearer TOKEN`` header value carries `expected`.

    The comparison takes the same time wherever the tokens differ (`hmac.compare_digest`).
    """
    if authorization is None:
        return False
    scheme, _, presented = authorization.partition(b" ")
    if scheme.lower() != b"bearer":
        return False
    return hmac.compare_digest(presented.strip(), expected)
