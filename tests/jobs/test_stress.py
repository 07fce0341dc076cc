"""Thousands of short jobs with random cancels on a 16-thread pool."""

from __future__ import annotations

import enum
import random
import threading
from collections import Counter
from collections.abc import Callable

from tests.jobs.conftest import SAFETY
from virtjob.errors import InternalError, OperationFailedError
from virtjob.jobs import Job, JobContext, JobKind, JobState, LocalJobDriver

JOBS = 3000
MAX_JOBS = 16


class Behaviour(enum.Enum):
    """How a stress worker behaves."""

    COOPERATIVE = "cooperative"  # honours cancels between steps, then succeeds
    STUBBORN = "stubborn"  # ignores cancels and succeeds
    FAILING = "failing"  # honours cancels, then raises


def _worker(
    behaviour: Behaviour, runs: Counter[str], lock: threading.Lock
) -> Callable[..., object]:
    def worker(ctx: JobContext) -> object:
        with lock:
            runs[ctx.id] += 1
        ctx.initialize(eta=0.01)
        for _ in range(5):
            if behaviour is not Behaviour.STUBBORN and ctx.finish_cancel():
                return None
            ctx.update_rel(percent=20, remaining=-0.002)
        if behaviour is Behaviour.FAILING:
            raise OperationFailedError(f"job {ctx.id} failed on purpose")
        return ctx.id

    return worker


def test_thousands_of_jobs_with_random_cancels_each_end_exactly_once(
    make_driver: Callable[..., LocalJobDriver],
) -> None:
    """Every job reaches one terminal state that never changes; each done callback runs once."""
    rng = random.Random(20240611)
    driver = make_driver(MAX_JOBS)
    lock = threading.Lock()
    runs: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    seen_state: dict[str, JobState] = {}
    all_called = threading.Event()

    def on_done(job: Job) -> None:
        state = job.info().state
        with lock:
            calls[job.id] += 1
            seen_state.setdefault(job.id, state)
            if sum(calls.values()) >= JOBS:
                all_called.set()

    jobs: list[Job] = []
    behaviours: dict[str, Behaviour] = {}
    cancelled: set[str] = set()
    for _ in range(JOBS):
        behaviour = rng.choice(list(Behaviour))
        job = driver.start_job(JobKind.DOMAIN_SAVE, "stress", _worker(behaviour, runs, lock))
        behaviours[job.id] = behaviour
        job.add_done_callback(on_done)
        jobs.append(job)
        if rng.random() < 0.3:
            victim = rng.choice(jobs[-50:])
            victim.cancel()
            cancelled.add(victim.id)
            assert victim.info().state is not JobState.QUEUED  # a queued cancel is immediate

    finals = {job.id: job.wait(timeout=30).state for job in jobs}
    assert all_called.wait(SAFETY)
    assert driver.close(timeout=SAFETY)  # every thread is gone: no callback can still come

    assert all(state.terminal for state in finals.values())
    assert calls == Counter({job.id: 1 for job in jobs})
    assert seen_state == finals
    for job in jobs:
        assert job.info().state is finals[job.id]  # terminal states never change
        state = finals[job.id]
        behaviour = behaviours[job.id]
        assert runs[job.id] <= 1, f"worker of {job.id} ran {runs[job.id]} times"
        if runs[job.id] == 0:
            assert state is JobState.CANCELLED  # only a queued cancel skips the worker
        if job.id not in cancelled:
            assert state is not JobState.CANCELLED
        if state is JobState.SUCCEEDED:
            assert behaviour is not Behaviour.FAILING
            assert job.result() == job.id
            assert job.info().percent == 100.0
        elif state is JobState.FAILED:
            assert behaviour is Behaviour.FAILING
            assert not isinstance(job.error(), InternalError), job.error()
        elif behaviour is Behaviour.STUBBORN:
            assert runs[job.id] == 0  # a stubborn worker can only be cancelled in the queue
    counted = Counter(finals.values())
    assert counted[JobState.CANCELLED] > 0
    assert counted[JobState.SUCCEEDED] > 0
    assert counted[JobState.FAILED] > 0
