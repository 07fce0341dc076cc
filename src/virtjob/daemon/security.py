"""Who may talk to virtjobd and which files it may touch on their behalf.

- `PathPolicy` confines save, restore and dump paths to the ``--allow-dir`` directories and
  keeps them out of the daemon's own files (`excluded`: the state directory, the socket).
  Paths are resolved with ``os.path.realpath`` first (symlinks and ``..`` included), so a
  symlink inside an allowed directory that points outside it, or into the state directory,
  is refused. Paths must be valid text (UTF-8 without lone surrogates).
- `resolve_private_dir` resolves a state or socket directory once and refuses one another
  user could change or redirect (a component or symlink on the way included);
  `make_private_dir` creates a missing one safely.
- `load_token` reads the bearer token from ``--token-file``; `token_matches` compares a
  presented token in constant time.
"""

from __future__ import annotations

import hmac
import os
import stat

from virtjob.errors import AccessDeniedError, InvalidArgError
from virtjob.paths import allowed_directory_itself, is_inside, is_text, shown_path

MIN_TOKEN_LENGTH = 16


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
                        f" write; give a directory outside it, or STATE_DIR/files or one"
                        f" beneath it (clients' default without --allow-dir)"
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

        Raises `InvalidArgError` for a relative, malformed or non-UTF-8 path or an allowed
        directory itself, `AccessDeniedError` for one outside every allowed directory or inside
        an excluded one (the daemon's state directory). `what` names the use in messages
        ("save file").
        """
        if not isinstance(path, str) or not path or "\0" in path:
            raise InvalidArgError(f"the {what} path {path!r} is not a valid file path")
        if not is_text(path):
            raise InvalidArgError(
                f"the {what} path {shown_path(path)} is not valid UTF-8 text (it holds bytes"
                f" that are not characters); give the path as text, e.g. rename the file or"
                f" directory to a UTF-8 name"
            )
        if not os.path.isabs(path):
            raise InvalidArgError(
                f"the {what} path {shown_path(path)} is relative; give an absolute path (the"
                f" daemon does not know the client's working directory)"
            )
        try:
            real = os.path.realpath(path)
        except (OSError, ValueError) as exc:
            raise InvalidArgError(
                f"the {what} path {shown_path(path)} cannot be resolved: {exc}"
            ) from exc
        if real in self.dirs:
            raise allowed_directory_itself(f"bad {what} path", path, real)
        where = shown_path(path, real)
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


MAX_SYMLINKS = 40
"""Symlinks `resolve_private_dir` follows on one path before it gives up (as the kernel)."""


class _Walk:
    """One resolution of a path, component by component, checking what could be changed.

    Like ``ssh``'s StrictModes: a directory on the way must belong to root or this process's
    user and be writable by nobody else, unless it is sticky (like ``/tmp``: there nobody
    else can remove or rename what is not theirs); a symlink on the way must belong to root
    or this user. Otherwise another user could swap a directory or re-point a link, and the
    path would lead elsewhere the next time it is used.
    """

    def __init__(self, path: str, what: str) -> None:
        self.path = path
        self.what = what
        self.uid = os.geteuid()
        self.links = 0
        self.problems: list[str] = []
        """Why components met on the way are unsafe (messages), in the order met."""

    def resolve(self, path: str) -> str:
        """The real path of `path` (absolute), symlinks followed, every component checked.

        Unsafe components are listed in `problems`; raises `InvalidArgError` only for a path
        that does not resolve to a directory (missing, not a directory, a symlink loop).
        """
        current = "/"
        self._check_dir(current, self.lstat(current))
        for part in path.split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                current = os.path.dirname(current)  # `current` is real: no link to undo
                continue
            candidate = os.path.join(current, part)
            info = self.lstat(candidate)
            if stat.S_ISLNK(info.st_mode):
                self._check_link(candidate, info)
                current = self.resolve(os.path.join(current, self._readlink(candidate)))
            elif stat.S_ISDIR(info.st_mode):
                self._check_dir(candidate, info)
                current = candidate
            else:
                raise InvalidArgError(
                    f"cannot use {self.path} as the {self.what}: {candidate} is not a"
                    f" directory; give a directory"
                )
        return current

    def lstat(self, path: str) -> os.stat_result:
        """`os.lstat`; `InvalidArgError` naming the component if it fails."""
        try:
            return os.lstat(path)
        except OSError as exc:
            raise InvalidArgError(
                f"cannot use {self.path} as the {self.what}: {path}: {exc.strerror}"
            ) from exc

    def _readlink(self, link: str) -> str:
        try:
            return os.readlink(link)
        except OSError as exc:
            raise InvalidArgError(
                f"cannot use {self.path} as the {self.what}: {link}: {exc.strerror}"
            ) from exc

    def _owner_ok(self, info: os.stat_result) -> bool:
        return info.st_uid in (self.uid, 0)

    def _check_link(self, link: str, info: os.stat_result) -> None:
        self.links += 1
        if self.links > MAX_SYMLINKS:
            raise InvalidArgError(
                f"cannot use {self.path} as the {self.what}: more than {MAX_SYMLINKS} symlinks"
                f" on the way (a loop?); give the real directory"
            )
        if not self._owner_ok(info):
            self.problems.append(
                f"the {self.what} {self.path}: the symlink {link} belongs to uid"
                f" {info.st_uid}, who may be able to point it elsewhere; give the directory"
                f" it leads to ({os.path.realpath(link)}) instead, or replace the link with"
                f" one of root or uid {self.uid}"
            )

    def _check_dir(self, directory: str, info: os.stat_result) -> None:
        mode = stat.S_IMODE(info.st_mode)
        shared = mode & (stat.S_IWGRP | stat.S_IWOTH) and not mode & stat.S_ISVTX
        if self._owner_ok(info) and not shared:
            return
        who = (
            f"belongs to uid {info.st_uid}" if not self._owner_ok(info) else "is writable by others"
        )
        self.problems.append(
            f"the {self.what} {self.path}: {directory} {who} (owner uid {info.st_uid}, mode"
            f" {mode:04o}), so another user could move what lies in it and put their own in"
            f" its place; give a {self.what} whose every parent directory belongs to root or"
            f" uid {self.uid} and is writable by nobody else (or is sticky, like /tmp)"
        )


def resolve_private_dir(path: str, what: str, *, sticky_ok: bool = False) -> str:
    """The real path of directory `path`, refused if another user could change where it leads.

    `path` (absolute) is resolved once, component by component: every directory on the way
    must belong to root or this process's user and be writable by nobody else unless sticky
    (``/tmp``), every symlink followed must belong to root or this user, and the directory
    itself must belong to root or this user and be writable by nobody else. With `sticky_ok`
    (a socket's directory) a sticky world-writable directory like ``/tmp`` is accepted as the
    directory itself too: there nobody else can remove or replace the daemon's file. The
    caller uses the returned path from then on, never `path` again. `what` names its use in
    messages ("state directory"). Raises `InvalidArgError` naming the offending component and
    saying how to fix it.
    """
    walk = _Walk(path, what)
    real = walk.resolve(os.path.abspath(path))
    info = walk.lstat(real)
    uid = walk.uid
    mode = stat.S_IMODE(info.st_mode)
    sticky = sticky_ok and bool(mode & stat.S_ISVTX)
    owner_ok = info.st_uid in (uid, 0)
    if not owner_ok or (mode & (stat.S_IWGRP | stat.S_IWOTH) and not sticky):
        who = f"belongs to uid {info.st_uid}" if not owner_ok else "is writable by others"
        where = path if real == path else f"{path} (resolves to {real})"
        raise InvalidArgError(
            f"the {what} {where} {who} (owner uid {info.st_uid}, mode {mode:04o}), so another"
            f" user could replace virtjobd's files or socket in it; give a fresh directory"
            f" (virtjobd creates it with mode 0700), or run: chown {uid} {path} &&"
            f" chmod 700 {path}"
        )
    if walk.problems:  # the directory itself is fine: something on the way is not
        raise InvalidArgError(walk.problems[0])
    return real


def make_private_dir(path: str, what: str) -> str:
    """Create directory `path` (mode 0700, parents too) unless it exists; return its real path.

    The deepest existing ancestor is checked first as `resolve_private_dir` checks a parent
    (so nothing is created under a directory another user controls), the missing part is
    created beneath its real path, then the whole is checked. Raises `InvalidArgError` for an
    unsafe component or a directory that cannot be created.
    """
    path = os.path.abspath(path)
    existing = path
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    if existing != path:
        walk = _Walk(path, what)
        base = walk.resolve(existing)
        if walk.problems:
            raise InvalidArgError(walk.problems[0])
        try:
            os.makedirs(os.path.join(base, os.path.relpath(path, existing)), mode=0o700)
        except FileExistsError:
            pass  # made meanwhile: checked below like any existing directory
        except OSError as exc:
            raise InvalidArgError(
                f"cannot create the {what} {path}: {exc.strerror}; create it (mode 0700) or"
                f" give another one"
            ) from exc
    return resolve_private_dir(path, what)


def load_token(path: str) -> str:
    """Read a bearer token from `path`: one line of at least 16 characters.

    Raises `InvalidArgError` if the file is missing, empty, too short or readable by others.
    """
    try:
        info = os.stat(path)
        with open(path, encoding="utf-8") as handle:
            token = handle.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidArgError(f"cannot read the token file {path}: {exc}") from exc
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
