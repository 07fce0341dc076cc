"""Race-free file targets and sources (`virtjob.files`), through `AtomicFile` and `open_source`.

Every special file here (FIFO, socket, device node, symlink) is made inside `tmp_path`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.mounts import bind
from virtjob.drivers.base import Confinement
from virtjob.errors import (
    AccessDeniedError,
    InvalidArgError,
    OperationFailedError,
    OperationInvalidError,
)
from virtjob.files import (
    PARTIAL_MARK,
    Target,
    check_target,
    open_source,
    partial_name,
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
    assert len(partial_name("n" * 255)) == len(partial_name("x")) == 33
    assert partial_name("x").startswith(PARTIAL_MARK)


def test_a_stale_partial_is_removed_by_the_next_write(tmp_path: Path) -> None:
    """Partials nobody holds (a writer killed mid-write left them, under this version's name
    or an earlier one's) go with the next write to the same target; partials of other
    targets stay."""
    target = tmp_path / "dom.save"
    stale = [
        tmp_path / partial_name("dom.save"),
        tmp_path / f"{partial_name('dom.save')}-0badc0de",
        tmp_path / f".dom.save{PARTIAL_MARK}0badc0de",
    ]
    for path in stale:
        path.write_bytes(b"half a save")
    other = tmp_path / partial_name("other.save")
    other.write_bytes(b"not ours")
    with AtomicFile(str(target)) as out:
        out.write(b"whole")
        out.commit()
    assert sorted(os.listdir(tmp_path)) == sorted(["dom.save", other.name])


def test_remove_stale_partials_keeps_locked_ones(tmp_path: Path) -> None:
    """The daemon's clean-up after a restart removes unlocked partials (new and old names) of a
    target, never one a writer holds locked (this version's lock, or an earlier one's flock)."""
    target = tmp_path / "dom.save"
    stale = tmp_path / partial_name("dom.save")
    stale.write_bytes(b"")
    legacy = tmp_path / f".dom.save{PARTIAL_MARK}0badc0de"
    legacy.write_bytes(b"")
    assert sorted(remove_stale_partials(str(target))) == sorted([str(stale), str(legacy)])
    assert os.listdir(tmp_path) == []
    held_legacy = tmp_path / f"{partial_name('dom.save')}-0badc0de"
    held_legacy.write_bytes(b"")
    with held_legacy.open("rb") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        writer = AtomicFile(str(target))
        assert remove_stale_partials(str(target)) == []
        assert sorted(os.listdir(tmp_path)) == sorted([held_legacy.name, partial_name("dom.save")])
        assert writer.temp_path == str(tmp_path / partial_name("dom.save"))
        writer.abort()
    assert os.listdir(tmp_path) == [held_legacy.name]


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


# -- one writer per target, committing only its own file -----------------------------------

HOLDER = """
import sys
from virtjob.savefile import AtomicFile

out = AtomicFile(sys.argv[1])
out.write(b"the child's data")
print("writing", flush=True)
if sys.stdin.readline().strip() == "commit":
    out.commit()
print("done", flush=True)
"""
"""A writer in another process: it writes until told to commit (or is killed)."""


@pytest.fixture
def holder() -> Iterator[Callable[[Path], subprocess.Popen[str]]]:
    """Starts a writer of a target in a child process and returns once it is writing."""
    children: list[subprocess.Popen[str]] = []

    def start(target: Path) -> subprocess.Popen[str]:
        child = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(target)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        children.append(child)
        assert child.stdout is not None
        assert child.stdout.readline() == "writing\n"
        return child

    yield start
    for child in children:
        child.kill()
        child.communicate(timeout=10)


def test_a_target_or_source_named_like_a_partial_file_is_refused(tmp_path: Path) -> None:
    """A save to another write's partial file (by name, or through a symlink) replaced that
    write's data with its own: a name starting with the partial mark is refused as a target
    and as a source, saying what to give; nothing is created or removed."""
    target = tmp_path / "A.save"
    with AtomicFile(str(target)) as first:
        first.write(b"A's data")
        partial = Path(first.temp_path)
        link = tmp_path / "link.save"
        link.symlink_to(partial)
        before = snapshot(tmp_path)
        for path in (partial, link, tmp_path / (PARTIAL_MARK + "0123456789abcdef-0badc0de")):
            with pytest.raises(InvalidArgError, match="reserved") as refused:
                check_target(str(path), "a save")
            assert "choose another name" in refused.value.message
            with pytest.raises(InvalidArgError, match="reserved"):
                AtomicFile(str(path))
        with pytest.raises(InvalidArgError, match="reserved"):
            open_source(str(partial))
        assert snapshot(tmp_path) == before
        first.commit()
    assert target.read_bytes() == b"A's data"


def test_a_writer_commits_only_its_own_partial_file(tmp_path: Path) -> None:
    """Another file put at a writer's partial name while it writes is never renamed to the
    target: the commit refuses, the target keeps its old content, the other file is left."""
    target = tmp_path / "dom.save"
    target.write_bytes(b"old")
    intruder = tmp_path / "intruder"
    intruder.write_bytes(b"someone else's")
    with AtomicFile(str(target)) as out:
        out.write(b"new")
        os.rename(intruder, out.temp_path)
        with pytest.raises(OperationFailedError, match="replaced"):
            out.commit()
    assert target.read_bytes() == b"old"
    assert Path(out.temp_path).read_bytes() == b"someone else's"


def test_a_second_writer_of_a_target_is_refused_while_the_first_writes(tmp_path: Path) -> None:
    """Two saves to one target at once let the later commit win silently (and the other
    domain, stopped by its save, was lost): the second writer is refused, by the early check
    and by the writer itself, saying what to do; the first one's write is whole."""
    target = tmp_path / "same.save"
    with AtomicFile(str(target)) as first:
        first.write(b"first")
        with pytest.raises(OperationInvalidError) as early:
            check_target(str(target), "a save of domain 'other'")
        assert early.value.message == (
            f"cannot write a save of domain 'other' to {target}: another save or dump is"
            f" writing {target}; wait for it or choose another path"
        )
        with pytest.raises(OperationInvalidError, match="another save or dump is writing"):
            AtomicFile(str(target))
        assert remove_stale_partials(str(target)) == []
        first.commit()
    check_target(str(target), "a save")
    with AtomicFile(str(target)) as second:
        second.write(b"second")
        second.commit()
    assert target.read_bytes() == b"second"
    assert os.listdir(tmp_path) == ["same.save"]


def test_of_writers_racing_for_one_target_exactly_one_writes(tmp_path: Path) -> None:
    """Eight threads start writing one target at the same moment: one gets it, the other
    seven are refused while it holds it."""
    target = tmp_path / "same.save"
    count = 8
    start = threading.Barrier(count)
    outcomes: list[AtomicFile | OperationInvalidError | None] = [None] * count

    def write(index: int) -> None:
        start.wait()
        try:
            outcomes[index] = AtomicFile(str(target))
        except OperationInvalidError as exc:
            outcomes[index] = exc

    threads = [threading.Thread(target=write, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    writers = [out for out in outcomes if isinstance(out, AtomicFile)]
    refused = [out for out in outcomes if isinstance(out, OperationInvalidError)]
    assert (len(writers), len(refused)) == (1, count - 1), outcomes
    with writers[0] as out:
        out.write(b"the one")
        out.commit()
    assert target.read_bytes() == b"the one"
    assert os.listdir(tmp_path) == ["same.save"]


@pytest.mark.timeout(60)
def test_a_writer_in_another_process_holds_the_target(
    tmp_path: Path, holder: Callable[[Path], subprocess.Popen[str]]
) -> None:
    """The lock holds across processes: while a child writes the target, this process is
    refused, and the daemon's clean-up keeps the child's partial; once it commits, the
    target is free."""
    target = tmp_path / "same.save"
    child = holder(target)
    with pytest.raises(OperationInvalidError, match="another save or dump is writing"):
        check_target(str(target), "a save")
    with pytest.raises(OperationInvalidError, match="another save or dump is writing"):
        AtomicFile(str(target))
    assert remove_stale_partials(str(target)) == []
    out, _ = child.communicate("commit\n", timeout=30)
    assert out == "done\n"
    assert target.read_bytes() == b"the child's data"
    with AtomicFile(str(target)) as mine:
        mine.write(b"mine")
        mine.commit()
    assert target.read_bytes() == b"mine"


@pytest.mark.timeout(60)
def test_the_partial_of_a_killed_writer_is_taken_over(
    tmp_path: Path, holder: Callable[[Path], subprocess.Popen[str]]
) -> None:
    """A writer killed mid-write leaves its partial unlocked: the next write to the target
    removes it and writes a fresh, private file (not the dead writer's inode and mode)."""
    target = tmp_path / "dom.save"
    child = holder(target)
    child.kill()
    child.communicate(timeout=30)
    (stale,) = os.listdir(tmp_path)
    assert stale.startswith(PARTIAL_MARK)
    (tmp_path / stale).chmod(0o644)
    check_target(str(target), "a save")
    with AtomicFile(str(target)) as out:
        out.write(b"whole")
        out.commit()
    assert target.read_bytes() == b"whole"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["dom.save"]


# -- the excluded directory, whatever the path to it ---------------------------------------


@pytest.fixture
def bind_mount() -> Iterator[Callable[[Path, Path], None]]:
    """Bind-mounts a directory onto another (needs root); unmounts them all afterwards."""
    with contextlib.ExitStack() as mounts:

        def mount(source: Path, onto: Path) -> None:
            mounts.enter_context(bind(source, onto))

        yield mount


def assert_refused_everywhere(confinement: Confinement, paths: list[Path]) -> None:
    """Each of `paths` is refused as a target and as a source, as inside the excluded dir."""
    for path in paths:
        with pytest.raises(AccessDeniedError, match="never lets"):
            check_target(str(path), "a core dump", confinement)
        with pytest.raises(AccessDeniedError, match="never lets"):
            AtomicFile(str(path), confinement=confinement)
        if path.exists():
            with pytest.raises(AccessDeniedError, match="never lets"):
                open_source(str(path), confinement)


def test_the_excluded_directory_is_refused_through_a_bind_mount(
    confined: tuple[Confinement, Path, Path, Path], bind_mount: Callable[[Path, Path], None]
) -> None:
    """The state directory bind-mounted into an allowed one is the same directory: a dump
    onto its lock file through the mount is refused, and nothing in it changes."""
    confinement, allowed, state, _ = confined
    (state / "virtjobd.lock").write_bytes(b"lock")
    elsewhere = allowed / "elsewhere"
    elsewhere.mkdir()
    bind_mount(state, elsewhere)
    assert_refused_everywhere(confinement, [elsewhere / "virtjobd.lock", elsewhere / "new.core"])
    assert os.listdir(state) == ["virtjobd.lock"]
    assert (state / "virtjobd.lock").read_bytes() == b"lock"


def test_the_excluded_directory_is_refused_after_a_rename(
    confined: tuple[Confinement, Path, Path, Path],
) -> None:
    """Whoever can write its parent can rename the state directory, write into it under the
    new name and rename it back: under any name it is refused."""
    confinement, allowed, state, _ = confined
    (state / "db").write_bytes(b"db")
    moved = allowed / "moved"
    state.rename(moved)
    try:
        assert_refused_everywhere(confinement, [moved / "db", moved / "new.core"])
    finally:
        moved.rename(state)
    assert os.listdir(state) == ["db"]
    assert (state / "db").read_bytes() == b"db"


# -- an empty path ---------------------------------------------------------------------------


def test_an_empty_path_is_refused_as_empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty path used to become the working directory ("it is a directory"): it is
    refused as empty, as a target and as a source, with or without confinement."""
    monkeypatch.chdir(tmp_path)
    confinement = Confinement(dirs=(str(tmp_path),))
    for confined_to in (None, confinement):
        with pytest.raises(InvalidArgError, match="the path is empty") as refused:
            check_target("", "a core dump of domain 'test'", confined_to)
        assert "directory" not in refused.value.message
        with pytest.raises(InvalidArgError, match="the path is empty"):
            open_source("", confined_to)
