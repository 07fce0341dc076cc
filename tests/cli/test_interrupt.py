"""Ctrl-C while a command follows its job: cancel, wait for the stop, say so, exit 3."""

from __future__ import annotations

import signal
import subprocess
import threading
from pathlib import Path

import pytest

from tests.cli.helpers import SLOW, Running, host_uri, run_pty
from virtjob.cli.context import App
from virtjob.cli.jobrun import follow
from virtjob.cli.output import CliError, ExitCode
from virtjob.cli.progress import PlainDisplay
from virtjob.jobs import JobContext, JobInfo, JobKind, JobState, LocalJobDriver


def test_ctrl_c_cancels_a_save_in_a_pipe(tmp_path: Path) -> None:
    target = tmp_path / "test.save"
    proc = Running("-c", host_uri(SLOW), "save", "test", str(target))
    proc.wait_for(": running")
    proc.proc.send_signal(signal.SIGINT)
    result = proc.finish()
    assert result.code == ExitCode.CANCELLED, result
    assert "Ctrl-C: cancelling job" in result.err
    last = result.err.splitlines()[-1]
    assert last.startswith("cancelled: job ")
    assert "(domain-save of 'test') was cancelled" in last
    assert f"no save file was written at {target}" in last
    assert last.endswith("domain 'test' is running")
    assert "domain-save test: cancelled" in result.out.splitlines()[-1]
    assert list(tmp_path.iterdir()) == []  # no save file, no partial file beside it
    assert "Traceback" not in result.err


def test_ctrl_c_cancels_a_save_on_a_terminal(tmp_path: Path) -> None:
    target = tmp_path / "test.save"
    sent: list[bool] = []

    def interrupt(out: bytes, proc: subprocess.Popen[bytes]) -> None:
        if not sent and b"running" in out:
            proc.send_signal(signal.SIGINT)
            sent.append(True)

    code, out = run_pty(["-c", host_uri(SLOW), "save", "test", str(target)], on_output=interrupt)
    assert code == ExitCode.CANCELLED, out
    assert "Ctrl-C: cancelling job" in out
    assert "was cancelled" in out
    assert "domain 'test' is running" in out
    assert not target.exists()


def ctrl_c() -> None:
    """Send SIGINT to this process's main thread, as a terminal's Ctrl-C would."""
    main = threading.main_thread().ident
    assert main is not None
    signal.pthread_kill(main, signal.SIGINT)


def test_second_ctrl_c_stops_waiting_for_a_stubborn_job(capsys: pytest.CaptureFixture[str]) -> None:
    """A job slow to honour its cancel: the second Ctrl-C detaches (exit 130) and says so."""
    driver = LocalJobDriver(max_jobs=1)
    release = threading.Event()

    def stubborn(ctx: JobContext) -> None:
        ctx.initialize(eta=60.0)
        release.wait(30)  # ignores the cancel until released
        ctx.finish_cancel()

    job = driver.start_job(JobKind.DOMAIN_SAVE, "stubborn", stubborn)
    shown = threading.Event()

    class Display(PlainDisplay):
        def update(self, info: JobInfo) -> None:
            super().update(info)
            shown.set()

    def press_ctrl_c_twice() -> None:
        shown.wait(10)
        ctrl_c()  # first Ctrl-C once the command shows the job
        for info in job.watch(0):
            if info.cancel_requested:
                break
        ctrl_c()  # second Ctrl-C once the cancel is under way

    presser = threading.Thread(target=press_ctrl_c_twice, daemon=True)
    presser.start()
    try:
        with pytest.raises(CliError) as caught:
            follow(App("test+unix:///default?socket=/nonexistent"), job, Display(job))
        presser.join(10)
        assert caught.value.exit_code == ExitCode.INTERRUPTED
        assert caught.value.label == "interrupted"
        assert f"job {job.id} may still be running" in caught.value.message
        assert "job-info" in caught.value.message
        assert "Ctrl-C: cancelling job" in capsys.readouterr().err
        assert job.info().state is JobState.RUNNING
        assert job.info().cancel_requested
    finally:
        release.set()
        job.wait(10)
        driver.close()
