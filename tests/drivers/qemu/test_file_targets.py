"""Save and dump targets and restore sources on real QEMU guests (issue 10: 1, 4, 5, 16).

A save or dump writes one regular file and touches nothing else, refused before the guest is
paused; a restore reads only a regular file and never blocks on a FIFO; a confined host keeps
its files inside its directories, checked again when the job starts. Every special file and
symlink is made inside the test's own directory.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

import virtjob
from tests.drivers.qemu.helpers import QemuEnv
from virtjob import DomainState
from virtjob.drivers.base import Confinement
from virtjob.files import partial_name

OPS: dict[str, Callable[[virtjob.Domain, str], virtjob.Job]] = {
    "save": lambda dom, path: dom.save_job(path),
    "dump": lambda dom, path: dom.dump_core_job(path),
}


def make_special(path: Path, kind: str) -> None:
    """A FIFO, a character device node, or a symlink to one, at `path`."""
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    else:
        make_special(path.with_suffix(".dev"), "device")
        path.symlink_to(path.with_suffix(".dev"))


def snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    """Every name in `directory` with its type bits and inode."""
    return {
        entry.name: (stat.S_IFMT(entry.stat(follow_symlinks=False).st_mode), entry.inode())
        for entry in os.scandir(directory)
    }


@pytest.mark.parametrize("op", OPS)
def test_special_targets_are_refused_before_the_guest_is_paused(
    env: QemuEnv, tmp_path: Path, op: str
) -> None:
    """A FIFO, a device node and a symlink to a device are refused at the call, naming the
    path and what it is; the guest runs on, no job starts, the files stay as they were."""
    dom = env.create("g").dom
    places = tmp_path / "places"
    places.mkdir()
    for kind, words in [
        ("fifo", "FIFO"),
        ("device", "character device"),
        ("symlink", "character device"),
    ]:
        target = places / kind
        make_special(target, kind)
        before = snapshot(places)
        with pytest.raises(virtjob.InvalidArgError, match=words) as caught:
            OPS[op](dom, str(target))
        assert str(target) in caught.value.message
        assert snapshot(places) == before
    assert dom.state() is DomainState.RUNNING
    assert env.conn.list_jobs() == []


def test_save_through_a_symlink_keeps_the_files_owner_and_mode_and_restores(
    env: QemuEnv,
) -> None:
    """A save through a symlink replaces the regular file it names, keeping its owner (uid
    1234) and mode (0640); a stale partial of that file goes; the save restores through the
    symlink; a dump to a 250-byte name works."""
    if os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root")
    dom = env.create("g").dom
    real = env.files / "real.save"
    real.write_bytes(b"old")
    os.chown(real, 1234, 1234)
    real.chmod(0o640)
    link = env.files / "link.save"
    link.symlink_to(real)
    stale = env.files / partial_name(real.name)
    stale.write_bytes(b"left by a killed save")
    long_name = env.files / ("d" * 250)
    dom.dump_core(str(long_name))
    assert long_name.stat().st_size > 0
    long_name.unlink()
    dom.save(str(link))
    assert link.is_symlink()
    info = real.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (1234, 1234, 0o640)
    assert sorted(os.listdir(env.files)) == ["link.save", "real.save"]
    assert env.conn.restore(str(link)) == dom
    assert dom.state() is DomainState.RUNNING


@pytest.mark.timeout(30)
def test_restore_from_a_fifo_is_refused_at_once(env: QemuEnv) -> None:
    """A FIFO with no writer is refused at the call without blocking; no QEMU starts."""
    fifo = env.files / "pipe.save"
    os.mkfifo(fifo)
    with pytest.raises(virtjob.InvalidArgError, match="FIFO"):
        env.conn.restore_job(str(fifo))
    assert env.launches() == 0
    assert env.conn.list_jobs() == []


def test_a_confined_host_refuses_outside_paths_and_the_state_dir(
    env: QemuEnv, tmp_path: Path
) -> None:
    """Confined to the test's directory minus the state dir: a save or dump outside it or
    into the state dir, and a restore from outside, are refused at the call."""
    dom = env.create("g").dom
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    try:
        env.conn.driver.confine(Confinement(dirs=(str(tmp_path),), excluded=(str(env.state_dir),)))
        for op in OPS.values():
            for path in (outside / "x", env.state_dir / "x", env.state_dir / "qemu"):
                with pytest.raises(virtjob.AccessDeniedError):
                    op(dom, str(path))
        (outside / "x.save").write_bytes(b"")
        with pytest.raises(virtjob.AccessDeniedError, match="outside"):
            env.conn.restore_job(str(outside / "x.save"))
        assert sorted(os.listdir(outside)) == ["x.save"]
        assert dom.state() is DomainState.RUNNING
        assert env.conn.list_jobs() == []
    finally:
        for entry in outside.iterdir():
            entry.unlink()
        outside.rmdir()


@pytest.mark.parametrize("op", OPS)
def test_a_directory_swapped_for_a_symlink_before_the_job_starts_cannot_escape(
    env: QemuEnv, tmp_path: Path, op: str
) -> None:
    """The path is fine at the call; before the job gets to open it (held back by the host's
    lock, which its first step takes) its directory becomes a symlink to outside: the job
    fails with AccessDeniedError, the guest runs on, nothing is written outside."""
    dom = env.create("g").dom
    outside = tmp_path / "outside"
    outside.mkdir()
    sub = env.files / "sub"
    sub.mkdir()
    env.conn.driver.confine(Confinement(dirs=(str(env.files),)))
    with env.host.lock:
        job = OPS[op](dom, str(sub / "x"))
        sub.rmdir()
        sub.symlink_to(outside)
    with pytest.raises(virtjob.AccessDeniedError, match="outside"):
        job.result(timeout=30)
    assert dom.state() is DomainState.RUNNING
    assert os.listdir(outside) == []
