"""After a crash, an interrupted job says what it was doing (issue 10, finding 16).

A job that was still queued when the daemon died used to say "was running" after the restart.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time

from tests.daemon.conftest import SAFETY, SLOW_RATE, new_host, running
from virtjob import JobState
from virtjob.daemon.service import DB_NAME

DOMAIN = "<domain type='test'><name>{name}</name><memory unit='MiB'>4096</memory></domain>"
"""A domain whose boot takes 32 s at `SLOW_RATE`: the 17th job of a host stays queued."""


def _state(db: sqlite3.Connection, job_id: str) -> str | None:
    row = db.execute("SELECT state FROM jobs WHERE id=?", (job_id,)).fetchone()
    return None if row is None else str(row[0])


def test_an_interrupted_queued_job_says_it_was_queued() -> None:
    with running() as daemon:
        host = new_host()
        with daemon.open(host, rate=SLOW_RATE) as conn:
            jobs = [conn.create_domain_job(DOMAIN.format(name=f"i{n}")) for n in range(17)]
            running_job, queued_job = jobs[0], jobs[-1]
            assert queued_job.info().state is JobState.QUEUED
            # The daemon records a state change at once; wait (bounded) until it has.
            path = os.path.join(daemon.state_dir, DB_NAME)
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
                deadline = time.monotonic() + SAFETY
                while _state(db, running_job.id) != "running":
                    assert time.monotonic() < deadline
                    time.sleep(0.01)  # polling another process's database, bounded
                assert _state(db, queued_job.id) == "queued"
            daemon.kill9()
        daemon.start()
        with daemon.open(host) as conn:
            ran = conn.lookup_job(running_job.id).error()
            waited = conn.lookup_job(queued_job.id).error()
        assert ran is not None
        assert waited is not None
        assert "interrupted by daemon restart" in ran.message
        assert "interrupted by daemon restart" in waited.message
        assert "was running" in ran.message
        assert "was queued" in waited.message
        assert "never started" in waited.message
