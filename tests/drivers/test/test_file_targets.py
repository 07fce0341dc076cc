"""Save and dump targets and restore sources on the test driver (issue 10: 1, 4, 5, 9, 16).

A save or dump writes one regular file and touches nothing else; a restore reads only a
regular file; a confined host keeps every file inside its directories, checked again when a
queued job starts; a crafted save file cannot make a restore hold a huge image in memory.
Every special file and symlink is made inside `tmp_path`.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import socket
import stat
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import virtjob
from tests.drivers.test.helpers import domain_xml, network_xml
from tests.mounts import bind
from virtjob import DomainState, JobState
from virtjob.connection import Connection
from virtjob.drivers.base import Confinement
from virtjob.drivers.test import driver as test_driver
from virtjob.drivers.test import host as test_host
from virtjob.files import PARTIAL_MARK, partial_name
from virtjob.jobs import Job, LocalJobDriver
from virtjob.savefile import FORMAT_VERSION, MAGIC, SaveFileReader
from virtjob.uri import parse_uri

MIB = 1 << 20
FAST = 4 << 30
_hosts = itertools.count(1)

OPS: dict[str, Callable[[virtjob.Domain, str], virtjob.Job]] = {
    "save": lambda dom, path: dom.save_job(path),
    "dump": lambda dom, path: dom.dump_core_job(path),
}


def make_special(path: Path, kind: str) -> socket.socket | None:
    """Make a `kind` of non-regular file at `path`; return the socket to close, if one."""
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    elif kind == "directory":
        path.mkdir()
    elif kind == "symlink-to-device":
        os.mknod(path.with_suffix(".dev"), 0o600 | stat.S_IFCHR, os.makedev(1, 3))
        path.symlink_to(path.with_suffix(".dev"))
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        return sock
    return None


def snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    """Every name in `directory` with its type bits and inode."""
    return {
        entry.name: (stat.S_IFMT(entry.stat(follow_symlinks=False).st_mode), entry.inode())
        for entry in os.scandir(directory)
    }


KINDS = {
    "fifo": "FIFO",
    "socket": "socket",
    "device": "character device",
    "directory": "directory",
    "symlink-to-device": "character device",
}


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("kind", KINDS)
def test_a_special_target_is_refused_before_the_domain_is_touched(
    conn: virtjob.Connection, tmp_path: Path, kind: str, op: str
) -> None:
    """Save or dump onto a FIFO, socket, device, directory or symlink to a device: refused at
    the call, naming the path; the domain runs on, no job, the file is left as it was."""
    target = tmp_path / "target"
    sock = make_special(target, kind)
    try:
        before = snapshot(tmp_path)
        dom = conn.lookup_domain("test")
        with pytest.raises(virtjob.InvalidArgError, match=KINDS[kind]) as caught:
            OPS[op](dom, str(target))
        assert str(target) in caught.value.message
        assert dom.state() is DomainState.RUNNING
        assert conn.list_jobs() == []
        assert snapshot(tmp_path) == before
    finally:
        if sock is not None:
            sock.close()


@pytest.mark.parametrize("op", OPS)
def test_a_link_to_a_pipe_is_refused_and_the_pipe_gets_nothing(
    conn: virtjob.Connection, tmp_path: Path, op: str
) -> None:
    """``virtjob dump test /dev/stdout | gzip``, without naming /dev/stdout: a symlink to
    /proc/self/fd/N of a pipe is refused at the call; the link stays and the pipe is empty."""
    read_end, write_end = os.pipe()
    try:
        os.set_blocking(read_end, False)
        link = tmp_path / "stdout"
        link.symlink_to(f"/proc/self/fd/{write_end}")
        dom = conn.lookup_domain("test")
        with pytest.raises(virtjob.InvalidArgError, match="FIFO"):
            OPS[op](dom, str(link))
        assert link.is_symlink()
        with pytest.raises(BlockingIOError):
            os.read(read_end, 1)
        assert dom.state() is DomainState.RUNNING
        assert conn.list_jobs() == []
    finally:
        os.close(read_end)
        os.close(write_end)


@pytest.mark.parametrize("op", OPS)
def test_a_symlink_to_a_regular_file_is_written_through_keeping_owner_and_mode(
    conn: virtjob.Connection, tmp_path: Path, op: str
) -> None:
    """Through a symlink, the regular file it names is replaced; it keeps its owner (uid 1234)
    and mode (0640); the symlink stays; a save restores through the symlink."""
    if os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root")
    real = tmp_path / "real.out"
    real.write_bytes(b"old")
    os.chown(real, 1234, 1234)
    real.chmod(0o640)
    link = tmp_path / "link.out"
    link.symlink_to(real)
    dom = conn.lookup_domain("test")
    OPS[op](dom, str(link)).result(timeout=30)
    assert link.is_symlink()
    info = real.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (1234, 1234, 0o640)
    assert real.read_bytes() != b"old"
    assert sorted(os.listdir(tmp_path)) == ["link.out", "real.out"]
    if op == "save":
        assert conn.restore(str(link)) == dom
        assert dom.state() is DomainState.RUNNING


def test_a_250_byte_name_saves_and_restores(conn: virtjob.Connection, tmp_path: Path) -> None:
    """A legal long file name is a fine target: the partial name beside it stays short."""
    target = tmp_path / ("s" * 250)
    dom = conn.lookup_domain("test")
    dom.save(str(target))
    assert os.listdir(tmp_path) == [target.name]
    conn.restore(str(target))
    assert dom.state() is DomainState.RUNNING


def test_a_stale_partial_is_cleaned_by_the_next_save(
    conn: virtjob.Connection, tmp_path: Path
) -> None:
    """A partial a killed save left beside its target goes with the next save to it."""
    target = tmp_path / "dom.save"
    stale = tmp_path / partial_name(target.name)
    stale.write_bytes(b"the first half of a save whose process was killed")
    conn.lookup_domain("test").save(str(target))
    assert os.listdir(tmp_path) == ["dom.save"]


@pytest.mark.timeout(20)
@pytest.mark.parametrize("kind", ["fifo", "device", "symlink-to-device"])
def test_restore_from_a_special_file_is_refused_at_once(
    conn: virtjob.Connection, tmp_path: Path, kind: str
) -> None:
    """A FIFO (no writer: opening it would block), a device or a symlink to one is refused
    at the call, without waiting; nothing is restored."""
    conn.lookup_domain("test").destroy()
    source = tmp_path / "source.save"
    make_special(source, kind)
    with pytest.raises(virtjob.InvalidArgError, match="not a regular file"):
        conn.restore_job(str(source))
    assert conn.list_jobs() == []
    assert conn.lookup_domain("test").state() is DomainState.SHUTOFF


# -- re-checked when the job starts ----------------------------------------------------------


class Slot:
    """The one job slot of a host: `hold()` fills it with a slow network job, `release()`
    cancels that job. Jobs started while it is held wait QUEUED, so what they find when they
    start is up to the test."""

    def __init__(self, host: test_host.TestHost, uri: str) -> None:
        self._crawl = test_driver.TestDriver(host, 1 << 20, uri)
        self._held: list[Job] = []

    def hold(self) -> None:
        """Fill the slot (the job stays running until `release()`)."""
        n = len(self._held)
        self._held.append(self._crawl.create_network_job(network_xml(f"blocker{n}", f"vjblock{n}")))

    def release(self) -> None:
        """Free the slot."""
        for job in self._held:
            job.cancel()
            job.wait(timeout=10)


@pytest.fixture
def one_slot() -> Iterator[tuple[Connection, Slot]]:
    """A connection to a fresh test host that runs one job at a time, and that slot."""
    name = f"files{next(_hosts)}"
    host = test_host.TestHost(name, jobs=LocalJobDriver(1))
    uri = f"test:///{name}?rate={FAST}"
    conn = Connection(test_driver.TestDriver(host, FAST, uri), parse_uri(uri))
    slot = Slot(host, uri)
    try:
        yield conn, slot
    finally:
        slot.release()
        conn.close()
        host.jobs.close(timeout=10)


@pytest.mark.parametrize("op", OPS)
def test_a_target_replaced_by_a_fifo_while_queued_is_refused_when_the_job_starts(
    one_slot: tuple[Connection, Slot], tmp_path: Path, op: str
) -> None:
    """Checked fine at the call, the target becomes a FIFO while the job waits: the job fails
    with InvalidArgError before the domain is paused, and the FIFO is left alone."""
    conn, slot = one_slot
    target = tmp_path / "later.out"
    dom = conn.lookup_domain("test")
    slot.hold()
    job = OPS[op](dom, str(target))
    assert job.info().state is JobState.QUEUED
    os.mkfifo(target)
    slot.release()
    with pytest.raises(virtjob.InvalidArgError, match="FIFO"):
        job.result(timeout=10)
    assert dom.state() is DomainState.RUNNING
    assert os.listdir(tmp_path) == ["later.out"]
    assert stat.S_ISFIFO(target.lstat().st_mode)


@pytest.fixture
def dirs(tmp_path: Path) -> dict[str, Path]:
    """An allowed directory holding an excluded one (a daemon's state), and one outside."""
    made = {
        "allowed": tmp_path / "allowed",
        "state": tmp_path / "allowed" / "state",
        "outside": tmp_path / "outside",
    }
    for directory in made.values():
        directory.mkdir()
    return made


def confine(conn: virtjob.Connection, dirs: dict[str, Path]) -> None:
    """Confine the host of `conn` to `dirs["allowed"]`, excluding `dirs["state"]`."""
    conn.driver.confine(Confinement(dirs=(str(dirs["allowed"]),), excluded=(str(dirs["state"]),)))


@pytest.mark.parametrize("op", OPS)
def test_a_confined_host_refuses_targets_outside_and_in_the_excluded_dir(
    conn: virtjob.Connection, dirs: dict[str, Path], op: str
) -> None:
    """Outside the allowed dirs, in the excluded one, or out through a symlink: refused at the
    call with AccessDeniedError; inside, the job runs."""
    confine(conn, dirs)
    (dirs["state"] / "virtjobd.sqlite3").write_bytes(b"the daemon's database")
    (dirs["allowed"] / "out").symlink_to(dirs["outside"])
    dom = conn.lookup_domain("test")
    for path in (
        dirs["outside"] / "x.out",
        dirs["state"] / "virtjobd.sqlite3",
        dirs["state"] / "new.out",
        dirs["allowed"] / "out" / "x.out",
    ):
        with pytest.raises(virtjob.AccessDeniedError):
            OPS[op](dom, str(path))
    assert conn.list_jobs() == []
    assert dom.state() is DomainState.RUNNING
    assert os.listdir(dirs["outside"]) == []
    assert os.listdir(dirs["state"]) == ["virtjobd.sqlite3"]
    assert (dirs["state"] / "virtjobd.sqlite3").read_bytes() == b"the daemon's database"
    OPS[op](dom, str(dirs["allowed"] / "ok.out")).result(timeout=30)
    assert (dirs["allowed"] / "ok.out").is_file()


@pytest.mark.parametrize("op", OPS)
def test_a_directory_swapped_for_a_symlink_while_queued_cannot_escape(
    one_slot: tuple[Connection, Slot], dirs: dict[str, Path], op: str
) -> None:
    """The path is fine when the job is requested; while it waits in the queue its directory
    becomes a symlink to outside the allowed dirs: the job fails with AccessDeniedError and
    nothing is written outside."""
    conn, slot = one_slot
    confine(conn, dirs)
    sub = dirs["allowed"] / "sub"
    sub.mkdir()
    dom = conn.lookup_domain("test")
    slot.hold()
    job = OPS[op](dom, str(sub / "x.out"))
    assert job.info().state is JobState.QUEUED
    sub.rmdir()
    sub.symlink_to(dirs["outside"])
    slot.release()
    with pytest.raises(virtjob.AccessDeniedError, match="outside"):
        job.result(timeout=10)
    assert dom.state() is DomainState.RUNNING
    assert os.listdir(dirs["outside"]) == []


def test_a_confined_restore_reads_only_inside(
    conn: virtjob.Connection, dirs: dict[str, Path]
) -> None:
    """A save file outside the allowed dirs, or in the excluded one, is not read."""
    dom = conn.lookup_domain("test")
    dom.save(str(dirs["outside"] / "x.save"))
    confine(conn, dirs)
    with pytest.raises(virtjob.AccessDeniedError, match="outside"):
        conn.restore_job(str(dirs["outside"] / "x.save"))
    os.rename(dirs["outside"] / "x.save", dirs["state"] / "x.save")
    with pytest.raises(virtjob.AccessDeniedError, match="never lets"):
        conn.restore_job(str(dirs["state"] / "x.save"))
    os.rename(dirs["state"] / "x.save", dirs["allowed"] / "x.save")
    assert conn.restore(str(dirs["allowed"] / "x.save")) == dom


# -- memory (finding 9) -----------------------------------------------------------------------


def craft_save(path: Path, xml: str, image_length: int) -> None:
    """A save file with a valid header and checksum whose image is `image_length` zero bytes
    (stored sparse: cheap on disk)."""
    data = xml.encode("utf-8")
    digest = hashlib.sha256(data)
    zeros = bytes(MIB)
    for _ in range(image_length // MIB):
        digest.update(zeros)
    digest.update(bytes(image_length % MIB))
    header = MAGIC + FORMAT_VERSION.to_bytes(4, "little") + b"test".ljust(16, b"\0")
    header += len(data).to_bytes(4, "little") + image_length.to_bytes(8, "little")
    header += digest.digest()
    with path.open("wb") as out:
        out.write(header + data)
        out.truncate(len(header) + len(data) + image_length)


def test_a_crafted_huge_image_is_refused_without_being_read(
    conn: virtjob.Connection, tmp_path: Path
) -> None:
    """A valid-looking save of 'test' (512 MiB of memory, so a 128 KiB compact image) with a
    96 MiB image of zeros is refused at the call, without reading the image into memory;
    nothing is restored."""
    dom = conn.lookup_domain("test")
    xml = dom.xml()
    dom.destroy()
    crafted = tmp_path / "crafted.save"
    craft_save(crafted, xml, 96 * MIB)
    with SaveFileReader(str(crafted), "test") as reader:
        assert reader.verify()  # intact: only its size gives it away
    tracemalloc.start()
    try:
        with pytest.raises(virtjob.InvalidArgError, match="memory image"):
            conn.restore_job(str(crafted))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * MIB
    assert conn.list_jobs() == []
    assert dom.state() is DomainState.SHUTOFF


@pytest.mark.timeout(20)
def test_a_restore_source_swapped_while_queued_is_refused_when_the_job_starts(
    one_slot: tuple[Connection, Slot], dirs: dict[str, Path]
) -> None:
    """A restore accepted from an allowed directory fails when it starts if, while it waited,
    its directory became a symlink to outside (holding a save file too: AccessDeniedError), or
    its file became a FIFO (InvalidArgError, at once, not blocking)."""
    conn, slot = one_slot
    dom = conn.lookup_domain("test")
    dom.save(str(dirs["outside"] / "x.save"))
    saved = (dirs["outside"] / "x.save").read_bytes()
    confine(conn, dirs)
    sub = dirs["allowed"] / "sub"
    sub.mkdir()
    for swap, error, words in [
        ("directory", virtjob.AccessDeniedError, "outside"),
        ("fifo", virtjob.InvalidArgError, "FIFO"),
    ]:
        (sub / "x.save").write_bytes(saved)
        slot.hold()
        restore = conn.restore_job(str(sub / "x.save"))
        assert restore.info().state is JobState.QUEUED
        (sub / "x.save").unlink()
        if swap == "directory":
            sub.rmdir()
            sub.symlink_to(dirs["outside"])
        else:
            os.mkfifo(sub / "x.save")
        slot.release()
        with pytest.raises(error, match=words):
            restore.result(timeout=10)
        assert dom.state() is DomainState.SHUTOFF
        if swap == "directory":
            sub.unlink()
            sub.mkdir()


# -- one writer per target; the excluded directory by any path (a second attack) --------------


def until_writing(job: virtjob.Job) -> None:
    """Return once `job` has written some of its file (its partial file exists)."""
    for info in job.watch(interval=0):
        if info.processed:
            return
    raise AssertionError(f"job {job.id} ended before it wrote anything: {job.info()}")


def start_other(conn: virtjob.Connection) -> virtjob.Domain:
    """Start a transient 64 MiB domain 'other' beside 'test'."""
    return conn.create_domain(domain_xml("other", 64))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("op", OPS)
def test_a_target_naming_another_jobs_partial_file_is_refused(
    conn: virtjob.Connection, crawl: virtjob.Connection, tmp_path: Path, op: str
) -> None:
    """A save of 'test' to A.save is being written; a save or dump of 'other' aimed at its
    partial file used to succeed, so A.save ended up holding 'other' and 'test' was shut off
    for nothing. It is refused at the call, 'other' is not touched, and the first job's file
    stays its own."""
    other = start_other(conn)
    first = crawl.lookup_domain("test").save_job(str(tmp_path / "A.save"))
    until_writing(first)
    (partial,) = (name for name in os.listdir(tmp_path) if name.startswith(PARTIAL_MARK))
    jobs = {job.id for job in conn.list_jobs()}
    with pytest.raises(virtjob.InvalidArgError, match="reserved"):
        OPS[op](other, str(tmp_path / partial))
    assert {job.id for job in conn.list_jobs()} == jobs
    assert other.state() is DomainState.RUNNING
    assert os.listdir(tmp_path) == [partial]
    first.cancel()
    assert first.wait(timeout=30).state is JobState.CANCELLED
    assert os.listdir(tmp_path) == []
    assert crawl.lookup_domain("test").state() is DomainState.RUNNING


@pytest.mark.timeout(60)
@pytest.mark.parametrize("op", OPS)
def test_a_second_save_to_a_target_being_written_is_refused_at_the_call(
    conn: virtjob.Connection, crawl: virtjob.Connection, tmp_path: Path, op: str
) -> None:
    """Two saves to same.save at once: both used to succeed, the file held one domain and the
    other (transient) domain was gone for good. The second is refused at the call, naming the
    path and what to do; 'other' keeps running."""
    other = start_other(conn)
    target = tmp_path / "same.save"
    first = crawl.lookup_domain("test").save_job(str(target))
    until_writing(first)
    with pytest.raises(virtjob.OperationInvalidError) as refused:
        OPS[op](other, str(target))
    assert f"another save or dump is writing {target}" in refused.value.message
    assert "wait for it or choose another path" in refused.value.message
    assert other.state() is DomainState.RUNNING
    first.cancel()
    first.wait(timeout=30)
    OPS[op](other, str(target)).result(timeout=30)  # free again
    assert target.is_file()


@pytest.fixture
def two_slots() -> Iterator[tuple[Connection, Connection, list[Job]]]:
    """A fresh test host running two jobs at a time, 'other' running beside 'test': a fast and a
    slow connection to it, and two slow network jobs filling both slots (cancel one to free a
    slot)."""
    name = f"files{next(_hosts)}"
    host = test_host.TestHost(name, jobs=LocalJobDriver(2))
    fast_uri, slow_uri = f"test:///{name}?rate={FAST}", f"test:///{name}?rate={16 * MIB}"
    fast = Connection(test_driver.TestDriver(host, FAST, fast_uri), parse_uri(fast_uri))
    slow = Connection(test_driver.TestDriver(host, 16 * MIB, slow_uri), parse_uri(slow_uri))
    crawl = test_driver.TestDriver(host, 1 << 20, slow_uri)
    start_other(fast)
    blockers = [crawl.create_network_job(network_xml(f"blocker{n}", f"vjblk{n}")) for n in (0, 1)]
    try:
        yield fast, slow, blockers
    finally:
        for job in [*blockers, *slow.list_jobs()]:
            job.cancel()
            job.wait(timeout=10)
        fast.close()
        slow.close()
        host.jobs.close(timeout=10)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("op", OPS)
def test_a_second_writer_of_a_target_is_refused_when_its_job_starts(
    two_slots: tuple[Connection, Connection, list[Job]], tmp_path: Path, op: str
) -> None:
    """Two jobs to one target, both accepted while queued: the first starts and writes; when
    the second starts it fails with OperationInvalidError before its domain is paused."""
    fast, slow, blockers = two_slots
    other = fast.lookup_domain("other")
    target = tmp_path / "same.save"
    first = slow.lookup_domain("test").save_job(str(target))
    second = OPS[op](fast.lookup_domain("other"), str(target))
    assert (first.info().state, second.info().state) == (JobState.QUEUED, JobState.QUEUED)
    blockers[0].cancel()
    until_writing(first)
    blockers[1].cancel()
    with pytest.raises(virtjob.OperationInvalidError, match="another save or dump is writing"):
        second.result(timeout=30)
    assert other.state() is DomainState.RUNNING
    assert first.info().state is JobState.RUNNING
    first.cancel()
    first.wait(timeout=30)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("op", OPS)
def test_the_excluded_directory_bind_mounted_into_an_allowed_one_is_refused(
    conn: virtjob.Connection, dirs: dict[str, Path], op: str
) -> None:
    """`mount --bind STATE allowed/elsewhere`, then a dump onto elsewhere/virtjobd.lock used to
    replace the daemon's lock: refused at the call (AccessDeniedError), nothing changes."""
    confine(conn, dirs)
    (dirs["state"] / "virtjobd.lock").write_bytes(b"lock")
    elsewhere = dirs["allowed"] / "elsewhere"
    elsewhere.mkdir()
    with bind(dirs["state"], elsewhere):
        try:
            dom = conn.lookup_domain("test")
            for name in ("virtjobd.lock", "new.out"):
                with pytest.raises(virtjob.AccessDeniedError, match="never lets"):
                    OPS[op](dom, str(elsewhere / name))
            assert dom.state() is DomainState.RUNNING
            assert os.listdir(dirs["state"]) == ["virtjobd.lock"]
            assert (dirs["state"] / "virtjobd.lock").read_bytes() == b"lock"
        finally:
            for job in conn.list_jobs():  # a job writing through the mount would keep it busy
                job.cancel()
                job.wait(timeout=30)


@pytest.mark.parametrize("op", OPS)
def test_the_excluded_directory_renamed_while_a_job_waits_is_refused_when_it_starts(
    one_slot: tuple[Connection, Slot], dirs: dict[str, Path], op: str
) -> None:
    """Whoever can write the state directory's parent can put it, renamed, where a queued job
    will write (and rename it back afterwards): the job fails with AccessDeniedError when it
    starts, before the domain is touched, and the state directory is left as it was."""
    conn, slot = one_slot
    confine(conn, dirs)
    (dirs["state"] / "virtjobd.sqlite3").write_bytes(b"the daemon's database")
    sub = dirs["allowed"] / "sub"
    sub.mkdir()
    dom = conn.lookup_domain("test")
    slot.hold()
    job = OPS[op](dom, str(sub / "virtjobd.sqlite3"))
    assert job.info().state is JobState.QUEUED
    sub.rmdir()
    dirs["state"].rename(sub)
    try:
        slot.release()
        with pytest.raises(virtjob.AccessDeniedError, match="never lets"):
            job.result(timeout=10)
    finally:
        sub.rename(dirs["state"])
    assert dom.state() is DomainState.RUNNING
    assert os.listdir(dirs["state"]) == ["virtjobd.sqlite3"]
    assert (dirs["state"] / "virtjobd.sqlite3").read_bytes() == b"the daemon's database"
