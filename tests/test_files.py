"""Race-free file targets and sources (`virtjob.files`), through `AtomicFile` and `open_source`.

Every special file here (FIFO, socket, device node, symlink) is made inside `tmp_path`.
"""

from __future__ import annotations

import fcntl
import os
import socket
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from virtjob.drivers.base import Confinement
from virtjob.errors import AccessDeniedError, InvalidArgError
from virtjob.files import (
    PARTIAL_MARK,
    Target,
    check_target,
    open_source,
    partial_name,
    partial_prefix,
    remove_stale_partials,
)
from virtjob.savefile import AtomicFile


def make_fifo(path: Path) -> None:
    """A named pipe at `path`."""
    os.mkfifo(path)


def make_device(path: Path) -> None:
    """A character device node at `path` (the numbers of the null device; never opened)."""
    os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 3))


def make_directory(path: Path) -> None:
    """A directory at `path`."""
    path.mkdir()


def make_device_link(path: Path) -> None:
    """A symlink at `path` to a device node beside it."""
    make_device(path.with_name(path.name + ".dev"))
    path.symlink_to(path.with_name(path.name + ".dev"))


@pytest.fixture
def make_socket() -> Iterator[Callable[[Path], None]]:
    """Makes a bound unix socket at a path; closes them all afterwards."""
    sockets: list[socket.socket] = []

    def make(path: Path) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sockets.append(sock)
        sock.bind(str(path))

    yield make
    for sock in sockets:
        sock.close()


SPECIAL: dict[str, tuple[Callable[[Path], None] | None, str]] = {
    "fifo": (make_fifo, "FIFO"),
    "socket": (None, "socket"),
    "device": (make_device, "character device"),
    "directory": (make_directory, "directory"),
    "symlink-to-device": (make_device_link, "character device"),
}


def snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    """Every name in `directory` with its type bits and inode: what must not change."""
    return {
        entry.name: (stat.S_IFMT(entry.stat(follow_symlinks=False).st_mode), entry.inode())
        for entry in os.scandir(directory)
    }


@pytest.mark.parametrize("kind", SPECIAL)
def test_a_special_target_is_refused_and_left_alone(
    tmp_path: Path, kind: str, make_socket: Callable[[Path], None]
) -> None:
    """A FIFO, socket, device, directory or symlink to a device is never written or replaced:
    both the early check and the writer refuse it, naming the path and what it is."""
    target = tmp_path / "target"
    maker, words = SPECIAL[kind]
    (maker or make_socket)(target)
    before = snapshot(tmp_path)
    with pytest.raises(InvalidArgError, match=words) as early:
        check_target(str(target), "a save")
    assert str(target) in early.value.message
    with pytest.raises(InvalidArgError, match=words):
        AtomicFile(str(target), what="a save")
    assert snapshot(tmp_path) == before


def test_a_link_to_a_pipe_is_refused_like_dev_stdout_on_a_pipe(tmp_path: Path) -> None:
    """A symlink to /proc/self/fd/N of a pipe (what /dev/stdout is under ``| gzip``) is a FIFO
    target, refused; realpath's made-up ``pipe:[N]`` name is never created."""
    read_end, write_end = os.pipe()
    try:
        link = tmp_path / "stdout"
        link.symlink_to(f"/proc/self/fd/{write_end}")
        with pytest.raises(InvalidArgError, match="FIFO"):
            check_target(str(link), "a core dump")
        with pytest.raises(InvalidArgError, match="FIFO"):
            open_source(str(link))
        assert link.is_symlink()
    finally:
        os.close(read_end)
        os.close(write_end)


def test_a_dangling_symlink_is_refused(tmp_path: Path) -> None:
    """A symlink to nothing is not written through (the file would appear elsewhere)."""
    link = tmp_path / "dangling"
    link.symlink_to(tmp_path / "elsewhere" / "x")
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(InvalidArgError, match="does not exist"):
        check_target(str(link), "a save")
    assert os.listdir(tmp_path / "elsewhere") == []


def test_a_symlink_to_a_regular_file_is_written_through(tmp_path: Path) -> None:
    """The file a symlink points to is replaced; the symlink stays a symlink."""
    real = tmp_path / "real.save"
    real.write_bytes(b"old")
    link = tmp_path / "link.save"
    link.symlink_to(real)
    with AtomicFile(str(link)) as out:
        out.write(b"new")
        out.commit()
    assert link.is_symlink()
    assert real.read_bytes() == b"new"
    assert sorted(os.listdir(tmp_path)) == ["link.save", "real.save"]


def test_an_existing_target_keeps_its_owner_and_mode(tmp_path: Path) -> None:
    """Replacing a file owned by uid 1234 with mode 0640 keeps both (run as root)."""
    if os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root")
    target = tmp_path / "kept.save"
    target.write_bytes(b"old")
    os.chown(target, 1234, 1234)
    target.chmod(0o640)
    with AtomicFile(str(target)) as out:
        out.write(b"new")
        out.commit()
    info = target.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (1234, 1234, 0o640)
    assert target.read_bytes() == b"new"


def test_a_new_target_is_private(tmp_path: Path) -> None:
    """A file that did not exist is created readable by its owner only."""
    target = tmp_path / "new.save"
    with AtomicFile(str(target)) as out:
        out.write(b"x")
        out.commit()
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_the_longest_legal_name_can_be_written(tmp_path: Path) -> None:
    """A 250- and a 255-byte name work: the partial name has a fixed, short length."""
    for length in (250, 255):
        target = tmp_path / ("n" * length)
        with AtomicFile(str(target)) as out:
            out.write(b"data")
            out.commit()
        assert target.read_bytes() == b"data"
    assert len(partial_name("n" * 255)) == len(partial_name("x")) < 64
    assert partial_name("x").startswith(PARTIAL_MARK)


def test_a_stale_partial_is_removed_by_the_next_write(tmp_path: Path) -> None:
    """A partial nobody holds (a writer killed mid-write left it) goes with the next write to
    the same target; partials of other targets stay."""
    target = tmp_path / "dom.save"
    stale = tmp_path / partial_name("dom.save")
    stale.write_bytes(b"half a save")
    other = tmp_path / partial_name("other.save")
    other.write_bytes(b"not ours")
    with AtomicFile(str(target)) as out:
        out.write(b"whole")
        out.commit()
    assert not stale.exists()
    assert other.exists()
    assert sorted(os.listdir(tmp_path)) == sorted(["dom.save", other.name])


def test_a_live_writers_partial_is_kept(tmp_path: Path) -> None:
    """Two writers to one target: the second does not take the first one's partial for stale."""
    target = tmp_path / "dom.save"
    with AtomicFile(str(target)) as first:
        first.write(b"first")
        with AtomicFile(str(target)) as second:
            second.write(b"second")
            assert os.path.exists(first.temp_path)
            second.commit()
        first.commit()
    assert target.read_bytes() == b"first"
    assert os.listdir(tmp_path) == ["dom.save"]


def test_remove_stale_partials_keeps_locked_ones(tmp_path: Path) -> None:
    """The daemon's clean-up after a restart removes unlocked partials (new and old names) of a
    target, never one a writer holds locked."""
    target = tmp_path / "dom.save"
    stale = tmp_path / partial_name("dom.save")
    stale.write_bytes(b"")
    legacy = tmp_path / f".dom.save{PARTIAL_MARK}0badc0de"
    legacy.write_bytes(b"")
    held = tmp_path / partial_name("dom.save")
    held.write_bytes(b"")
    with held.open("rb") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        removed = remove_stale_partials(str(target))
    assert sorted(removed) == sorted([str(stale), str(legacy)])
    assert os.listdir(tmp_path) == [held.name]
    assert held.name.startswith(partial_prefix("dom.save"))


def test_a_target_that_became_special_before_the_commit_is_left_alone(tmp_path: Path) -> None:
    """If a FIFO appears at the target while it is written, the commit refuses and removes
    its partial: the FIFO is not replaced."""
    target = tmp_path / "dom.save"
    with AtomicFile(str(target)) as out:
        out.write(b"data")
        os.mkfifo(target)
        with pytest.raises(InvalidArgError, match="FIFO"):
            out.commit()
    assert os.listdir(tmp_path) == ["dom.save"]
    assert stat.S_ISFIFO(target.lstat().st_mode)


def test_missing_and_unwritable_directories_are_refused(tmp_path: Path) -> None:
    """A target in a missing directory, or below a regular file, is refused by name."""
    with pytest.raises(InvalidArgError, match="does not exist"):
        check_target(str(tmp_path / "no" / "x"), "a save")
    (tmp_path / "file").write_text("")
    with pytest.raises(InvalidArgError, match="does not exist"):
        check_target(str(tmp_path / "file" / "x"), "a save")
    with Target(str(tmp_path / "x"), "a save") as target:
        assert target.existing is None
        assert target.name == "x"


# -- sources ----------------------------------------------------------------------------------


@pytest.mark.timeout(10)
def test_a_fifo_source_is_refused_at_once(tmp_path: Path) -> None:
    """Opening a FIFO as a source does not wait for a writer: it is refused at once."""
    fifo = tmp_path / "pipe.save"
    os.mkfifo(fifo)
    with pytest.raises(InvalidArgError, match="FIFO"):
        open_source(str(fifo))


@pytest.mark.parametrize("kind", ["device", "directory", "symlink-to-device"])
def test_special_sources_are_refused(tmp_path: Path, kind: str) -> None:
    """Only regular files are read."""
    source = tmp_path / "source"
    maker, words = SPECIAL[kind]
    assert maker is not None
    maker(source)
    with pytest.raises(InvalidArgError, match=words):
        open_source(str(source))


def test_a_symlink_to_a_regular_source_is_followed(tmp_path: Path) -> None:
    """A symlink to a regular file opens that file, in blocking mode."""
    real = tmp_path / "real.save"
    real.write_bytes(b"content")
    link = tmp_path / "link.save"
    link.symlink_to(real)
    fd = open_source(str(link))
    try:
        assert os.get_blocking(fd)
        assert os.read(fd, 100) == b"content"
    finally:
        os.close(fd)
    with pytest.raises(InvalidArgError, match="does not exist"):
        open_source(str(tmp_path / "missing.save"))


# -- confinement ------------------------------------------------------------------------------


@pytest.fixture
def confined(tmp_path: Path) -> tuple[Confinement, Path, Path, Path]:
    """A confinement to `tmp_path/allowed`, excluding `allowed/state`; and `tmp_path/outside`."""
    allowed = tmp_path / "allowed"
    state = allowed / "state"
    outside = tmp_path / "outside"
    for directory in (allowed, state, outside):
        directory.mkdir()
    return Confinement(dirs=(str(allowed),), excluded=(str(state),)), allowed, state, outside


def test_confinement_refuses_paths_outside_and_in_the_excluded_dir(
    confined: tuple[Confinement, Path, Path, Path],
) -> None:
    """Outside the dirs, the dir itself, the excluded dir and a symlink out are refused."""
    confinement, allowed, state, outside = confined
    (outside / "secret").write_bytes(b"secret")
    (allowed / "escape").symlink_to(outside)
    (state / "db").write_bytes(b"db")
    refused = {
        str(outside / "x.save"): "outside",
        str(allowed / "escape" / "x.save"): "outside",
        str(state / "db"): "never lets",
        str(state / "new.save"): "never lets",
    }
    for path, words in refused.items():
        with pytest.raises(AccessDeniedError, match=words):
            check_target(path, "a save", confinement)
        with pytest.raises(AccessDeniedError, match=words):
            open_source(path, confinement)
    with pytest.raises(InvalidArgError, match="allowed directory itself"):
        check_target(str(allowed), "a save", confinement)
    check_target(str(allowed / "ok.save"), "a save", confinement)
    assert (outside / "secret").read_bytes() == b"secret"
    assert (state / "db").read_bytes() == b"db"


def test_confinement_holds_when_a_directory_is_swapped_for_a_symlink(
    confined: tuple[Confinement, Path, Path, Path],
) -> None:
    """A path checked fine, whose directory is then replaced by a symlink to outside, is
    refused when the file is opened: nothing is written outside."""
    confinement, allowed, _, outside = confined
    sub = allowed / "sub"
    sub.mkdir()
    path = str(sub / "x.save")
    check_target(path, "a save", confinement)
    sub.rmdir()
    sub.symlink_to(outside)
    with pytest.raises(AccessDeniedError, match="outside"):
        AtomicFile(path, confinement=confinement)
    assert os.listdir(outside) == []


def test_stale_partial_clean_up_never_follows_a_directory_swapped_for_a_symlink(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """virtjobd's clean-up after a restart used to resolve the recorded target again
    (realpath), so a directory swapped for a symlink since the crash made it delete
    partial-named files wherever the link pointed. It walks the recorded path instead and
    follows no symlink: nothing is removed there."""
    recorded = tmp_path / "allowed" / "sub"
    recorded.mkdir(parents=True)
    target = str(recorded / "dom.save")  # resolved and checked when the save started
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    victim = elsewhere / partial_name("dom.save")
    victim.write_bytes(b"someone else's file")
    recorded.rmdir()
    recorded.symlink_to(elsewhere)
    assert remove_stale_partials(target) == []
    assert victim.read_bytes() == b"someone else's file"
    assert "symlink" in caplog.text


@pytest.mark.parametrize("given", ["dom.save", "a/../dom.save", "sub/"])
def test_stale_partial_clean_up_wants_the_resolved_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str
) -> None:
    """A relative or unresolved target (the recorded one is always resolved) removes nothing:
    resolving it now could lead anywhere."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "sub").mkdir()
    partial = tmp_path / partial_name("dom.save")
    partial.write_bytes(b"")
    target = given if given == "dom.save" else str(tmp_path / given)
    assert remove_stale_partials(target) == []
    assert partial.exists()
