"""The QEMU driver's log: each QMP command and its answer at DEBUG, each QEMU's start and end."""

from __future__ import annotations

import logging
import os
import re
import signal

import pytest

import virtjob
from tests.drivers.qemu.helpers import QemuEnv, wait_until


def _messages(caplog: pytest.LogCaptureFixture, logger: str, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger and r.levelno == level]


def test_qmp_commands_are_logged_with_their_answers(
    env: QemuEnv, caplog: pytest.LogCaptureFixture
) -> None:
    """Every command goes out and comes back in the log, with how long it took; a refused
    one says QEMU's error class and description."""
    caplog.set_level(logging.DEBUG, logger="virtjob.qemu")
    guest = env.create("chatty")
    with env.host.lock:
        process = env.host.domains[guest.dom.uuid].process
    assert process is not None
    with pytest.raises(virtjob.OperationFailedError, match="refused 'no-such-command'"):
        process.monitor.execute("no-such-command")
    qmp = _messages(caplog, "virtjob.qemu.qmp", logging.DEBUG)
    assert any(re.fullmatch(r"<- domain 'chatty': greeted, .* in \d+\.\d{3} s", m) for m in qmp)
    assert "-> domain 'chatty': query-status {}" in qmp
    assert any(
        re.fullmatch(r"<- domain 'chatty': query-status in \d+\.\d{3} s: \{.*'running'.*\}", m)
        for m in qmp
    ), qmp
    assert "-> domain 'chatty': no-such-command {}" in qmp
    [refused] = [m for m in qmp if m.startswith("<- domain 'chatty': no-such-command")]
    assert re.fullmatch(r".* after \d+\.\d{3} s: refused: CommandNotFound: .+", refused)


def test_a_qemu_s_start_and_end_are_logged_with_who_ended_it(
    env: QemuEnv, caplog: pytest.LogCaptureFixture
) -> None:
    """Start at INFO (the command line at DEBUG); a destroy's kill at INFO naming why; a QEMU
    killed behind virtjob's back at WARNING, pointing at its log."""
    caplog.set_level(logging.DEBUG, logger="virtjob.qemu")
    destroyed = env.create("ended")
    pid = env.pid(destroyed.dom)
    info = _messages(caplog, "virtjob.qemu", logging.INFO)
    assert f"started QEMU for domain 'ended' (pid {pid})" in info
    [line] = [
        m
        for m in _messages(caplog, "virtjob.qemu", logging.DEBUG)
        if m.startswith("QEMU command line of domain 'ended': ")
    ]
    assert "qemu-system-x86_64" in line
    destroyed.dom.destroy()
    assert (
        f"QEMU of domain 'ended' (pid {pid}) ended (killed by SIGKILL) as virtjob asked:"
        " domain 'ended' was destroyed"
    ) in _messages(caplog, "virtjob.qemu", logging.INFO)

    crashed = env.create("crashing")
    pid = env.pid(crashed.dom)
    os.kill(pid, signal.SIGKILL)
    wait_until(
        lambda: bool(_messages(caplog, "virtjob.qemu", logging.WARNING)), "the warning of a crash"
    )
    [warning] = _messages(caplog, "virtjob.qemu", logging.WARNING)
    assert warning.startswith(
        f"QEMU of domain 'crashing' (pid {pid}) ended on its own (killed by SIGKILL):"
        " the domain crashed; see its log "
    )
    assert warning.endswith("crashing.log")
