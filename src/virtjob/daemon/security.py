"""Who may talk to virtjobd and which files it may touch on their behalf.

- `PathPolicy` confines save, restore and dump paths to the ``--allow-dir`` directories and
  keeps them out of the daemon's own files (`excluded`: the state directory, the socket).
  Paths are resolved with ``os.path.realpath`` first (symlinks and ``..`` included), so a
  symlink inside an allowed directory that points outside it, or into the state directory,
  is refused. Paths must be valid text (UTF-8 without lone surrogates).
- `check_private_dir` refuses a state or socket directory another user could change.
- `load_token` reads the bearer token from ``--token-file``; `token_matches` compares a
  presented token in constant time.
"""

from __future__ import annotations

import hmac
import os
import stat

from virtjob.errors import AccessDeniedError, InvalidArgError

MIN_TOKEN_LENGTH = 16


def shown(text: str) -> str:
    """`text` quoted for a message, with characters that are not valid text escaped.

    A path can hold lone surrogates (bytes that are not UTF-8, through ``surrogateescape``
    or a JSON ``\\udcff`` escape); they are shown as ``\\udcff``, so a message quoting such a
    path can always be encoded and printed.
    """
    return repr(text) if not _is_text(text) else f"'{text}'"


def _is_text(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def is_inside(path: str, directory: str) -> bool:
    """True when the resolved `path` is `directory` or lies beneath it (both absolute)."""
    return path == directory or path.startswith(directory.rstrip("/") + "/")


class PathPolicy:
    """The directories clients may read and write files in, resolved once at start-up.

    `excluded` paths (the state directory, the unix socket) are never valid, even inside an
    allowed directory. Only a directory of `carve_outs` (``STATE_DIR/files``) may be allowed
    inside an excluded one, and then no allowed directory may contain that excluded one.
    """

    def __init__(
        self,
        allow_dirs: list[str],
        excluded: tuple[str, ...] = (),
        carve_outs: tuple[str, ...] = (),
    ) -> None:
        """Raises `InvalidArgError` if a directory does not exist or lies inside an excluded
        path (other than a carve-out), or if the directories contradict each other."""
        resolved: list[str] = []
        for directory in allow_dirs:
            real = os.path.realpath(directory)
            if not os.path.isdir(real):
                raise InvalidArgError(
                    f"--allow-dir {directory} is not a directory; create it first"
                )
            resolved.append(real)
        self.dirs = tuple(dict.fromkeys(resolved))
        carved = tuple(os.path.realpath(path) for path in carve_outs)
        self.all_excluded = tuple(dict.fromkeys(os.path.realpath(path) for path in excluded))
        effective: list[str] = []
        for path in self.all_excluded:
            inner = [d for d in self.dirs if is_inside(d, path)]
            for directory in inner:
                if directory == path or not any(is_inside(directory, c) for c in carved):
                    raise InvalidArgError(
                        f"--allow-dir {directory} lies inside virtjobd's own {path} (its"
                        f" database, lock, socket and host state), where clients may never"
                        f" write; give a directory outside it (without --allow-dir, clients"
                        f" get STATE_DIR/files)"
                    )
            outer = [d for d in self.dirs if is_inside(path, d) and d not in inner]
            if inner and outer:
                raise InvalidArgError(
                    f"--allow-dir {outer[0]} contains virtjobd's own {path} while --allow-dir"
                    f" {inner[0]} lies inside it; give directories outside {path} only"
                )
            if not inner:
                effective.append(path)
        self.excluded = tuple(effective)
        """Resolved paths never valid as a file although inside an allowed directory."""

    def _allowed(self, real: str) -> bool:
        """True when `real` lies beneath an allowed directory and no excluded path."""
        if any(is_inside(real, excluded) for excluded in self.excluded):
            return False
        return any(is_inside(real, d) and real != d for d in self.dirs)

    def check(self, path: str, what: str) -> str:
        """Return `path` resolved (symlinks, ``..``) if it lies inside an allowed directory.

        Raises `InvalidArgError` for a relative, malformed or non-UTF-8 path,
        `AccessDeniedError` for one outside every allowed directory or inside an excluded one
        (the daemon's state directory). `what` names the use in messages ("save file").
        """
        if not isinstance(path, str) or not path or "\0" in path:
            raise InvalidArgError(f"the {what} path {path!r} is not a valid file path")
        if not _is_text(path):
            raise InvalidArgError(
                f"the {what} path {shown(path)} is not valid UTF-8 text (it holds bytes that"
                f" are not characters); give the path as text, e.g. rename the file or"
                f" directory to a UTF-8 name"
            )
        if not os.path.isabs(path):
            raise InvalidArgError(
                f"the {what} path {shown(path)} is relative; give an absolute path (the daemon"
                f" does not know the client's working directory)"
            )
        try:
            real = os.path.realpath(path)
        except (OSError, ValueError) as exc:
            raise InvalidArgError(
                f"the {what} path {shown(path)} cannot be resolved: {exc}"
            ) from exc
        where = shown(path) if real == path else f"{shown(path)} (resolves to {shown(real)})"
        for excluded in self.all_excluded:
            if is_inside(real, excluded) and not self._allowed(real):
                raise AccessDeniedError(
                    f"the {what} path {where} is inside {excluded}, virtjobd's own state"
                    f" directory or socket, which is never a valid {what}; use a path in"
                    f" {', '.join(self.dirs)} outside it"
                )
        if self._allowed(real):
            return real
        allowed = ", ".join(self.dirs) or "(none)"
        raise AccessDeniedError(
            f"the {what} path {where} is outside the directories this daemon may use"
            f" ({allowed}); use a path inside one of them, or start virtjobd with"
            f" --allow-dir for the directory you need"
        )


def check_private_dir(path: str, what: str, *, sticky_ok: bool = False) -> None:
    """Refuse a directory another user could change: `InvalidArgError` saying how to fix it.

    `path` must be a directory owned by this process's user (or root) that neither its group
    nor others may write to; `what` names its use in the message ("state directory").
    With `sticky_ok` (a socket's directory) a sticky world-writable directory like ``/tmp`` is
    accepted too: there nobody else can remove or replace the daemon's file.
    """
    try:
        info = os.stat(path)
    except OSError as exc:
        raise InvalidArgError(f"cannot use {path} as the {what}: {exc.strerror}") from exc
    if not stat.S_ISDIR(info.st_mode):
        raise InvalidArgError(f"the {what} {path} is not a directory; give a directory")
    uid = os.geteuid()
    mode = stat.S_IMODE(info.st_mode)
    sticky = sticky_ok and bool(mode & stat.S_ISVTX)
    owner_ok = info.st_uid in (uid, 0)
    if not owner_ok or (mode & (stat.S_IWGRP | stat.S_IWOTH) and not sticky):
        who = f"belongs to uid {info.st_uid}" if not owner_ok else "is writable by others"
        raise InvalidArgError(
            f"the {what} {path} {who} (owner uid {info.st_uid}, mode {mode:04o}), so another"
            f" user could replace virtjobd's files or socket in it; give a fresh directory"
            f" (virtjobd creates it with mode 0700), or run: chown {uid} {path} &&"
            f" chmod 700 {path}"
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
