"""A guard around the whole test run: no test may change a system path.

The suite runs as root, so a test that names ``/dev/null`` as a save target would replace the
device with a plain file and break the machine (apt, shells) long after the run. `Canaries`
records what a few such paths are (file type, inode, device numbers, owner, mode, link target)
and tells which of them changed. The root ``conftest.py`` checks them after every test, so the
test that did it fails by name, and puts a replaced device node or symlink back.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass

SYSTEM_CANARIES = (
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/stdout",
    "/dev/stderr",
    "/tmp",
    "/etc/passwd",
    "/etc/hosts",
)
"""Paths no test may touch: the devices and links a misdirected save or dump would replace."""


@dataclass(frozen=True, slots=True)
class Mark:
    """What one path was: enough to notice it was replaced, re-created or re-owned."""

    mode: int
    inode: int
    rdev: int
    uid: int
    gid: int
    link: str | None

    @classmethod
    def of(cls, path: str) -> Mark | None:
        """The mark of `path` (not following a final symlink), or None if it does not exist."""
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return None
        link = os.readlink(path) if stat.S_ISLNK(info.st_mode) else None
        return cls(info.st_mode, info.st_ino, info.st_rdev, info.st_uid, info.st_gid, link)

    def describe(self) -> str:
        """A short human description, e.g. ``character device 1:3, mode 0666, uid 0``."""
        kind = _KINDS.get(stat.S_IFMT(self.mode), "file")
        if self.link is not None:
            kind = f"symlink to {self.link}"
        elif stat.S_ISCHR(self.mode) or stat.S_ISBLK(self.mode):
            kind += f" {os.major(self.rdev)}:{os.minor(self.rdev)}"
        return f"{kind}, mode {stat.S_IMODE(self.mode):04o}, uid {self.uid}, inode {self.inode}"


_KINDS = {
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
    stat.S_IFREG: "regular file",
    stat.S_IFDIR: "directory",
    stat.S_IFIFO: "FIFO",
    stat.S_IFSOCK: "socket",
    stat.S_IFLNK: "symlink",
}


class Canaries:
    """The marks of `paths` taken now; `changed()` lists those that differ later."""

    def __init__(self, paths: Iterable[str]) -> None:
        self.marks = {path: Mark.of(path) for path in paths}

    def changed(self) -> list[str]:
        """One line per path that is no longer what it was, saying what it was and is."""
        lines = []
        for path, before in self.marks.items():
            after = Mark.of(path)
            if after != before:
                was = before.describe() if before else "absent"
                now = after.describe() if after else "absent"
                lines.append(f"{path} was {was}, is now {now}")
        return lines

    def restore(self) -> None:
        """Put back every device node and symlink that was replaced or removed."""
        for path, before in self.marks.items():
            if before is None or Mark.of(path) == before:
                continue
            kind = stat.S_IFMT(before.mode)
            if kind not in (stat.S_IFCHR, stat.S_IFBLK, stat.S_IFLNK):
                continue  # a changed file or directory cannot be rebuilt from its mark
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            if before.link is not None:
                os.symlink(before.link, path)
            else:
                os.mknod(path, before.mode, before.rdev)
                os.chmod(path, stat.S_IMODE(before.mode))
            os.lchown(path, before.uid, before.gid)
