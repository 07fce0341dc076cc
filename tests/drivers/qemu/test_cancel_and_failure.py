"""Cancelled and failed jobs on real guests leave nothing half-done: the guest runs on as
before, no file (not even a hidden partial one) stays, no QEMU is left behind."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import virtjob
from tests.drivers.qemu.helpers import (
    BIG_MEMORY_MIB,
    BIG_PATTERN_MIB,
    DEADLINE,
    STARTERS,
    Guest,
    QemuEnv,
    assert_midway,
    assert_no_file,
    assert_same_memory,
    first_progress,
    state_or_gone,
    stopped,
    streaming_restore,
)
from virtjob import DomainState, JobState

CANCEL_DEADLINE = DEADLINE


def assert_runs_as_before(env: QemuEnv, guest: Guest, pid: int) -> None:
    """The same QEMU runs the guest, with the same RAM."""
    assert guest.dom.state() is DomainState.RUNNING
    assert env.pid(guest.dom) == pid
    assert_same_memory(env.memory_at(guest.dom, len(guest.pattern)), guest.pattern)


@pytest.mark.parametrize("operation", sorted(STARTERS))
def test_cancel_midway_leaves_the_guest_running_as_before(
    env: QemuEnv, big: Guest, operation: str
) -> None:
    """Cancelled after its first progress report, a save or dump ends CANCELLED within a
    second; the guest runs on with the same process and memory; no file remains."""
    pid = env.pid(big.dom)
    target = Path(env.path(f"big.{operation}"))
    job = STARTERS[operation](big.dom, str(target))
    first_progress(job)
    asked = time.monotonic()
    job.cancel()
    info = job.wait(timeout=10)
    took = time.monotonic() - asked
    assert info.state is JobState.CANCELLED
    assert took < CANCEL_DEADLINE, f"the cancel took {took:.2f} s"
    assert info.cancel_requested
    with pytest.raises(virtjob.JobCancelledError, match=job.id):
        job.result()
    job.destroy()
    assert_no_file(target)
    assert_runs_as_before(env, big, pid)
    # ...and the next job on it works, to the end.
    STARTERS[operation](big.dom, str(target)).result(timeout=60)
    assert target.exists()


def test_cancel_midway_on_a_paused_guest_leaves_it_paused(env: QemuEnv, big: Guest) -> None:
    """A cancelled save of a paused guest puts it back paused, not running."""
    big.dom.suspend()
    target = Path(env.path("big.save"))
    job = big.dom.save_job(str(target))
    first_progress(job)
    job.cancel()
    assert job.wait(timeout=10).state is JobState.CANCELLED
    assert big.dom.state() is DomainState.PAUSED
    assert_no_file(target)
    big.dom.resume()
    assert_same_memory(env.memory_at(big.dom, len(big.pattern)), big.pattern)


def test_qemu_killed_midway_through_a_save_fails_the_job(env: QemuEnv) -> None:
    """kill -9 of QEMU during a save: the job FAILS with an OperationFailedError saying QEMU
    went away, no file remains, and the persistent domain is shut off or crashed."""
    pattern, _ = env.write_pattern(BIG_PATTERN_MIB << 20)
    dom = env.conn.define_domain(
        env.domain_xml("doomed", memory_mib=BIG_MEMORY_MIB, pattern=pattern)
    )
    dom.start()
    target = Path(env.path("doomed.save"))
    job = dom.save_job(str(target))
    first_progress(job)
    os.kill(env.pid(dom), signal.SIGKILL)
    killed = time.monotonic()
    info = job.wait(timeout=30)
    took = time.monotonic() - killed
    assert info.state is JobState.FAILED
    error = job.error()
    assert isinstance(error, virtjob.OperationFailedError)
    assert "doomed" in error.message
    assert "QEMU" in error.message
    assert "exited during the save (status -9)" in error.message
    assert took < 5, f"noticing the dead QEMU took {took:.2f} s"
    with pytest.raises(virtjob.OperationFailedError):
        job.result()
    assert_no_file(target)
    assert dom.state() in (DomainState.SHUTOFF, DomainState.CRASHED)
    assert dom.is_persistent()
    assert env.qemu_pids() == []
    dom.start()  # the domain is usable again
    assert dom.state() is DomainState.RUNNING


@pytest.mark.parametrize("operation", sorted(STARTERS))
def test_full_disk_fails_cleanly(env: QemuEnv, small_disk: Path, operation: str) -> None:
    """A save or dump that fills its (8 MiB) filesystem FAILS saying so; no file stays, the
    space is given back, and the guest runs on as before."""
    guest = env.create("hog", memory_mib=128, pattern_mib=32)
    pid = env.pid(guest.dom)
    target = small_disk / f"hog.{operation}"
    job = STARTERS[operation](guest.dom, str(target))
    info = job.wait(timeout=60)
    assert info.state is JobState.FAILED
    error = job.error()
    assert isinstance(error, virtjob.OperationFailedError)
    assert "No space left on device" in error.message
    assert str(target) in error.message
    job.destroy()
    assert_no_file(target)
    assert list(small_disk.iterdir()) == []
    stats = os.statvfs(small_disk)
    assert stats.f_bfree == stats.f_blocks, "the partial file's space was not given back"
    assert_runs_as_before(env, guest, pid)


def test_second_job_on_a_busy_domain_is_refused_naming_the_first(env: QemuEnv, big: Guest) -> None:
    """While a save runs, other jobs and immediate operations on the domain are refused with
    OperationInvalidError naming the save's job id (all but destroy: see test_hung_qemu)."""
    target = Path(env.path("big.save"))
    job = big.dom.save_job(str(target))
    refused: list[Callable[[], object]] = [
        lambda: big.dom.save_job(env.path("other.save")),
        lambda: big.dom.dump_core_job(env.path("other.core")),
        big.dom.suspend,
        big.dom.resume,
        big.dom.shutdown,
    ]
    for call in refused:
        with pytest.raises(virtjob.OperationInvalidError, match=job.id):
            call()
    assert not job.info().state.terminal, "the save ended before the refusals were checked"
    assert job in env.conn.list_jobs()
    job.cancel()
    assert job.wait(timeout=10).state is JobState.CANCELLED
    assert [p.name for p in Path(env.files).iterdir() if p.suffix in (".save", ".core")] == []
    # Free again: a dump goes through.
    big.dom.dump_core(env.path("after.core"))
    assert big.dom.state() is DomainState.RUNNING
    assert state_or_gone(big.dom) is DomainState.RUNNING


@pytest.mark.parametrize("phase", ["verify", "load"])
def test_cancelled_restore_leaves_no_domain_and_no_qemu(
    env: QemuEnv, big: Guest, phase: str
) -> None:
    """A restore cancelled while it checks the file (before QEMU starts) or while it streams
    the image into QEMU ends CANCELLED within a second, with no domain and no QEMU left."""
    target = Path(env.path("big.save"))
    big.dom.save(str(target))
    launched = env.launches()
    job = env.conn.restore_job(str(target))
    # The job's bytes are the image twice: checked once, then streamed into QEMU.
    for info in job.watch(interval=0):
        if info.processed and info.total:
            half = info.total // 2
            if (info.processed < half) if phase == "verify" else (info.processed > half):
                break
    else:
        raise AssertionError(f"the restore ended before its {phase} phase: {job.info()}")
    assert info.processed < info.total, f"the restore was over before we could act: {info}"
    asked = time.monotonic()
    job.cancel()
    assert job.wait(timeout=10).state is JobState.CANCELLED
    assert time.monotonic() - asked < CANCEL_DEADLINE
    assert state_or_gone(big.dom) is None
    assert env.conn.list_domains() == []
    assert env.qemu_pids() == []
    assert env.launches() == launched + (phase == "load")
    assert target.exists(), "a cancelled restore leaves the save file alone"
    restored = env.conn.restore(str(target))  # and it restores fine afterwards
    assert_same_memory(env.memory_at(restored, len(big.pattern)), big.pattern)


@pytest.mark.parametrize("operation", ["create", "start"])
def test_cancelled_boot_leaves_no_qemu(env: QemuEnv, operation: str) -> None:
    """A create or start cancelled while QEMU is being launched ends CANCELLED: no transient
    domain appears, a defined one stays SHUTOFF, no QEMU is left."""
    xml = env.domain_xml("boot")
    if operation == "create":
        job = env.conn.create_domain_job(xml)
    else:
        dom = env.conn.define_domain(xml)
        job = dom.start_job()
    asked = time.monotonic()
    job.cancel()  # QEMU takes far longer than this to come up
    assert job.wait(timeout=30).state is JobState.CANCELLED
    assert time.monotonic() - asked < CANCEL_DEADLINE
    assert job.domain() is None
    assert env.qemu_pids() == []
    if operation == "create":
        assert env.conn.list_domains() == []
    else:
        assert dom.state() is DomainState.SHUTOFF
        dom.start()
        assert dom.state() is DomainState.RUNNING


def test_qemu_killed_midway_through_a_restore_reports_its_status_and_log(
    env: QemuEnv, big: Guest
) -> None:
    """kill -9 of the restoring QEMU while the image streams into it: the job FAILS with
    QEMU's exit status, the signal and its log's last lines (not the broken pipe our feeder
    saw); no domain and no QEMU remain, the save file is untouched and restores afterwards."""
    target = Path(env.path("big.save"))
    big.dom.save(str(target))
    job = env.conn.restore_job(str(target))
    pid = streaming_restore(env, job)
    with stopped(pid):  # holds QEMU mid-stream, our feeder mid-write
        assert_midway(job)
        os.kill(pid, signal.SIGKILL)
    assert job.wait(timeout=30).state is JobState.FAILED
    error = job.error()
    assert isinstance(error, virtjob.OperationFailedError)
    assert "QEMU for domain 'big' exited during the restore (status -9)" in error.message
    assert "killed by SIGKILL" in error.message
    assert "its last output:" in error.message
    assert "Errno" not in error.message
    assert "stopped reading" not in error.message
    assert env.qemu_pids() == []
    assert env.conn.list_domains() == []
    restored = env.conn.restore(str(target))
    assert_same_memory(env.memory_at(restored, len(big.pattern)), big.pattern)
