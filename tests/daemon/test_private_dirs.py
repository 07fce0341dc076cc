"""`resolve_private_dir`: the state or socket directory resolved once, every directory and
symlink on the way checked (in tmp_path, with chown'd links and directories: tests run as
root)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from virtjob.daemon.security import resolve_private_dir
from virtjob.errors import InvalidArgError

OTHER_UID = 1000


def _private(path: Path) -> Path:
    path.mkdir(mode=0o700)
    return path


def test_relative_links_and_dotdot_resolve_like_realpath(tmp_path: Path) -> None:
    real = _private(tmp_path / "a")
    _private(real / "b")
    (tmp_path / "l1").symlink_to("a/b/../b")
    (real / "up").symlink_to("..")
    path = str(tmp_path / "a" / "up" / "l1")
    assert resolve_private_dir(path, "state directory") == os.path.realpath(path)
    assert resolve_private_dir(path, "state directory") == str(real / "b")


def test_a_link_deep_in_a_chain_owned_by_another_user_is_named(tmp_path: Path) -> None:
    real = _private(tmp_path / "real")
    second = tmp_path / "second"
    second.symlink_to(real)
    os.lchown(second, OTHER_UID, OTHER_UID)
    first = tmp_path / "first"
    first.symlink_to(second)
    with pytest.raises(InvalidArgError, match=f"the symlink {second} belongs to uid 1000"):
        resolve_private_dir(str(first), "state directory")


def test_a_symlink_loop_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x").symlink_to("y")
    (tmp_path / "y").symlink_to("x")
    with pytest.raises(InvalidArgError, match="more than 40 symlinks"):
        resolve_private_dir(str(tmp_path / "x"), "state directory")


def test_a_sticky_shared_directory_is_only_a_socket_directory(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    assert resolve_private_dir(str(shared), "socket directory", sticky_ok=True) == str(shared)
    with pytest.raises(InvalidArgError, match="is writable by others"):
        resolve_private_dir(str(shared), "state directory")


def test_a_file_on_the_way_is_not_a_directory(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(InvalidArgError, match="is not a directory"):
        resolve_private_dir(str(tmp_path / "f" / "d"), "state directory")
