"""A QEMU that does not answer (stopped with SIGSTOP mid-job) never holds the user up.

Cancel and destroy reach a final state within a second (a bounded `job.wait` is the
assertion); a cancel that cannot undo says so and leaves no partial file; the domain reads
paused, not crashed; once QEMU runs again the guest is intact.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Iterator
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
    wait_until,
)
from virtjob import DomainState, JobState
from virtjob.drivers.qemu.process import QemuProcess
from virtjob.drivers.qemu.workers import Undo


@pytest.mark.parametrize("operation", sorted(STARTERS))
def test_cancel_with_a_stopped_qemu_ends_within_a_second(
    env: QemuEnv, big: Guest, operation: str
) -> None:
    """SIGSTOP of QEMU mid-save or mid-dump, then cancel: the job ends within a second,
    FAILED with an error saying QEMU does not answer and what is left; no file remains; the
    domain reads paused, not crashed. Once QEMU runs again the guest is exactly as before."""
    pid = env.pid(big.dom)
    target = Path(env.path(f"big.{operation}"))
    job = STARTERS[operation](big.dom, str(target))
    first_progress(job)
    with stopped(pid):
        job.cancel()
        info = job.wait(timeout=DEADLINE)  # TimeoutError: the cancel hung on QEMU
        assert info.state is JobState.FAILED
        error = job.error()
        assert isinstance(error, virtjob.OperationFailedError)
        assert f"the {operation} of domain 'big' was cancelled" in error.message
        assert f"(pid {pid}) was stopped (by a signal)" in error.message
        assert "virtjob gave up on it at once" in error.message
        assert "in time" not in error.message, "it gave up at once, without waiting"
        assert "if the domain still runs" in error.message, "true even once it is gone"
        assert_no_file(target)
        asked = time.monotonic()
        assert big.dom.state() is DomainState.PAUSED
        assert big.dom.info().state is DomainState.PAUSED
        assert time.monotonic() - asked < DEADLINE
    # QEMU runs again: it finds its stream broken off and unwinds; the guest is intact.
    if operation == "save":
        wait_until(
            lambda: env.migration_status(big.dom) in ("failed", "cancelled"),
            "QEMU giving up the broken-off save",
        )
        assert big.dom.state() is DomainState.PAUSED, "a cancelled save leaves it paused"
        big.dom.resume()
    else:
        wait_until(lambda: big.dom.state() is DomainState.RUNNING, "QEMU resuming after the dump")
    assert big.dom.state() is DomainState.RUNNING
    assert env.pid(big.dom) == pid
    assert_same_memory(env.memory_at(big.dom, len(big.pattern)), big.pattern)
    assert_no_file(target)


@pytest.mark.parametrize("operation", sorted(STARTERS))
def test_destroy_during_a_job_with_a_stopped_qemu(env: QemuEnv, big: Guest, operation: str) -> None:
    """destroy while a save or dump runs and QEMU does not answer: QEMU is killed at once,
    the job ends within a second FAILED saying the domain was destroyed, no file and no
    QEMU remain, and the (transient) domain is gone."""
    pid = env.pid(big.dom)
    target = Path(env.path(f"big.{operation}"))
    job = STARTERS[operation](big.dom, str(target))
    first_progress(job)
    with stopped(pid):
        asked = time.monotonic()
        big.dom.destroy()
        info = job.wait(timeout=DEADLINE)
        assert time.monotonic() - asked < DEADLINE
    assert info.state is JobState.FAILED
    error = job.error()
    assert isinstance(error, virtjob.OperationFailedError)
    assert f"the {operation} of domain 'big' did not finish" in error.message
    assert "domain 'big' was destroyed" in error.message
    assert_no_file(target)
    assert env.qemu_pids() == []
    assert state_or_gone(big.dom) is None


def test_destroy_during_a_save_of_a_persistent_domain_leaves_it_shut_off(env: QemuEnv) -> None:
    """destroy mid-save (QEMU answering) of a defined domain: the save fails saying so, the
    domain is SHUTOFF (not crashed), can be started again, and nothing is left."""
    pattern, _ = env.write_pattern(BIG_PATTERN_MIB << 20)
    dom = env.conn.define_domain(env.domain_xml("kept", memory_mib=BIG_MEMORY_MIB, pattern=pattern))
    dom.start()
    target = Path(env.path("kept.save"))
    job = dom.save_job(str(target))
    first_progress(job)
    dom.destroy()
    info = job.wait(timeout=DEADLINE)
    assert info.state is JobState.FAILED
    assert "domain 'kept' was destroyed" in str(job.error())
    assert_no_file(target)
    assert dom.state() is DomainState.SHUTOFF
    assert env.qemu_pids() == []
    dom.start()
    assert dom.state() is DomainState.RUNNING


def test_destroy_is_still_refused_while_a_start_brings_the_domain_up(env: QemuEnv) -> None:
    """While a start job boots a defined domain there is no QEMU of it to kill yet: destroy
    is refused naming the job, which can be cancelled instead."""
    dom = env.conn.define_domain(env.domain_xml("booting"))
    job = dom.start_job()
    with pytest.raises(virtjob.OperationInvalidError, match=job.id):
        dom.destroy()
    job.cancel()
    job.wait(timeout=30)


def test_a_stopped_qemu_reads_paused_not_crashed(env: QemuEnv) -> None:
    """dominfo of a domain whose QEMU is stopped says paused at once (it runs no guest code
    but is alive), and running again once QEMU is let go."""
    guest = env.create("idle")
    with stopped(env.pid(guest.dom)):
        asked = time.monotonic()
        assert guest.dom.state() is DomainState.PAUSED
        assert guest.dom.info().state is DomainState.PAUSED
        assert time.monotonic() - asked < DEADLINE
    wait_until(lambda: guest.dom.state() is DomainState.RUNNING, "QEMU answering again")


def test_cancel_of_a_restore_with_a_stopped_qemu_kills_it_within_a_second(
    env: QemuEnv, big: Guest
) -> None:
    """SIGSTOP of the restoring QEMU mid-stream, then cancel: CANCELLED within a second, no
    domain and no QEMU left, the save file untouched."""
    target = Path(env.path("big.save"))
    big.dom.save(str(target))
    job = env.conn.restore_job(str(target))
    pid = streaming_restore(env, job)
    with stopped(pid):
        assert_midway(job)
        job.cancel()
        assert job.wait(timeout=DEADLINE).state is JobState.CANCELLED
    assert env.qemu_pids() == []
    assert env.conn.list_domains() == []
    assert target.exists()


@contextlib.contextmanager
def stop_before(command: str) -> Iterator[list[int]]:
    """SIGSTOP QEMU right before the undo of a cancelled save or dump sends it `command`
    (the first time), after the undo's own check that QEMU runs: the command then meets a
    QEMU that stopped under it. Yields the pids stopped; they are let go on the way out."""
    stopped_pids: list[int] = []

    def hook(process: QemuProcess, sent: str) -> None:
        if sent == command and not stopped_pids:
            os.kill(process.pid, signal.SIGSTOP)
            stopped_pids.append(process.pid)
            wait_until(process.stopped, f"QEMU {process.pid} stopping", 5)

    Undo.before_command = hook
    try:
        yield stopped_pids
    finally:
        Undo.before_command = None
        for pid in stopped_pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


UNDO_COMMANDS = {
    "save": ["migrate_cancel", "query-migrate", "query-status", "cont"],
    "dump": ["query-dump", "query-status"],
}


@pytest.mark.parametrize(
    ("operation", "command"),
    [(operation, command) for operation, commands in UNDO_COMMANDS.items() for command in commands],
)
def test_qemu_stopping_during_any_undo_step_keeps_cancel_within_a_second(
    env: QemuEnv, big: Guest, operation: str, command: str
) -> None:
    """QEMU answers the first undoing commands, then stops (SIGSTOP) under a later one: every
    command of the undo is bounded, and all of them together, so the cancel still ends the
    job within a second, FAILED saying QEMU does not answer; no file remains; once QEMU runs
    again the guest is intact."""
    pid = env.pid(big.dom)
    target = Path(env.path(f"big.{operation}"))
    job = STARTERS[operation](big.dom, str(target))
    first_progress(job)
    with stop_before(command) as stopped_pids:
        asked = time.monotonic()
        job.cancel()
        info = job.wait(timeout=DEADLINE + 5)
        took = time.monotonic() - asked
        assert stopped_pids == [pid], f"the undo never sent {command!r}: {job.error()}"
        assert took < DEADLINE, f"the cancel took {took:.2f} s"
        assert info.state is JobState.FAILED
        error = job.error()
        assert isinstance(error, virtjob.OperationFailedError)
        assert f"the {operation} of domain 'big' was cancelled" in error.message
        assert "did not answer in time" in error.message
        assert_no_file(target)
    if operation == "save":
        wait_until(
            lambda: env.migration_status(big.dom) in ("failed", "cancelled"),
            "QEMU giving up the broken-off save",
        )
        if command != "cont":  # else QEMU runs the cont it was sent once it runs again
            assert big.dom.state() is DomainState.PAUSED, "the error says the guest is paused"
            big.dom.resume()
    wait_until(lambda: big.dom.state() is DomainState.RUNNING, "the guest running again")
    assert env.pid(big.dom) == pid
    assert_same_memory(env.memory_at(big.dom, len(big.pattern)), big.pattern)
    assert_no_file(target)


@pytest.mark.parametrize("operation", sorted(STARTERS))
def test_a_dump_after_a_cancel_that_gave_up_waits_for_qemu_to_unwind(
    env: QemuEnv, big: Guest, operation: str
) -> None:
    """A save or dump cancelled while QEMU is stopped leaves QEMU to unwind it once it runs
    again. A dump asked for meanwhile is refused within a second, saying QEMU is stopped and
    has not unwound the earlier job (it used to wait 30 s for QEMU to answer, then fail); one
    asked for the moment QEMU runs again waits for QEMU to finish unwinding, then dumps the
    intact guest."""
    pid = env.pid(big.dom)
    target = Path(env.path(f"big.{operation}"))
    job = STARTERS[operation](big.dom, str(target))
    first_progress(job)
    second = Path(env.path("second.core"))
    with stopped(pid):
        job.cancel()
        assert job.wait(timeout=DEADLINE).state is JobState.FAILED
        again = big.dom.dump_core_job(str(second))
        asked = time.monotonic()
        info = again.wait(timeout=DEADLINE)  # TimeoutError: it waited on the stopped QEMU
        assert time.monotonic() - asked < DEADLINE
        assert info.state is JobState.FAILED
        error = again.error()
        assert isinstance(error, virtjob.OperationFailedError)
        assert "cannot dump domain 'big'" in error.message
        assert f"has not finished unwinding the {operation}" in error.message
        assert "stopped (by a signal)" in error.message
        assert_no_file(second)
    # QEMU runs again: dump at once, without waiting for it to settle first.
    assert_same_memory(env.memory_at(big.dom, len(big.pattern)), big.pattern)
    if operation == "save":
        assert big.dom.state() is DomainState.PAUSED, "a cancelled save leaves it paused"
        big.dom.resume()
    assert big.dom.state() is DomainState.RUNNING
    assert env.pid(big.dom) == pid
    assert_no_file(target)


def test_destroying_a_stopped_qemu_logs_no_error(
    env: QemuEnv, caplog: pytest.LogCaptureFixture
) -> None:
    """destroy of a QEMU that is stopped with a command unread: the connection reset that
    follows is what virtjob asked for, so qemu.qmp's complaint about it is logged at DEBUG,
    not as an error (nor a warning)."""
    guest = env.create("quiet")
    with env.host.lock:
        process = env.host.domains[guest.dom.uuid].process
    assert process is not None
    caplog.set_level(logging.DEBUG, logger="qemu.qmp")
    with stopped(process.pid):
        with pytest.raises(virtjob.OperationFailedError, match="did not answer"):
            process.monitor.execute("query-status", timeout=0.1)  # stays unread: a reset
        guest.dom.destroy()
    assert state_or_gone(guest.dom) is None
    loud = [
        f"{r.levelname} {r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.name.startswith("qemu.qmp") and r.levelno >= logging.WARNING
    ]
    assert loud == []
    demoted = [r.getMessage() for r in caplog.records if r.name.startswith("qemu.qmp")]
    assert any("Connection" in m or "Reset" in m for m in demoted), demoted
