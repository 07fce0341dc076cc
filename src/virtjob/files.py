"""Race-free opening of the files jobs write and read: save and dump targets, restore sources.

A path is resolved once (``os.path.realpath``: symlinks and ``..`` followed, so a symlink to a
regular file is fine), checked against the host's `Confinement` if it has one, then opened by
walking that resolved path from ``/`` one component at a time, each opened relative to the one
before it with ``O_NOFOLLOW``. No symlink is followed during the walk, so what is opened is
exactly the resolved path that was checked: a directory swapped for a symlink after the check
is refused, never followed. The walk also refuses every directory that *is* an excluded one
(same device and inode, `Confinement.excluded_ids`), whatever the path to it: a bind mount, or
the state directory renamed. Jobs do this twice: when the job is requested (to refuse a bad
path at once) and again when the job starts. An empty path is refused as empty.

Targets (`Target`): only a regular file, or nothing, may be at a target; anything else (device,
FIFO, socket, directory) is refused with `InvalidArgError`. A target is written as its *partial
file* beside it (`partial_name`: one fixed-length hidden name per target, so any legal target
name works), then renamed over the target. The partial file is the target's lock too: a
writer creates it fresh and holds an open-file-description lock (``F_OFD_SETLK``) on it from
before the first byte until after the rename (or the unlink, if it gives up), and anything that
removes or renames that name first takes the lock and checks the name still leads to the
locked file. So a second writer of a target a live writer holds is refused
(`OperationInvalidError`, at the request by a probe that takes no lock, and when the job
starts), a partial nobody holds was left by a crashed writer and is removed, and a writer
commits only its own file. Names starting with `PARTIAL_MARK` are reserved: neither targets
nor sources. Partials of earlier versions (random suffixes, ``flock``ed) are still cleaned
(`remove_stale_partials`).

Sources (`open_source`): must be regular files; they are opened with ``O_NONBLOCK`` so that a
FIFO is refused at once instead of blocking the caller.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import hashlib
import logging
import os
import stat
from types import TracebackType
from typing import TYPE_CHECKING, Self

from virtjob.errors import AccessDeniedError, InvalidArgError, OperationInvalidError, VirtError
from virtjob.paths import allowed_directory_itself, is_inside, shown_path

if TYPE_CHECKING:
    from virtjob.drivers.base import Confinement

__all__ = [
    "PARTIAL_MARK",
    "Target",
    "check_target",
    "open_source",
    "partial_name",
    "remove_stale_partials",
]

log = logging.getLogger("virtjob.files")

PARTIAL_MARK = ".virtjob-partial-"
"""Every partial file's name starts with this; no target or source name may."""
_HASH_CHARS = 16
_LEGACY_RANDOM_CHARS = 8
_LOCK_ATTEMPTS = 16
"""Times a writer retries when the partial name keeps changing under it before giving up."""
_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def partial_name(name: str) -> str:
    """The hidden name (33 characters) of the partial file of the target called `name`.

    `name` is a base name; the partial name is derived from a hash of it, so it has the same
    short length for any target, and it is the same for every write of that target (it is
    the target's lock). Raises nothing.
    """
    digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:_HASH_CHARS]
    return f"{PARTIAL_MARK}{digest}"


def _is_legacy_partial_of(entry: str, name: str) -> bool:
    """Whether `entry` is a partial file an earlier version wrote for the target `name`."""
    for prefix in (f"{partial_name(name)}-", f".{name}{PARTIAL_MARK}"):
        rest = entry[len(prefix) :]
        if entry.startswith(prefix) and len(rest) == _LEGACY_RANDOM_CHARS:
            return all(c in "0123456789abcdef" for c in rest)
    return False


class _Flock(ctypes.Structure):
    """``struct flock``, for open-file-description locks (``F_OFD_*``)."""

    _fields_ = (
        ("l_type", ctypes.c_short),
        ("l_whence", ctypes.c_short),
        ("l_start", ctypes.c_int64),
        ("l_len", ctypes.c_int64),
        ("l_pid", ctypes.c_int),
    )


def _whole_file(kind: int) -> bytes:
    """A ``struct flock`` for a `kind` lock of the whole file."""
    return bytes(_Flock(kind, os.SEEK_SET, 0, 0, 0))


def _lock(fd: int) -> bool:
    """Take the write lock of the whole file `fd` (open for writing) without waiting.

    The lock belongs to the open file description (``F_OFD_SETLK``): other opens of the file,
    in this process or another, conflict with it; it goes when `fd` is closed. Returns False
    if another open holds a lock on the file. Raises `OSError` for anything else.
    """
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _whole_file(fcntl.F_WRLCK))
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def _locked(fd: int) -> bool:
    """Whether another open of the file `fd` holds a lock on it; takes no lock itself, so a
    writer taking the lock at the same moment is never turned away by this look."""
    found = fcntl.fcntl(fd, fcntl.F_OFD_GETLK, _whole_file(fcntl.F_WRLCK))
    return bool(_Flock.from_buffer_copy(found).l_type != fcntl.F_UNLCK)


def _same_file(fd: int, dir_fd: int, name: str) -> bool:
    """Whether `name` in `dir_fd` is (still) the file open as `fd`, without following it."""
    try:
        now = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    info = os.fstat(fd)
    return (now.st_dev, now.st_ino) == (info.st_dev, info.st_ino)


class _InTheWay(Exception):
    """Something other than a regular file (`mode`) is at a partial file's name.

    An internal signal: its catcher raises the `VirtError` it stands for ``from None``, since
    that message says all it knows."""

    def __init__(self, mode: int) -> None:
        super().__init__(mode)
        self.mode = mode


def _open_partial(dir_fd: int, name: str, flags: int) -> int | None:
    """Open the regular file `name` in `dir_fd` with `flags` (never following a symlink,
    never blocking); None if nothing is there. Raises `_InTheWay` for anything but a regular
    file (never opened: a device is not touched), `OSError` if it cannot be opened."""
    try:
        mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
        if not stat.S_ISREG(mode):
            raise _InTheWay(mode)
        fd = os.open(name, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):  # replaced between the look and the open
        os.close(fd)
        raise _InTheWay(mode)
    return fd


def _remove_if_unlocked(dir_fd: int, name: str) -> bool | None:
    """Remove the partial file `name` in `dir_fd` unless a live writer holds it locked.

    Returns True when it was removed, None when nothing (or something else by then) was
    there, False when a writer holds it. The lock is taken and the name checked to still lead
    to the locked file before the unlink, so a live writer's file is never removed. Raises
    `_InTheWay` and `OSError` as `_open_partial`.
    """
    fd = _open_partial(dir_fd, name, os.O_RDWR)
    if fd is None:
        return None
    try:
        if not _lock(fd):
            return False
        if not _same_file(fd, dir_fd, name):
            return None
        os.unlink(name, dir_fd=dir_fd)
        return True
    finally:
        os.close(fd)


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


def _refuse_empty(path: str, subject: str, hint: str) -> None:
    """Refuse an empty `path` as empty (``realpath`` would make it the working directory)."""
    if path == "":
        raise InvalidArgError(f"{subject}: the path is empty; {hint}")


def _refuse_reserved(path: str, real: str, subject: str, hint: str) -> None:
    """Refuse a `path` (resolving to `real`) named like a partial file, with `hint`."""
    for name in (os.path.basename(path), os.path.basename(real)):
        if name.startswith(PARTIAL_MARK):
            raise InvalidArgError(
                f"{subject}: {shown_path(path, real)} is named like a partial file (names"
                f" starting with {PARTIAL_MARK} are reserved for the files saves and dumps"
                f" write before they rename them into place); {hint}"
            )


def _resolve(path: str, confinement: Confinement | None, subject: str) -> str:
    """Resolve `path` to an absolute path without symlinks and check it against `confinement`.

    `subject` starts the messages ("cannot write a save of domain 'x' to /p"). Raises
    `InvalidArgError` for a path that cannot be resolved, `AccessDeniedError` for one outside
    `confinement.dirs` or inside `confinement.excluded` (by path: the walk that opens it
    checks the excluded directories by identity too).
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
                raise _excluded_error(subject, path, real, excluded)
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


def _excluded_error(
    subject: str, path: str, real: str, excluded: str, at: str | None = None
) -> AccessDeniedError:
    """The refusal of `path` (resolving to `real`) inside the excluded directory `excluded`,
    reached through `at` when that is another path to it (a bind mount, a rename)."""
    through = (
        f" ({shown_path(at)} is that directory by another path: a bind mount or a rename)"
        if at is not None
        else ""
    )
    return AccessDeniedError(
        f"{subject}: {shown_path(path, real)} is inside {excluded}{through}, which this host"
        f" never lets a job touch (it holds the daemon's own state); use a path elsewhere"
    )


def _excluded_ids(confinement: Confinement | None) -> dict[tuple[int, int], str]:
    """The identities (device, inode) of `confinement`'s excluded paths, with their paths."""
    if confinement is None:
        return {}
    return {
        identity: path
        for identity, path in zip(confinement.excluded_ids, confinement.excluded, strict=True)
        if identity is not None
    }


class _WalkError(Exception):
    """Opening the directory `at` failed: `reason` is "missing", "file", "symlink" or "denied"."""

    def __init__(self, reason: str, at: str, cause: OSError) -> None:
        super().__init__(reason, at)
        self.reason = reason
        self.at = at
        self.cause = cause


class _ExcludedError(Exception):
    """The walk reached the excluded directory `excluded`, by the path `at`.

    An internal signal: its catcher raises the `VirtError` it stands for ``from None``, since
    that message says all it knows."""

    def __init__(self, at: str, excluded: str) -> None:
        super().__init__(at, excluded)
        self.at = at
        self.excluded = excluded


def _open_directory(directory: str, excluded: dict[tuple[int, int], str] | None = None) -> int:
    """Open the absolute, resolved `directory` without following any symlink; return its fd.

    The fd is readable (for listing and fsync) when the directory allows it, else ``O_PATH``.
    Raises `_WalkError` naming the component that is missing, not a directory, or a symlink;
    `_ExcludedError` if a directory on the way is one of `excluded` (keyed by identity).
    """
    fd = os.open("/", _DIR_FLAGS)
    try:
        walked = ""
        _check_excluded(fd, "/", excluded)
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
            _check_excluded(fd, walked, excluded)
        try:
            readable = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
        except OSError:
            return fd  # searchable but not readable: stale partials cannot be listed
        os.close(fd)
        return readable
    except BaseException:
        os.close(fd)
        raise


def _check_excluded(fd: int, walked: str, excluded: dict[tuple[int, int], str] | None) -> None:
    """Raise `_ExcludedError` if the directory `fd` (reached as `walked`) is an excluded one."""
    if excluded:
        info = os.fstat(fd)
        found = excluded.get((info.st_dev, info.st_ino))
        if found is not None:
            raise _ExcludedError(walked, found)


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
    file already at the target (None when there is none), `partial` the name of its partial
    file (`partial_name`). Close it (or use ``with``) to release the directory.
    """

    def __init__(self, path: str, what: str, confinement: Confinement | None = None) -> None:
        """Resolve and check `path` as the target of `what` ("a save of domain 'x'").

        Raises `InvalidArgError` when the path is empty or named like a partial file, the
        target's directory is missing or not writable, or something other than a regular
        file is at the target; `AccessDeniedError` when the host is confined and the path is
        outside its directories or inside an excluded one (by any path to it), or changed
        while it was opened.
        """
        self.path = path
        self.what = what
        self.confinement = confinement
        self.dir_fd = -1
        _refuse_empty(path, f"cannot write {what}", "give the path of the file to write")
        self.subject = f"cannot write {what} to {path}"
        self.real = _resolve(path, confinement, self.subject)
        _refuse_reserved(path, self.real, self.subject, "choose another name")
        followed = _followed(path, self.real, self.subject)
        if followed is not None and not stat.S_ISREG(followed.st_mode):
            shown = shown_path(path, self.real)
            raise _not_regular(f"cannot write {what} to {shown}", followed.st_mode)
        directory, self.name = os.path.split(self.real)
        if not self.name:  # the root directory
            raise InvalidArgError(f"{self.subject}: it is a directory; name a file")
        self.directory = directory
        self.partial = partial_name(self.name)
        try:
            self.dir_fd = _open_directory(directory, _excluded_ids(confinement))
        except _WalkError as exc:
            raise self._walk_failure(exc) from exc.cause
        except _ExcludedError as exc:
            raise _excluded_error(self.subject, path, self.real, exc.excluded, exc.at) from None
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

    def _busy(self) -> OperationInvalidError:
        """The refusal of a target another writer holds."""
        return OperationInvalidError(
            f"{self.subject}: another save or dump is writing {shown_path(self.path, self.real)};"
            f" wait for it or choose another path"
        )

    def _in_the_way(self, mode: int) -> InvalidArgError:
        """The refusal of a target whose partial file's name holds a `mode` kind of file."""
        where = shown_path(os.path.join(self.directory, self.partial))
        return InvalidArgError(
            f"{self.subject}: a {_kind(mode)} is at {where}, the name of its partial file;"
            f" remove it or choose another path"
        )

    def refuse_if_busy(self) -> None:
        """Raise `OperationInvalidError` if a live writer holds this target now.

        It only looks (it takes no lock), so it never turns away a writer starting at the
        same moment. Raises `InvalidArgError` if something other than a regular file is at
        the partial file's name.
        """
        try:
            fd = _open_partial(self.dir_fd, self.partial, os.O_RDONLY)
        except _InTheWay as exc:
            raise self._in_the_way(exc.mode) from None
        except OSError:
            return  # not ours to read: the writer's own attempt to lock it will say
        if fd is None:
            return
        try:
            if _locked(fd):
                raise self._busy()
        finally:
            os.close(fd)

    def create_partial(self) -> tuple[int, str]:
        """Create the partial file beside the target, locked; return its fd and name.

        The file is always new (mode 0600): a partial nobody holds, and those of earlier
        versions, were left by interrupted writes and are removed first. Raises
        `OperationInvalidError` if a live writer holds the target, `InvalidArgError` if
        something other than a regular file is at the partial file's name, `OSError` for
        anything else.
        """
        _remove_legacy(self.dir_fd, self.directory, self.name)
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        for _ in range(_LOCK_ATTEMPTS):
            try:
                fd = os.open(self.partial, flags, 0o600, dir_fd=self.dir_fd)
            except FileExistsError:
                try:
                    removed = _remove_if_unlocked(self.dir_fd, self.partial)
                except _InTheWay as exc:
                    raise self._in_the_way(exc.mode) from None
                if removed is False:  # the FileExistsError is how we learnt it: no cause
                    raise self._busy() from None
                if removed:
                    _log_removed(os.path.join(self.directory, self.partial))
                continue
            try:
                # Between our create and our lock, another writer may have taken the new
                # file for stale and removed it: then the name leads elsewhere, or nowhere.
                if _lock(fd) and self.holds(fd):
                    return fd, self.partial
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
        raise OSError(
            errno.EAGAIN, "its partial file kept being replaced while it was being created"
        )

    def holds(self, fd: int) -> bool:
        """Whether the partial file's name still leads to the file open as `fd`."""
        return self.dir_fd >= 0 and _same_file(fd, self.dir_fd, self.partial)

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

    Raises what `Target` raises: `InvalidArgError` for an empty path, a name reserved for
    partial files, a missing or read-only directory or a target that exists and is not a
    regular file (a symlink to one is followed); `AccessDeniedError` for a path outside
    `confinement`; and `OperationInvalidError` when another save or dump is writing it now.
    """
    with Target(path, what, confinement) as target:
        target.refuse_if_busy()


def _log_removed(path: str) -> None:
    log.warning("removed the partial file %s of an interrupted write", shown_path(path))


def _remove_legacy(dir_fd: int, directory: str, name: str) -> list[str]:
    """Remove the partial files earlier versions wrote for target `name` in `dir_fd` (random
    suffixes, ``flock``ed while written) that no writer holds locked; return their paths."""
    try:
        entries = os.listdir(dir_fd)
    except OSError:
        return []
    removed: list[str] = []
    for entry in entries:
        if not _is_legacy_partial_of(entry, name):
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
        _log_removed(path)
        removed.append(path)
    return removed


def remove_stale_partials(target: str) -> list[str]:
    """Remove the partial files an interrupted save or dump to `target` left; return them.

    `target` is the path the write was checked and recorded under: absolute and already
    resolved (`Target.real`). Its directory is walked as it was for the write, without
    following any symlink and within the confinement that path was checked against, so if a
    directory on it has become a symlink since (or `target` is not such a path), nothing is
    removed and a warning is logged. Partials a live writer holds locked are kept; those of
    earlier versions are removed too. Never raises: a directory that cannot be opened has
    nothing to clean.
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
        removed = _remove_legacy(dir_fd, directory, name)
        partial = partial_name(name)
        try:
            gone = _remove_if_unlocked(dir_fd, partial)
        except (_InTheWay, OSError) as exc:
            log.warning("cannot remove the stale partial file %s: %s", partial, exc)
            gone = None
        if gone:
            path = os.path.join(directory, partial)
            _log_removed(path)
            removed.append(path)
        return removed
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
    FIFO is refused at once, never waited on), an empty path or a name reserved for partial
    files; `AccessDeniedError` for a path outside `confinement` or inside an excluded
    directory (by any path to it), or one that changed while it was opened.
    """
    _refuse_empty(path, f"cannot read {what}", hint)
    subject = f"cannot read {what} {path}"
    real = _resolve(path, confinement, subject)
    _refuse_reserved(path, real, subject, hint)
    followed = _followed(path, real, subject)
    if followed is not None and not stat.S_ISREG(followed.st_mode):
        raise InvalidArgError(
            f"{what} {shown_path(path, real)} is a {_kind(followed.st_mode)}, not a regular file;"
            f" {hint}"
        )
    directory, name = os.path.split(real)
    try:
        dir_fd = _open_directory(directory, _excluded_ids(confinement))
    except _ExcludedError as exc:
        raise _excluded_error(subject, path, real, exc.excluded, exc.at) from None
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
