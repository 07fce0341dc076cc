"""Save, restore and dump of real guests: progress from QEMU, RAM that survives, bad files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import virtjob
from tests.drivers.qemu.helpers import (
    MIB,
    PATTERN_ADDR,
    QemuEnv,
    assert_byte_progress,
    assert_same_memory,
    guest_memory,
    partials,
    state_or_gone,
)
from virtjob import DomainState, JobKind, JobState
from virtjob.savefile import HEADER_SIZE


def test_guest_memory_survives_save_and_restore(env: QemuEnv) -> None:
    """96 MiB of random bytes in guest RAM are in a dump before the save and after the
    restore; save, restore and dump all report byte progress."""
    conn = env.conn
    guest = env.create("keeper", memory_mib=192, pattern_mib=96)
    dom = guest.dom

    before = Path(env.path("before.core"))
    dump = dom.dump_core_job(str(before))
    assert dump.kind is JobKind.DOMAIN_DUMP_CORE
    infos = list(dump.watch(interval=0))
    assert infos[-1].state is JobState.SUCCEEDED, dump.error()
    assert infos[-1].processed == infos[-1].total
    assert (infos[-1].total or 0) >= 192 * MIB
    assert dom.state() is DomainState.RUNNING
    assert_same_memory(guest_memory(before, PATTERN_ADDR, len(guest.pattern)), guest.pattern)

    target = Path(env.path("keeper.save"))
    save = dom.save_job(str(target))
    assert (save.kind, save.subject) == (JobKind.DOMAIN_SAVE, "keeper")
    infos = list(save.watch(interval=0))
    assert infos[-1].state is JobState.SUCCEEDED, save.error()
    assert infos[-1].percent == 100
    assert_byte_progress(infos, at_least=192 * MIB)
    save.destroy()
    assert target.stat().st_size > len(guest.pattern)
    assert state_or_gone(dom) is None, "a saved transient domain is gone"
    assert env.qemu_pids() == []

    restore = conn.restore_job(str(target))
    assert (restore.kind, restore.subject) == (JobKind.DOMAIN_RESTORE, "keeper")
    infos = list(restore.watch(interval=0))
    assert infos[-1].state is JobState.SUCCEEDED, restore.error()
    assert infos[-1].percent == 100
    assert_byte_progress(infos, at_least=target.stat().st_size - HEADER_SIZE)
    restored = restore.domain()
    assert restored == dom
    assert restored.state() is DomainState.RUNNING
    assert not restored.is_persistent()
    assert target.exists(), "restore reads the save file, it does not consume it"
    assert_same_memory(env.memory_at(restored, len(guest.pattern)), guest.pattern)

    with pytest.raises(virtjob.OperationInvalidError, match="running"):
        conn.restore_job(str(target))
    restored.destroy()
    assert state_or_gone(restored) is None
    assert env.qemu_pids() == []


def test_persistent_domain_is_shut_off_by_save_and_back_after_restore(env: QemuEnv) -> None:
    """A defined domain stays defined through a save (SHUTOFF) and a restore (RUNNING)."""
    pattern, data = env.write_pattern(2 * MIB)
    dom = env.conn.define_domain(env.domain_xml("db", pattern=pattern))
    dom.start()
    target = env.path("db.save")
    dom.save(target)
    assert dom.state() is DomainState.SHUTOFF
    assert dom.is_persistent()
    assert env.conn.list_jobs() == [], "a synchronous save leaves no job record"
    restored = env.conn.restore(target)
    assert restored == dom
    assert dom.state() is DomainState.RUNNING
    assert dom.is_persistent()
    assert_same_memory(env.memory_at(dom, len(data)), data)
    dom.destroy()
    assert dom.state() is DomainState.SHUTOFF


def test_save_and_dump_refuse_bad_targets_at_once(env: QemuEnv, tmp_path: Path) -> None:
    """A missing directory or a directory as target is an InvalidArgError at the call."""
    dom = env.create("g").dom
    for call in (dom.save_job, dom.dump_core_job):
        with pytest.raises(virtjob.InvalidArgError, match="does not exist"):
            call(str(tmp_path / "no-such-dir" / "x"))
        with pytest.raises(virtjob.InvalidArgError, match="directory"):
            call(str(tmp_path))
    assert dom.state() is DomainState.RUNNING
    assert env.conn.list_jobs() == []


@pytest.fixture
def foreign_files(tmp_path: Path) -> dict[str, Path]:
    """Files that are not QEMU save files, by kind."""
    files = {
        "random": tmp_path / "random.save",
        "empty": tmp_path / "empty.save",
        "text": tmp_path / "text.save",
        "test-driver": tmp_path / "test-driver.save",
        "missing": tmp_path / "missing.save",
        "directory": tmp_path,
    }
    files["random"].write_bytes(os.urandom(1 * MIB))
    files["empty"].write_bytes(b"")
    files["text"].write_text("<domain><name>x</name></domain>\n")
    with virtjob.open(f"test:///qemu-foreign-{tmp_path.name}?rate={1 << 36}") as test_conn:
        test_conn.lookup_domain("test").save(str(files["test-driver"]))
    return files


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("random", "not a virtjob save file"),
        ("empty", "not a virtjob save file"),
        ("text", "not a virtjob save file"),
        ("test-driver", "'test' driver"),
        ("missing", "does not exist"),
        ("directory", "directory"),
    ],
)
def test_restore_of_a_foreign_file_fails_before_qemu_starts(
    env: QemuEnv, foreign_files: dict[str, Path], kind: str, words: str
) -> None:
    """Anything but a QEMU save file is an InvalidArgError at the call; no QEMU is launched."""
    with pytest.raises(virtjob.InvalidArgError, match=words):
        env.conn.restore_job(str(foreign_files[kind]))
    assert env.launches() == 0
    assert env.conn.list_domains() == []
    assert env.conn.list_jobs() == []


def test_restore_of_a_damaged_save_fails_before_qemu_starts(env: QemuEnv) -> None:
    """A truncated, extended or corrupted save is refused before any QEMU starts (the
    checksum, over the whole image, is checked by the job before it launches anything);
    the intact file then restores."""
    guest = env.create("fragile", pattern_mib=4)
    good = Path(env.path("fragile.save"))
    guest.dom.save(str(good))
    data = good.read_bytes()
    launched = env.launches()

    damaged = Path(env.path("damaged.save"))
    for cut, words in [
        (data[: len(data) - 1], "truncated"),
        (data[: len(data) // 2], "truncated"),
        (data[: HEADER_SIZE - 10], "truncated inside its header"),
        (data + b"\0", "unexpected bytes"),
    ]:
        damaged.write_bytes(cut)
        with pytest.raises(virtjob.InvalidArgError, match=words):
            env.conn.restore_job(str(damaged))

    flipped = bytearray(data)
    flipped[len(data) - len(guest.pattern) // 2] ^= 0xFF
    damaged.write_bytes(bytes(flipped))
    job = env.conn.restore_job(str(damaged))
    info = job.wait(timeout=30)
    assert info.state is JobState.FAILED
    error = job.error()
    assert isinstance(error, virtjob.InvalidArgError)
    assert "checksum" in error.message
    job.destroy()

    assert env.launches() == launched, "a damaged save must not start QEMU"
    assert env.conn.list_domains() == []
    assert env.qemu_pids() == []
    assert partials(env.files) == []

    dom = env.conn.restore(str(good))
    assert_same_memory(env.memory_at(dom, len(guest.pattern)), guest.pattern)
