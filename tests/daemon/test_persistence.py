"""History and definitions survive restarts; kill -9 and SIGTERM leave nothing half-done."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import virtjob
from tests.daemon.conftest import SAFETY, SLOW_RATE, DaemonProcess, running
from virtjob import JobState
from virtjob.savefile import PARTIAL_MARK

NET = "<network><name>{name}</name><bridge name='{bridge}'/></network>"
DOM = (
    "<domain type='test'><name>{name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
    "<os><type>hvm</type></os></domain>"
)


def _partials(directory: str) -> list[str]:
    return [name for name in os.listdir(directory) if PARTIAL_MARK in name]


def test_kill_9_mid_job_then_restart(daemon: DaemonProcess) -> None:
    with daemon.open("default", rate=1 << 32) as conn:
        done = conn.lookup_network("default")
        done.destroy()
        finished = done.start_job()
        finished.wait(SAFETY)
    with daemon.open("default", rate=SLOW_RATE) as conn:
        target = os.path.join(daemon.files, "victim.save")
        job = conn.lookup_domain("test").save_job(target)
        for info in job.watch(0.0):  # past the first throttled progress snapshot (1 s)
            if info.percent and info.percent > 10:
                break
        assert _partials(daemon.files)
        daemon.kill9()
    daemon.start()
    with daemon.open("default") as conn:
        jobs = {j.id: j for j in conn.list_jobs()}
        assert set(jobs) == {finished.id, job.id}
        assert jobs[finished.id].info().state is JobState.SUCCEEDED
        assert jobs[finished.id].network() is not None
        interrupted = conn.lookup_job(job.id)
        info = interrupted.info()
        assert info.state is JobState.FAILED
        assert info.percent is not None
        assert info.percent > 0
        error = interrupted.error()
        assert isinstance(error, virtjob.OperationFailedError)
        assert "interrupted by daemon restart" in error.message
        assert interrupted.wait(0) == info
        interrupted.destroy()
        assert [j.id for j in conn.list_jobs()] == [finished.id]
    assert not _partials(daemon.files)
    assert not os.path.exists(target)


def test_definitions_are_replayed_after_restart(daemon: DaemonProcess) -> None:
    with daemon.open("persist") as conn:
        conn.define_domain(DOM.format(name="kept"))
        conn.define_network(NET.format(name="knet", bridge="vjk0"))
        gone = conn.define_domain(DOM.format(name="gone"))
        gone.undefine()
        test = conn.lookup_domain("test")
        test.destroy()
        test.undefine()  # a built-in one, undefined through the daemon
        uuid = conn.lookup_domain("kept").uuid
    assert daemon.signal(signal.SIGTERM) == 0
    daemon.start()
    with daemon.open("persist") as conn:
        names = sorted(d.name for d in conn.list_domains())
        assert names == ["kept"]
        assert conn.lookup_domain("kept").uuid == uuid
        assert conn.lookup_domain("kept").state() is virtjob.DomainState.SHUTOFF
        assert "knet" in [n.name for n in conn.list_networks()]


def test_sigterm_cancels_running_jobs_and_exits_cleanly(daemon: DaemonProcess) -> None:
    with daemon.open("default", rate=SLOW_RATE) as conn:
        target = os.path.join(daemon.files, "term.save")
        job = conn.lookup_domain("test").save_job(target)
        net = conn.lookup_network("default")
        net.destroy()
        second = net.start_job()
        for info in job.watch(0.0):
            if info.percent:
                break
        started = time.monotonic()
        assert daemon.signal(signal.SIGTERM) == 0
        assert time.monotonic() - started < SAFETY
    assert not os.path.exists(daemon.socket)
    assert not _partials(daemon.files)
    assert not os.path.exists(target)
    assert "did not stop in time" not in daemon.log()
    daemon.start()
    with daemon.open("default") as conn:
        for handle in (job, second):
            info = conn.lookup_job(handle.id).info()
            assert info.state is JobState.CANCELLED, info
            assert info.cancel_requested


def test_retention_keeps_the_newest_finished_jobs() -> None:
    with running(extra=["--retain-jobs", "3"]) as daemon, daemon.open("r", rate=1 << 33) as conn:
        net = conn.lookup_network("default")
        ids = []
        for _ in range(5):
            net.destroy()
            job = net.start_job()
            job.wait(SAFETY)
            ids.append(job.id)
        assert [j.id for j in conn.list_jobs()] == ids[-3:]
        assert conn.lookup_job(ids[-1]).info().state is JobState.SUCCEEDED


def test_a_second_daemon_is_refused_and_a_stale_socket_replaced(daemon: DaemonProcess) -> None:
    with daemon.open("default", rate=SLOW_RATE) as conn:
        job = conn.lookup_domain("test").dump_core_job(os.path.join(daemon.files, "core"))
        same_socket = daemon.argv()
        same_socket[4] = os.path.join(daemon.base, "other-state")
        for argv in (daemon.argv(), same_socket):
            result = subprocess.run(
                argv, capture_output=True, text=True, timeout=SAFETY, check=False
            )
            assert result.returncode != 0
            assert "another virtjobd" in result.stderr
        assert job.info().state is JobState.RUNNING  # the first daemon's job is untouched
        daemon.kill9()  # leaves its socket file behind
    assert os.path.exists(daemon.socket)
    daemon.start()
    with daemon.open() as conn:
        assert conn.lookup_job(job.id).info().state is JobState.FAILED
