"""Several clients of one daemon: they share jobs, and a client going away stops nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import virtjob
from tests.daemon.conftest import SAFETY, SLOW_RATE, DaemonProcess, new_host
from virtjob import JobInfo, JobState
from virtjob.drivers.remote import RemoteDriver

START_AND_EXIT = """
import sys, virtjob
conn = virtjob.open(sys.argv[1])
job = conn.lookup_domain("test").save_job(sys.argv[2])
print(job.id, flush=True)
"""


def _start_in_other_process(uri: str, path: str) -> str:
    """Start a save from a separate client process that exits at once; return the job id."""
    result = subprocess.run(
        [sys.executable, "-c", START_AND_EXIT, uri, path],
        capture_output=True,
        text=True,
        timeout=SAFETY,
        check=True,
    )
    return result.stdout.strip()


def test_one_client_starts_another_watches_and_cancels(
    shared_daemon: DaemonProcess, host: str
) -> None:
    target = os.path.join(shared_daemon.files, f"{host}.save")
    job_id = _start_in_other_process(shared_daemon.uri(host, rate=SLOW_RATE), target)
    with shared_daemon.open(host) as conn:
        job = conn.lookup_job(job_id)  # the starting client has gone: the job goes on
        seen: list[JobInfo] = []
        for info in job.watch(0.0):
            seen.append(info)
            if info.percent and info.percent >= 3:
                job.cancel()
        assert seen[-1].state is JobState.CANCELLED
        assert any(i.state is JobState.RUNNING and i.percent for i in seen)
        assert conn.lookup_domain("test").state() is virtjob.DomainState.RUNNING
    assert not os.path.exists(target)


def test_a_job_outlives_the_client_that_started_it(shared_daemon: DaemonProcess, host: str) -> None:
    target = os.path.join(shared_daemon.files, f"{host}.save")
    job_id = _start_in_other_process(shared_daemon.uri(host, rate=1 << 30), target)
    with shared_daemon.open(host) as conn:
        job = conn.lookup_job(job_id)
        assert job.wait(SAFETY).state is JobState.SUCCEEDED
        assert conn.lookup_domain("test").state() is virtjob.DomainState.SHUTOFF
    assert os.path.getsize(target) > 0


def test_many_clients_polling_many_jobs(shared_daemon: DaemonProcess) -> None:
    """50 clients poll 20 running jobs: no errors, every end seen, percent never goes down."""
    hosts = [new_host() for _ in range(20)]
    job_ids: list[str] = []
    for host in hosts:
        with shared_daemon.open(host, rate=256 << 20) as conn:
            target = os.path.join(shared_daemon.files, f"{host}.core")
            job_ids.append(conn.lookup_domain("test").dump_core_job(target).id)
    errors: list[BaseException] = []
    finals: list[dict[str, JobState]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(number: int) -> None:
        try:
            with shared_daemon.open(hosts[number % len(hosts)]) as conn:
                driver = conn.driver
                assert isinstance(driver, RemoteDriver)  # jobs of every host, not just this one
                jobs = [driver.jobs.handle(driver.jobs.job_document(i)) for i in job_ids]
                last: dict[str, float] = {}
                final: dict[str, JobState] = {}
                while len(final) < len(jobs) and not stop.is_set():
                    for job in jobs:
                        if job.id in final:
                            continue
                        info = job.info()
                        percent = info.percent if info.percent is not None else -1.0
                        assert percent >= last.get(job.id, -1.0), (job.id, percent, last)
                        last[job.id] = percent
                        if info.state.terminal:
                            final[job.id] = info.state
            with lock:
                finals.append(final)
        except BaseException as exc:
            with lock:
                errors.append(exc)
            stop.set()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    stop.set()
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert len(finals) == 50
    for final in finals:
        assert final == dict.fromkeys(job_ids, JobState.SUCCEEDED)
