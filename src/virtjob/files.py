"""Race-free opening of the files jobs write and read: save and dump targets, restore sources.

A path is resolved once (``os.path.realpath``: symlinks and ``..`` followed, so a symlink to a
regular file is fine), checked against the host's `Confinement` if it has one, then opened by
walking that resolved path from ``/`` one component at a time, each opened relative to the one
before it with ``O_NOFOLLOW``. No symlink is followed during the walk, so what is opened is
exactly the resolved path that was checked: a directory swapped for a symlink after the check
is refused, never followed. Jobs do this twice: when the job is requested (to refuse a bad
path at once) and again when the job starts.

Targets (`Target`): only a regular file, or nothing, may be at a target; anything else (device,
FIFO, socket, directory) is refused with `InvalidArgError`. A target is written as a *partial
file* beside it (`partial_name`: a fixed-length hidden name, so any legal target name works),
locked with ``flock`` while it is written, then renamed over the target. A partial of the same
target that nobody holds locked was left by a crashed writer and is removed
(`remove_stale_partials`).

Sources (`open_source`): must be regular files; they are opened with ``O_NONBLOCK`` so that a
FIFO is refused at once instead of blocking the caller.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import os
import secrets
import stat
from types import TracebackType
from typing import TYPE_CHECKING, Self

from virtjob.errors import AccessDeniedError, InvalidArgError, VirtError
from virtjob.paths import allowed_directory_itself, is_inside, shown_path

if TYPE_CHECKING:
    from virtjob.drivers.base import Confinement

__all__ = [
    "PARTIAL_MARK",
    "Target",
    "check_target",
    "open_source",
    "partial_name",
    "partial_prefix",
    "remove_stale_partials",
]

log = logging.getLogger("virtjob.files")

PARTIAL_MARK = ".virtjob-partial-"
"""Every partial file's name starts with this."""
_HASH_CHARS = 16
_RANDOM_BYTES = 4
_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def partial_prefix(name: str) -> str:
    """The start of the name of every partial file of a target called `name` (a base name).

    It is derived from a hash of `name`, so it has the same short length for any target.
    """
    digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:_HASH_CHARS]
    return f"{PARTIAL_MARK}{digest}-"


def partial_name(name: str) -> str:
    """A fresh hidden name (42 characters) for writing the target called `name` beside it."""
    return partial_prefix(name) + secrets.token_hex(_RANDOM_BYTES)


def _is_partial_of(entry: str, name: str) -> bool:
    """Whether `entry` is the name of a partial file of the target `name` (or a legacy one)."""
    for prefix in (
        partial_prefix(name),
        f".{name}{PARTIAL_MARK}",
    ):  # the second: earlier versions' names
        rest = entry[len(prefix) :]
        if entry.startswith(prefix) and len(rest) == 2 * _RANDOM_BYTES:
            return all(c in "0123456789abcdef" for c in rest)
    return False


def _kind(mode: int) -> str:
    """What a file of `mode` is, in words."""
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISBLK(mode):
        return "block device"
    if stat.S_ISFIFO(mode):
        return "FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "regular file" if stat.S_ISREG(mode) else "special file"


def _followed(path: str, real: str, subject: str) -> os.stat_result | None:
    """What `path` leads to when the kernel follows it (magic ``/proc/*/fd`` links included),
    None if nothing is there. Refuses a symlink that leads nowhere: writing through it would
    create a file somewhere the caller did not name (for ``/dev/stdout`` on a pipe, ``realpath``
    gives a made-up ``pipe:[N]`` name).
    """
    try:
        return os.stat(path)
    except (OSError, ValueError):
        pass
    if os.path.islink(path):
        raise InvalidArgError(
            f"{subject}: it is a symlink to {real}, which does not exist; give the path of the"
            f" file itself"
        )
    return None


def _resolve(path: str, confinement: Confinement | None, subject: str) -> str:
    """Resolve `path` to an absolute path without symlinks and check it against `confinement`.

    `subject` starts the messages ("cannot write a save of domain 'x' to /p"). Raises
    `InvalidArgError` for a path that cannot be resolved, `AccessDeniedError` for one outside
    `confinement.dirs` or inside `confinement.excluded`.
    """
    try:
        real = os.path.realpath(path)
    except (OSError, ValueError) as exc:
        raise InvalidArgError(f"{subject}: the path cannot be resolved: {exc}") from exc
    if confinement is None:
        return real
    for excluded in confinement.excluded:
        for form in {os.path.abspath(excluded), os.path.realpath(excluded)}:
            if is_inside(real, form):
                raise AccessDeniedError(
                    f"{subject}: {shown_path(path, real)} is inside {excluded}, which this host"
                    f" never lets a job touch (it holds the daemon's own state); use a path"
                    f" elsewhere"
                )
    # The dirs are taken as given (resolved by whoever confined the host): resolving them again
    # here would follow a symlink that replaced one of them.
    for directory in confinement.dirs:
        base = os.path.abspath(directory)
        if real == base:
            raise allowed_directory_itself(subject, path, real)
        if is_inside(real, base):
            return real
    allowed = ", ".join(confinement.dirs) or "(none)"
    raise AccessDeniedError(
        f"{subject}: {shown_path(path, real)} is outside the directories this host may use"
        f" ({allowed}); use a path inside one of them"
    )


class _WalkError(Exception):
    """Opening the directory `at` failed: `reason` is "missing", "file", "symlink" or "denied"."""

    def __init__(self, reason: str, at: str, cause: OSError) -> None:
        super().__init__(reason, at)
        self.reason = reason
        self.at = at
        self.cause = cause


def _open_directory(directory: str) -> int:
    """Open the absolute, resolved `directory` without following any symlink; return its fd.

    The fd is readable (for listing and fsync) when the directory allows it, else ``O_PATH``.
    Raises `_WalkError` naming the component that is missing, not a directory, or a symlink.
    """
    fd = os.open("/", _DIR_FLAGS)
    try:
        walked = ""
        for part in directory.split("/"):
            if not part:
                continue
            walked = f"{walked}/{part}"
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                raise _walk_error(exc, fd, part, walked) from exc
            os.close(fd)
            fd = child
        try:
            readable = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
        except OSError:
            return fd  # searchable but not readable: stale partials cannot be listed
        os.close(fd)
        return readable
    except BaseException:
        os.close(fd)
        raise


def _walk_error(exc: OSError, parent: int, part: str, walked: str) -> _WalkError:
    if exc.errno == errno.ENOENT:
        return _WalkError("missing", walked, exc)
    if exc.errno in (errno.ENOTDIR, errno.ELOOP):
        try:
            mode = os.stat(part, dir_fd=parent, follow_symlinks=False).st_mode
        except OSError:
            return _WalkError("missing", walked, exc)
        return _WalkError("symlink" if stat.S_ISLNK(mode) else "file", walked, exc)
    return _WalkError("denied", walked, exc)


def _changed(subject: str, at: str, confinement: Confinement | None) -> VirtError:
    """The error for a path that changed (a symlink appeared) while it was being opened."""
    message = (
        f"{subject}: {at} became a symlink while the path was being opened (the path changed"
        f" after it was checked); give a path whose directories stay put"
    )
    return AccessDeniedError(message) if confinement is not None else InvalidArgError(message)


def _not_regular(subject: str, mode: int) -> InvalidArgError:
    """The refusal of a target that is a `mode` kind of file, not a regular one."""
    kind = _kind(mode)
    hint = (
        "name a file"
        if kind == "directory"
        else "a save or dump only writes regular files: name a new file or a regular one"
    )
    return InvalidArgError(f"{subject}: it is a {kind}; {hint}")


class Target:
    """A save or dump target, resolved, checked, and with its directory held open.

    `path` is the path as given, `real` its resolution, `name` the target's name in its
    directory, `dir_fd` that directory (opened race-free), `existing` the status of the regular
    file already at the target (None when there is none). Close it (or use ``with``) to release
    the directory.
    """

    def __init__(self, path: str, what: str, confinement: Confinement | None = None) -> None:
        """Resolve and check `path` as the target of `what` ("a save of domain 'x'").

        Raises `InvalidArgError` when the target's directory is missing or not writable, or
        something other than a regular file is at the target; `AccessDeniedError` when the host
        is confined and the path is outside its directories, or changed while it was opened.
        """
        self.path = path
        self.what = what
        self.confinement = confinement
        self.subject = f"cannot write {what} to {path}"
        self.real = _resolve(path, confinement, self.subject)
        followed = _followed(path, self.real, self.subject)
        if followed is not None and not stat.S_ISREG(followed.st_mode):
            shown = shown_path(path, self.real)
            raise _not_regular(f"cannot write {what} to {shown}", followed.st_mode)
        directory, self.name = os.path.split(self.real)
        if not self.name:  # the root directory
            raise InvalidArgError(f"{self.subject}: it is a directory; name a file")
        self.directory = directory
        try:
            self.dir_fd = _open_directory(directory)
        except _WalkError as exc:
            raise self._walk_failure(exc) from exc.cause
        try:
            if not os.access(".", os.W_OK | os.X_OK, dir_fd=self.dir_fd):
                raise InvalidArgError(
                    f"{self.subject}: directory {directory} is not writable;"
                    f" choose a directory you can write to"
                )
            self.existing = self.recheck()
            if followed is not None and self.existing is None:
                raise InvalidArgError(
                    f"{self.subject}: it leads to {self.real}, which is not there by that path;"
                    f" give the path of the file itself"
                )
        except BaseException:
            self.close()
            raise

    def _walk_failure(self, exc: _WalkError) -> VirtError:
        if exc.reason == "symlink":
            return _changed(self.subject, exc.at, self.confinement)
        if exc.reason == "denied":
            return InvalidArgError(
                f"{self.subject}: cannot reach directory {self.directory}:"
                f" {exc.cause.strerror}; choose a directory you can write to"
            )
        detail = f" ({exc.at} is a file)" if exc.reason == "file" else ""
        return InvalidArgError(
            f"{self.subject}: directory {self.directory} does not exist{detail};"
            f" create it or choose another path"
        )

    def recheck(self) -> os.stat_result | None:
        """The status of the regular file now at the target, None if there is none.

        Raises `InvalidArgError` if something other than a regular file is there now.
        """
        try:
            info = os.stat(self.name, dir_fd=self.dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise InvalidArgError(f"{self.subject}: {exc.strerror}") from exc
        if stat.S_ISREG(info.st_mode):
            return info
        if stat.S_ISLNK(info.st_mode):  # the resolved path had none: it appeared since
            raise _changed(self.subject, self.real, self.confinement)
        shown = shown_path(self.path, self.real)
        raise _not_regular(f"cannot write {self.what} to {shown}", info.st_mode)

    def create_partial(self) -> tuple[int, str]:
        """Create and lock a new partial file beside the target; return its fd and name.

        Stale partials of the same target are removed first. Raises `OSError`.
        """
        _remove_stale(self.dir_fd, self.directory, self.name)
        while True:
            name = partial_name(self.name)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(name, flags, 0o600, dir_fd=self.dir_fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if os.fstat(fd).st_nlink > 0:
                    return fd, name
            except BaseException:
                os.close(fd)
                raise
            # Another writer took it for stale between our create and our lock: it is gone.
            os.close(fd)

    def close(self) -> None:
        """Release the directory; harmless if already closed."""
        if self.dir_fd >= 0:
            os.close(self.dir_fd)
            self.dir_fd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def check_target(path: str, what: str, confinement: Confinement | None = None) -> None:
    """Refuse, at once, a target `path` that a save or dump (`what`) could not write.

    Raises what `Target` raises: `InvalidArgError` for a missing or read-only directory or a
    target that exists and is not a regular file (a symlink to one is followed);
    `AccessDeniedError` for a path outside `confinement`.
    """
    with Target(path, what, confinement):
        pass


def _remove_stale(dir_fd: int, directory: str, name: str) -> list[str]:
    """Remove the partial files of target `name` in `dir_fd` that no writer holds locked."""
    try:
        entries = os.listdir(dir_fd)
    except OSError:
        return []
    removed: list[str] = []
    for entry in entries:
        if not _is_partial_of(entry, name):
            continue
        try:
            fd = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
        except OSError:
            continue
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live writer's
            now = os.stat(entry, dir_fd=dir_fd, follow_symlinks=False)
            if (now.st_dev, now.st_ino) != (info.st_dev, info.st_ino):
                continue
            os.unlink(entry, dir_fd=dir_fd)
        except OSError as exc:
            log.warning("cannot remove the stale partial file %s: %s", entry, exc)
            continue
        finally:
            os.close(fd)
        path = os.path.join(directory, entry)
        log.warning("removed the partial file %s of an interrupted write", path)
        removed.append(path)
    return removed


def remove_stale_partials(target: str) -> list[str]:
    """Remove the partial files an interrupted save or dump to `target` left; return them.

    `target` is the path the write was checked and recorded under: absolute and already
    resolved (`Target.real`). Its directory is walked as it was for the write, without
    following any symlink and within the confinement that path was checked against, so if a
    directory on it has become a symlink since (or `target` is not such a path), nothing is
    removed and a warning is logged. Partials a live writer holds locked are kept. Never
    raises: a directory that cannot be opened has nothing to clean.
    """
    directory, name = os.path.split(target)
    if not name or not os.path.isabs(target) or os.path.normpath(target) != target:
        log.warning(
            "not removing partial files of %s: not an absolute, resolved path",
            shown_path(target),
        )
        return []
    try:
        dir_fd = _open_directory(directory)
    except _WalkError as exc:
        if exc.reason == "symlink":
            log.warning(
                "not removing partial files of %s: %s is a symlink now, which is never followed",
                shown_path(target),
                shown_path(exc.at),
            )
        return []
    except (OSError, ValueError):
        return []
    try:
        return _remove_stale(dir_fd, directory, name)
    finally:
        os.close(dir_fd)


def open_source(
    path: str,
    confinement: Confinement | None = None,
    what: str = "save file",
    hint: str = "give the path of the file a save wrote",
    *,
    writable: bool = False,
) -> int:
    """Open the regular file at `path` for reading, race-free and without blocking; return its fd.

    With `writable` it is opened for reading and writing (a disk image QEMU is handed). A
    symlink to a regular file is followed. Raises `InvalidArgError` (saying `what` the file
    is and, per `hint`, what to give) for a missing file or anything but a regular file (a
    FIFO is refused at once, never waited on); `AccessDeniedError` for a path outside
    `confinement` or one that changed while it was opened.
    """
    subject = f"cannot read {what} {path}"
    real = _resolve(path, confinement, subject)
    followed = _followed(path, real, subject)
    if followed is not None and not stat.S_ISREG(followed.st_mode):
        raise InvalidArgError(
            f"{what} {shown_path(path, real)} is a {_kind(followed.st_mode)}, not a regular file;"
            f" {hint}"
        )
    directory, name = os.path.split(real)
    try:
        dir_fd = _open_directory(directory)
    except _WalkError as exc:
        if exc.reason == "symlink":
            raise _changed(subject, exc.at, confinement) from exc.cause
        if exc.reason == "denied":
            raise InvalidArgError(f"{subject}: {exc.cause.strerror}") from exc.cause
        raise InvalidArgError(f"{what} {path} does not exist; {hint}") from exc.cause
    try:
        return _open_regular(dir_fd, name or ".", path, real, what, hint, confinement, writable)
    finally:
        os.close(dir_fd)


def _open_regular(
    dir_fd: int,
    name: str,
    path: str,
    real: str,
    what: str,
    hint: str,
    confinement: Confinement | None,
    writable: bool = False,
) -> int:
    subject = f"cannot read {what} {path}"
    access = os.O_RDWR if writable else os.O_RDONLY
    try:
        mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
        if stat.S_ISREG(mode):
            fd = os.open(name, access | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
        else:
            fd = -1
    except FileNotFoundError as exc:
        raise InvalidArgError(f"{what} {path} does not exist; {hint}") from exc
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _changed(subject, real, confinement) from exc
        raise InvalidArgError(f"{subject}: {exc.strerror}") from exc
    if fd >= 0:
        mode = os.fstat(fd).st_mode
        if stat.S_ISREG(mode):
            os.set_blocking(fd, True)
            return fd
        os.close(fd)  # replaced between the check and the open
    if stat.S_ISLNK(mode):
        raise _changed(subject, real, confinement)
    raise InvalidArgError(
        f"{what} {shown_path(path, real)} is a {_kind(mode)}, not a regular file; {hint}"
    )
