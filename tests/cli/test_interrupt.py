"""Ctrl-C, SIGTERM or SIGHUP while a command follows its job: cancel, wait for the stop, say
so, exit 3; later signals change nothing; a broken stdout does not abandon the job."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from tests.cli.helpers import CLI, DEADLINE, MEDIUM, SLOW, Running, cli_env, host_uri, run_pty
from virtjob.cli.context import App
from virtjob.cli.jobrun import conclude, follow
from virtjob.cli.output import CliError, ExitCode
from virtjob.cli.progress import PlainDisplay
from virtjob.errors import NoJobError
from virtjob.jobs import JobContext, JobInfo, JobKind, JobState, LocalJobDriver


def test_ctrl_c_cancels_a_save_in_a_pipe(tmp_path: Path) -> None:
    target = tmp_path / "test.save"
    proc = Running("-c", host_uri(SLOW), "save", "test", str(target))
    proc.wait_for(": running")
    proc.proc.send_signal(signal.SIGINT)
    proc.wait_for("cancelled: job ")
    proc.proc.send_signal(signal.SIGINT)  # a late Ctrl-C, once the cancel is reported
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


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_cancel_a_save_like_ctrl_c(
    tmp_path: Path, signum: signal.Signals
) -> None:
    target = tmp_path / "test.save"
    proc = Running("-c", host_uri(SLOW), "save", "test", str(target))
    proc.wait_for(": running")
    proc.proc.send_signal(signum)
    result = proc.finish()
    assert result.code == ExitCode.CANCELLED, result
    assert f"{signum.name}: cancelling job" in result.err
    last = result.err.splitlines()[-1]
    assert last.startswith("cancelled: job ")
    assert f"no save file was written at {target}" in last
    assert last.endswith("domain 'test' is running")
    assert list(tmp_path.iterdir()) == []  # no save file, no partial file beside it


def test_a_save_piped_into_head_runs_to_its_end(tmp_path: Path) -> None:
    """``virtjob save test F | head -1``: the progress stops, the save does not."""
    target = tmp_path / "test.save"
    errors = tmp_path / "stderr"
    with errors.open("w") as stderr:
        proc = subprocess.Popen(
            [*CLI, "-c", host_uri(MEDIUM), "save", "test", str(target)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=cli_env(),
        )
        assert proc.stdout is not None
        first = proc.stdout.readline()
        proc.stdout.close()  # as head -1 does once it has its line
        code = proc.wait(DEADLINE)
    assert "domain-save test: " in first
    assert errors.read_text() == ""
    assert code == ExitCode.OK
    assert target.exists()


def test_a_late_ctrl_c_does_not_change_how_the_command_ends() -> None:
    """Once the job has ended (here: cancelled), Ctrl-C no longer interrupts the report."""
    driver = LocalJobDriver(max_jobs=1)

    def slow(ctx: JobContext) -> None:
        ctx.initialize(eta=60.0)
        ctx.wait_for_cancel(30)
        ctx.finish_cancel()

    job = driver.start_job(JobKind.DOMAIN_RESTORE, "test", slow)

    class Display(PlainDisplay):
        def update(self, info: JobInfo) -> None:
            super().update(info)
            if info.state is JobState.RUNNING and not info.cancel_requested:
                ctrl_c()  # the first Ctrl-C: cancel

    app = App(host_uri())
    try:
        info = follow(app, job, Display(job))
        assert info.state is JobState.CANCELLED
        try:
            ctrl_c()  # a late one, as the command reports how the job ended
            with pytest.raises(CliError) as caught:
                conclude(app, job, info, success=None, as_json=False, release=True)
        except KeyboardInterrupt:
            pytest.fail("a Ctrl-C after the job ended interrupted the command's report")
        assert caught.value.exit_code == ExitCode.CANCELLED
    finally:
        with contextlib.suppress(NoJobError):  # released by conclude() when all went well
            job.cancel()
        driver.close()
