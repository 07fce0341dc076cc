"""The retention limit never drops a job someone still waits for (issue 10, finding 8).

With ``--retain-jobs 0``, or after a storm of cancelled jobs, ``dom.save()`` and
``job.wait()`` used to raise `NoJobError` for a save that had happened: the daemon dropped the
job the moment it ended, before its waiter had seen the end.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.daemon.conftest import FAST_RATE, SAFETY, SLOW_RATE, new_host, running
from virtjob import DomainState, JobState
from virtjob.daemon.recorder import Recorder
from virtjob.daemon.store import Store
from virtjob.jobs import JobContext, JobKind, LocalJobDriver

HOST = "test:///x"
"""The host the engine of the in-process test runs jobs for."""
DOMAIN = "<domain type='test'><name>{name}</name><memory unit='MiB'>4096</memory></domain>"
"""A domain whose boot takes 32 s at `SLOW_RATE`: jobs beyond the host's 16 stay queued."""


def test_retain_zero_keeps_each_job_until_its_waiter_has_seen_the_end() -> None:
    with (
        running(extra=["--retain-jobs", "0"]) as daemon,
        daemon.open(new_host(), rate=FAST_RATE) as conn,
    ):
        dom = conn.lookup_domain("test")
        target = os.path.join(daemon.files, "test.save")
        dom.save(target)  # a job, then a wait, then a look at its outcome
        assert dom.state() is DomainState.SHUTOFF
        restored = conn.restore(target)
        assert restored.state() is DomainState.RUNNING
        assert conn.list_jobs() == [], "seen by their waiters, they are not retained"

        job = dom.save_job(target)
        infos = list(job.watch())  # the event stream, then the outcome
        assert infos[-1].state is JobState.SUCCEEDED
        assert job.result() is None
        assert job.info().state is JobState.SUCCEEDED  # this client saw the end: it answers
        assert conn.list_jobs() == []


def test_a_storm_of_cancelled_jobs_does_not_drop_a_job_nobody_has_waited_for() -> None:
    retain = 5
    with (
        running(extra=["--retain-jobs", str(retain)]) as daemon,
        daemon.open(host := new_host(), rate=FAST_RATE) as fast,
        daemon.open(host, rate=SLOW_RATE) as slow,
    ):
        save = fast.lookup_domain("test").save_job(os.path.join(daemon.files, "test.save"))
        for _ in save.watch():  # follow it to its end without a long poll
            pass
        storm = [slow.create_domain_job(DOMAIN.format(name=f"s{n}")) for n in range(4 * retain)]
        assert any(job.info().state is JobState.QUEUED for job in storm)
        for job in storm:
            job.cancel()
        # 20 jobs ended after the save, and the limit is 5: the save is still there.
        assert save.wait(SAFETY).state is JobState.SUCCEEDED
        assert save.result() is None
        for job in storm:
            assert job.wait(SAFETY).state is JobState.CANCELLED
        # Every end has been seen: the limit applies again.
        assert len(fast.list_jobs()) == retain


def test_a_finished_job_nobody_asks_about_is_held_only_for_a_while(tmp_path: Path) -> None:
    def worker(ctx: JobContext) -> None:
        ctx.initialize()

    for hold, kept in ((600.0, True), (0.0, False)):
        store = Store(str(tmp_path / f"hold-{hold}.sqlite3"))
        recorder = Recorder(store, 0, unseen_hold=hold)
        engine = LocalJobDriver(max_jobs=1, host=HOST)
        try:
            job = engine.start_job(JobKind.DOMAIN_SAVE, "d", worker)
            recorder.track(job, HOST)
            assert engine.close(cancel=False, timeout=SAFETY)  # ran, done callbacks included
            stored = [document.id for document in store.list_jobs()]
            assert (stored == [job.id]) is kept, (hold, stored)
        finally:
            engine.close(timeout=SAFETY)
            recorder.close()
            store.close()
