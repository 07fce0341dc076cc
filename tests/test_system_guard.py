"""The guard around the test run notices a replaced device or symlink and puts it back."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .system_guard import SYSTEM_CANARIES, Canaries, Mark


def _device(path: Path) -> None:
    os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.chmod(path, 0o666)


def test_an_untouched_path_is_not_reported(tmp_path: Path) -> None:
    _device(tmp_path / "null")
    guard = Canaries([str(tmp_path / "null"), str(tmp_path / "absent")])
    assert guard.changed() == []


def test_a_device_replaced_by_a_file_is_reported_and_restored(tmp_path: Path) -> None:
    null = tmp_path / "null"
    _device(null)
    guard = Canaries([str(null)])
    null.unlink()
    null.write_bytes(b"")  # what a save onto the device did: a plain file in its place
    (line,) = guard.changed()
    assert line.startswith(f"{null} was character device 1:3, mode 0666")
    assert "is now regular file" in line
    guard.restore()
    assert stat.S_ISCHR(null.lstat().st_mode)
    assert null.lstat().st_rdev == os.makedev(1, 3)
    assert stat.S_IMODE(null.lstat().st_mode) == 0o666


def test_a_replaced_symlink_and_a_new_owner_are_reported(tmp_path: Path) -> None:
    link = tmp_path / "stdout"
    link.symlink_to("/proc/self/fd/1")
    owned = tmp_path / "owned"
    owned.write_text("x")
    guard = Canaries([str(link), str(owned)])
    link.unlink()
    link.write_text("")
    os.chown(owned, 1234, 1234)
    changed = guard.changed()
    assert len(changed) == 2
    assert "symlink to /proc/self/fd/1" in changed[0]
    assert "uid 1234" in changed[1]
    guard.restore()
    assert os.readlink(link) == "/proc/self/fd/1"


def test_the_run_watches_the_system_paths_a_save_could_replace() -> None:
    assert {"/dev/null", "/dev/stdout", "/tmp"} <= set(SYSTEM_CANARIES)
    null = Mark.of("/dev/null")
    assert null is not None
    assert stat.S_ISCHR(null.mode), "/dev/null is not a device: something replaced it"
