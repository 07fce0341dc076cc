"""Job commands from separate processes against a real virtjobd on a temporary unix socket.

Here ``--bg`` works: the job lives in the daemon, so later ``virtjob`` processes see it.
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import uuid
from pathlib import Path

import pytest

from tests.cli.helpers import DEADLINE, FAST, SLOW, Daemon, Result, Running, run, run_pty
from virtjob.cli.output import ExitCode

pytest.importorskip("virtjob.daemon", reason="virtjobd (src/virtjob/daemon) is not available")


def vj(uri: str, *args: str) -> Result:
    return run("-c", uri, *args)


def test_bg_save_then_info_list_wait_and_destroy(daemon: Daemon) -> None:
    uri = daemon.uri(512 << 20)
    target = daemon.files / f"{uuid.uuid4().hex}.save"
    started = vj(uri, "save", "--bg", "test", str(target))
    assert started.code == 0, started.err
    job_id = started.out.strip()
    assert len(job_id) == 12
    assert started.out == f"{job_id}\n"

    info = json.loads(vj(uri, "job-info", job_id, "--json").out)
    assert info["id"] == job_id
    assert info["kind"] == "domain-save"
    assert info["subject"] == "test"
    assert info["info"]["state"] in ("queued", "running", "succeeded")
    assert job_id in vj(uri, "job-list").out
    assert [j["id"] for j in json.loads(vj(uri, "job-list", "--json").out)] == [job_id]

    waited = vj(uri, "job-wait", job_id)
    assert waited.code == 0, waited.err
    assert f"job {job_id} domain-save test: succeeded 100.0%" in waited.out
    assert waited.out.splitlines()[-1] == f"Job {job_id} (domain-save of 'test') succeeded: done"
    assert target.exists()

    final = json.loads(vj(uri, "job-info", job_id, "--json").out)
    assert final["info"]["state"] == "succeeded"
    assert final["info"]["percent"] == 100.0
    assert final["info"]["remaining"] == 0
    assert "State:            succeeded" in vj(uri, "job-info", job_id).out
    assert vj(uri, "job-destroy", job_id).out == f"Job {job_id} (domain-save of 'test') destroyed\n"
    gone = vj(uri, "job-info", job_id)
    assert gone.code == ExitCode.NOT_FOUND
    assert gone.err.startswith(f"error: no job with id '{job_id}'")


def test_bg_json_then_cancel_from_another_process(daemon: Daemon) -> None:
    uri = daemon.uri(SLOW)
    target = daemon.files / f"{uuid.uuid4().hex}.save"
    started = vj(uri, "save", "--bg", "--json", "test", str(target))
    job = json.loads(started.out)
    assert job["kind"] == "domain-save"
    assert job["info"]["state"] in ("queued", "running")
    cancelled = vj(uri, "job-cancel", job["id"])
    assert cancelled.code == 0
    what = f"job {job['id']} (domain-save of 'test')"
    assert (
        cancelled.out
        in (  # the test driver honours a cancel at once, or nearly
            f"Job {what[4:]} cancelled\n",
            f"Cancellation of {what} requested;"
            f" 'virtjob job-wait {job['id']}' follows it to its end\n",
        )
    )
    waited = vj(uri, "job-wait", job["id"], "--json")
    assert waited.code == ExitCode.CANCELLED
    assert json.loads(waited.out)["info"]["state"] == "cancelled"
    assert waited.err.startswith(f"cancelled: job {job['id']} (domain-save of 'test')")
    assert "domain 'test' is running" in waited.err
    assert not target.exists()
    assert json.loads(vj(uri, "dominfo", "test", "--json").out)["state"] == "running"
    # job-cancel on a finished job says so and in which state it ended, and succeeds
    again = vj(uri, "job-cancel", job["id"])
    assert again.code == 0
    assert again.out == f"Job {what[4:]} had already ended (cancelled); nothing to cancel\n"


def test_job_wait_timeout_and_destroy_refused_while_running(daemon: Daemon) -> None:
    uri = daemon.uri(SLOW)
    job_id = vj(uri, "dump", "--bg", "test", str(daemon.files / "t.core")).out.strip()
    try:
        timed_out = vj(uri, "job-wait", job_id, "--timeout", "0.3")
        assert timed_out.code == ExitCode.TIMEOUT
        last = timed_out.err.splitlines()[-1]
        assert last.startswith(f"error: job {job_id} is still running after 0.3 s; it goes on")
        refused = vj(uri, "job-destroy", job_id)
        assert refused.code == ExitCode.FAILED
        assert "still running" in refused.err
    finally:
        vj(uri, "job-cancel", job_id)
    assert vj(uri, "job-wait", job_id, "--destroy").code == ExitCode.CANCELLED
    assert vj(uri, "job-info", job_id).code == ExitCode.NOT_FOUND


def test_job_wait_shows_the_bar_for_a_job_started_elsewhere(daemon: Daemon) -> None:
    uri = daemon.uri(512 << 20)
    job_id = vj(uri, "save", "--bg", "test", str(daemon.files / "bar.save")).out.strip()
    code, out = run_pty(["-c", uri, "job-wait", job_id])
    assert code == 0, out
    assert job_id in out
    assert "domain-save test" in out
    assert "%" in out
    assert "\x1b[" in out
    assert f"Job {job_id} (domain-save of 'test') succeeded" in out


def test_ctrl_c_on_job_wait_cancels_and_no_cancel_detaches(daemon: Daemon) -> None:
    uri = daemon.uri(SLOW)
    job_id = vj(uri, "save", "--bg", "test", str(daemon.files / "int.save")).out.strip()

    detached = Running("-c", uri, "job-wait", "--no-cancel", job_id)
    detached.wait_for(": running")
    detached.proc.send_signal(signal.SIGINT)
    result = detached.finish()
    assert result.code == ExitCode.INTERRUPTED
    assert f"interrupted: stopped waiting; job {job_id} may still be running" in result.err
    assert json.loads(vj(uri, "job-info", job_id, "--json").out)["info"]["state"] == "running"

    waiting = Running("-c", uri, "job-wait", job_id)
    waiting.wait_for(": running")
    waiting.proc.send_signal(signal.SIGINT)
    result = waiting.finish()
    assert result.code == ExitCode.CANCELLED, result
    assert "Ctrl-C: cancelling job" in result.err
    assert "was cancelled" in result.err
    assert json.loads(vj(uri, "job-info", job_id, "--json").out)["info"]["state"] == "cancelled"


def test_foreground_save_through_the_daemon(daemon: Daemon) -> None:
    uri = daemon.uri(FAST)
    target = daemon.files / f"{uuid.uuid4().hex}.save"
    saved = vj(uri, "save", "test", str(target))
    assert saved.code == 0
    assert saved.out.endswith(f"Domain 'test' saved to {target}\n")
    assert vj(uri, "job-list", "--json").out.strip() == "[]"  # a followed job is released
    restored = json.loads(vj(uri, "restore", "--json", str(target)).out)
    assert restored["result"]["name"] == "test"
    assert restored["subject"] == "test"  # a restore's subject is the domain, not the file
    assert json.loads(vj(uri, "dominfo", "test", "--json").out)["state"] == "running"


def test_ctrl_c_on_a_foreground_save_through_the_daemon(daemon: Daemon) -> None:
    uri = daemon.uri(SLOW)
    target = daemon.files / f"{uuid.uuid4().hex}.save"
    saving = Running("-c", uri, "save", "test", str(target))
    saving.wait_for(": running")
    saving.proc.send_signal(signal.SIGINT)
    result = saving.finish()
    assert result.code == ExitCode.CANCELLED, result
    assert result.err.splitlines()[-1].endswith("domain 'test' is running")
    assert not target.exists()


def test_path_outside_the_daemons_directories(daemon: Daemon, tmp_path: Path) -> None:
    outside = tmp_path / "not-allowed.save"  # pytest's tmp_path is not the daemon's allowed dir
    result = vj(daemon.uri(), "save", "--bg", "test", str(outside))
    assert result.code == ExitCode.FAILED
    assert "outside the directories" in result.err
    assert not outside.exists()


def test_unreachable_daemon_is_a_connect_error(tmp_path: Path) -> None:
    result = vj(f"test+unix:///default?socket={tmp_path}/none.sock", "list")
    assert result.code == ExitCode.CONNECT
    assert result.err.startswith("error: cannot reach virtjobd")
    assert len(result.err.splitlines()) == 1


def _daemon_get(daemon: Daemon, path: str) -> tuple[int, object]:
    """What virtjobd answers ``GET path`` with, asked over its unix socket by hand (the
    standard library's HTTP client, not virtjob's): status and decoded JSON body."""

    class UnixConnection(http.client.HTTPConnection):
        def connect(self) -> None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(DEADLINE)
            sock.connect(str(daemon.socket))
            self.sock = sock

    conn = UnixConnection("localhost", timeout=DEADLINE)
    try:
        conn.request("GET", path)
        answer = conn.getresponse()
        return answer.status, json.loads(answer.read())
    finally:
        conn.close()


def _shape(value: object) -> object:
    """The keys of a JSON document, nested: what two answers must share to have one shape."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    return type(value).__name__ if value is not None else None


def test_the_cli_job_json_is_the_daemons_job_document(daemon: Daemon) -> None:
    """``--json`` prints the document virtjobd answers ``GET /v1/jobs/{id}`` with: the same
    keys, nested the same way, and for a finished job the same values."""
    uri = daemon.uri(FAST)
    target = daemon.files / f"{uuid.uuid4().hex}.save"
    started = json.loads(vj(uri, "save", "--bg", "--json", "test", str(target)).out)
    job_id = started["id"]
    assert vj(uri, "job-wait", job_id).code == 0
    printed = json.loads(vj(uri, "job-info", job_id, "--json").out)
    status, answered = _daemon_get(daemon, f"/v1/jobs/{job_id}")
    assert status == 200
    assert isinstance(answered, dict)
    assert set(printed) == set(answered)
    assert set(printed["info"]) == set(answered["info"])
    assert set(started) == set(answered)  # --bg --json too, taken while the job was young
    assert printed == answered  # a finished job no longer changes
    assert printed["schema"] == 2
    assert printed["target"] == str(target)
    assert printed["host"] == answered["host"]
    listed = json.loads(vj(uri, "job-list", "--json").out)
    assert [_shape(job) for job in listed] == [_shape(answered)]
