"""`LocalJobDriver`: the bounded thread pool, FIFO queue, lock keys, listing and closing."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator

import pytest

from tests.jobs.conftest import SAFETY, Blocker, job_threads, start
from virtjob.errors import InvalidArgError, NoJobError, OperationInvalidError
from virtjob.jobs import JobContext, JobDriver, JobKind, JobState, LocalJobDriver

MakeBlocker = Callable[..., Blocker]
MakeDriver = Callable[..., LocalJobDriver]


def _noop(ctx: JobContext) -> None:
    return None


@pytest.mark.parametrize("max_jobs", [0, -1, -100])
def test_max_jobs_below_one_raises_invalid_arg(max_jobs: int) -> None:
    """A pool of fewer than one thread is refused with InvalidArgError."""
    before = job_threads()
    with pytest.raises(InvalidArgError, match="max_jobs"):
        LocalJobDriver(max_jobs)
    assert job_threads() == before


def test_local_driver_implements_the_job_driver_protocol(driver: LocalJobDriver) -> None:
    """A LocalJobDriver is what a Job handle talks to."""
    jd: JobDriver = driver
    job = driver.start_job(JobKind.DOMAIN_SAVE, "d", _noop)
    assert job.driver is jd
    assert jd.job_wait(job.id, SAFETY).state is JobState.SUCCEEDED


def test_never_more_than_max_jobs_workers_at_once(make_driver: MakeDriver) -> None:
    """With max_jobs=3, three workers run together and no fourth starts while they run."""
    driver = make_driver(3)
    lock = threading.Lock()
    active = 0
    peak = 0
    full = threading.Event()
    gate = threading.Event()

    def worker(ctx: JobContext) -> None:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
            if active == 3:
                full.set()
        try:
            gate.wait(SAFETY)
            for _ in range(20):
                ctx.update_rel(processed=1)
        finally:
            with lock:
                active -= 1

    jobs = [driver.start_job(JobKind.DOMAIN_SAVE, f"d{i}", worker) for i in range(30)]
    assert full.wait(SAFETY)
    states = [job.info().state for job in jobs]
    assert states == [JobState.RUNNING] * 3 + [JobState.QUEUED] * 27
    gate.set()
    for job in jobs:
        assert job.wait(SAFETY).state is JobState.SUCCEEDED
    assert peak == 3
    assert active == 0


def test_threads_are_named_and_bounded(make_driver: MakeDriver, make_blocker: MakeBlocker) -> None:
    """Workers run on threads named virtjob-jobs-N-M, at most max_jobs of them per driver."""
    driver = make_driver(2)
    blockers = [make_blocker() for _ in range(4)]
    jobs = [start(driver, b) for b in blockers]
    assert blockers[0].started.wait(SAFETY)
    assert blockers[1].started.wait(SAFETY)
    for blocker in blockers:
        blocker.release()
    for job in jobs:
        job.wait(SAFETY)
    names = {b.thread_name for b in blockers}
    assert all(re.fullmatch(r"virtjob-jobs-\d+-\d+", name) for name in names)
    prefixes = {name.rsplit("-", 1)[0] for name in names}
    assert len(prefixes) == 1
    assert len(names) <= 2
    assert all(t.daemon for t in job_threads())  # idle job threads never keep the process alive


def test_queued_jobs_run_in_fifo_order(make_driver: MakeDriver, make_blocker: MakeBlocker) -> None:
    """Jobs queued behind a busy pool start in the order they were started."""
    driver = make_driver(1)
    blocker = make_blocker()
    start(driver, blocker)
    assert blocker.started.wait(SAFETY)
    order: list[int] = []

    def worker_for(i: int) -> Callable[[JobContext], None]:
        def worker(ctx: JobContext) -> None:
            order.append(i)

        return worker

    jobs = [driver.start_job(JobKind.DOMAIN_SAVE, f"d{i}", worker_for(i)) for i in range(25)]
    assert all(job.info().state is JobState.QUEUED for job in jobs)
    jobs[3].cancel()
    jobs[10].cancel()
    blocker.release()
    for job in jobs:
        job.wait(SAFETY)
    assert order == [i for i in range(25) if i not in (3, 10)]


def test_lock_key_refuses_a_second_job_naming_the_busy_one(
    driver: LocalJobDriver, make_blocker: MakeBlocker
) -> None:
    """A job on a subject that has a running job is refused at once, naming that job."""
    blocker = make_blocker()
    holder = start(driver, blocker, lock_key="domain:vm1", subject="vm1")
    assert blocker.started.wait(SAFETY)
    count = len(driver.list_jobs())
    with pytest.raises(OperationInvalidError, match=holder.id) as caught:
        driver.start_job(JobKind.DOMAIN_SAVE, "vm1", _noop, lock_key="domain:vm1")
    assert "vm1" in caught.value.message
    assert len(driver.list_jobs()) == count  # nothing was queued
    other = driver.start_job(JobKind.DOMAIN_SAVE, "vm2", _noop, lock_key="domain:vm2")
    free = driver.start_job(JobKind.DOMAIN_SAVE, "vm1", _noop)  # no key: not exclusive
    assert other.wait(SAFETY).state is JobState.SUCCEEDED
    assert free.wait(SAFETY).state is JobState.SUCCEEDED
    blocker.release()
    holder.wait(SAFETY)
    again = driver.start_job(JobKind.DOMAIN_SAVE, "vm1", _noop, lock_key="domain:vm1")
    assert again.wait(SAFETY).state is JobState.SUCCEEDED


def test_lock_key_is_held_while_queued_and_freed_by_a_queued_cancel(
    make_driver: MakeDriver, make_blocker: MakeBlocker
) -> None:
    """A queued job holds its key; cancelling it frees the key at once."""
    driver = make_driver(1)
    blocker = make_blocker()
    start(driver, blocker)
    assert blocker.started.wait(SAFETY)
    queued = driver.start_job(JobKind.NETWORK_START, "net", _noop, lock_key="network:net")
    with pytest.raises(OperationInvalidError, match=queued.id):
        driver.start_job(JobKind.NETWORK_START, "net", _noop, lock_key="network:net")
    queued.cancel()
    replacement = driver.start_job(JobKind.NETWORK_START, "net", _noop, lock_key="network:net")
    blocker.release()
    assert replacement.wait(SAFETY).state is JobState.SUCCEEDED


def test_lock_key_is_freed_by_a_failed_job(driver: LocalJobDriver) -> None:
    """A job that failed no longer holds its key."""

    def fail(ctx: JobContext) -> None:
        raise ValueError("bug")

    first = driver.start_job(JobKind.DOMAIN_START, "vm", fail, lock_key="k")
    assert first.wait(SAFETY).state is JobState.FAILED
    second = driver.start_job(JobKind.DOMAIN_START, "vm", _noop, lock_key="k")
    assert second.wait(SAFETY).state is JobState.SUCCEEDED


def test_lock_key_is_free_for_a_done_callback(driver: LocalJobDriver) -> None:
    """Once a job is terminal its key is free: even its own done callback may start the next."""
    started: list[str] = []
    chained = threading.Event()

    def chain(job: object) -> None:
        try:
            started.append(driver.start_job(JobKind.DOMAIN_START, "vm", _noop, lock_key="k").id)
        finally:
            chained.set()

    first = driver.start_job(JobKind.DOMAIN_START, "vm", _noop, lock_key="k")
    first.add_done_callback(chain)
    assert chained.wait(SAFETY)
    assert len(started) == 1
    assert driver.lookup_job(started[0]).wait(SAFETY).state is JobState.SUCCEEDED


def test_list_jobs_oldest_first_and_lookup(driver: LocalJobDriver) -> None:
    """list_jobs() gives every undestroyed job, oldest first; lookup_job finds each one."""
    jobs = [driver.start_job(JobKind.DOMAIN_SAVE, f"d{i}", _noop) for i in range(10)]
    assert driver.list_jobs() == jobs
    for job in jobs:
        job.wait(SAFETY)
        assert driver.lookup_job(job.id) == job
    jobs[4].destroy()
    assert driver.list_jobs() == jobs[:4] + jobs[5:]


@pytest.mark.parametrize("job_id", ["", "nope", "0" * 12])
def test_unknown_job_id_raises_no_job(driver: LocalJobDriver, job_id: str) -> None:
    """lookup_job and every protocol call refuse an id that does not exist."""
    with pytest.raises(NoJobError, match="no job"):
        driver.lookup_job(job_id)
    calls: list[Callable[[], object]] = [
        lambda: driver.job_info(job_id),
        lambda: driver.job_cancel(job_id),
        lambda: driver.job_wait(job_id, 0),
        lambda: driver.job_watch(job_id, 0.1),
        lambda: driver.job_outcome(job_id),
        lambda: driver.job_add_done_callback(job_id, lambda: None),
        lambda: driver.job_destroy(job_id),
    ]
    for call in calls:
        with pytest.raises(NoJobError):
            call()


def test_job_handles_are_equal_and_hash_by_id(make_driver: MakeDriver) -> None:
    """Handles for the same job are equal and hash alike; other jobs and drivers differ."""
    one = make_driver(1, id_factory=lambda: "same-id")
    two = make_driver(1, id_factory=lambda: "same-id")
    a = one.start_job(JobKind.DOMAIN_SAVE, "d", _noop)
    b = two.start_job(JobKind.DOMAIN_SAVE, "d", _noop)
    assert a.id == b.id == "same-id"
    a.wait(SAFETY)
    b.wait(SAFETY)
    again = one.lookup_job("same-id")
    assert again == a
    assert again is not a
    assert hash(again) == hash(a)
    assert len({a, again, one.list_jobs()[0]}) == 1
    assert a != b  # same id, different host
    assert a != "same-id"
    c = make_driver(1).start_job(JobKind.DOMAIN_SAVE, "d", _noop)
    c.wait(SAFETY)
    assert len({a, b, c}) == 3


def test_id_factory_collisions_are_retried(make_driver: MakeDriver) -> None:
    """If the id factory repeats an id in use, the driver asks it again."""
    ids: Iterator[str] = iter(["a", "a", "a", "b"])
    driver = make_driver(1, id_factory=lambda: next(ids))
    first = driver.start_job(JobKind.DOMAIN_SAVE, "d", _noop)
    second = driver.start_job(JobKind.DOMAIN_SAVE, "d", _noop)
    assert (first.id, second.id) == ("a", "b")
    first.wait(SAFETY)
    second.wait(SAFETY)


def test_close_cancels_all_jobs_and_ends_every_thread(
    make_driver: MakeDriver, make_blocker: MakeBlocker
) -> None:
    """close() cancels queued and running jobs, joins the threads and keeps records readable."""
    driver = make_driver(2)
    running = [make_blocker(honour_cancel=True) for _ in range(2)]
    running_jobs = [start(driver, b) for b in running]
    for blocker in running:
        assert blocker.started.wait(SAFETY)
    queued_jobs = [driver.start_job(JobKind.DOMAIN_SAVE, f"q{i}", _noop) for i in range(5)]
    keyed = driver.start_job(JobKind.DOMAIN_SAVE, "x", _noop, lock_key="x")
    assert driver.close(timeout=SAFETY)
    prefix = running[0].thread_name.rsplit("-", 1)[0] + "-"
    assert not [t.name for t in threading.enumerate() if t.name.startswith(prefix)]
    for job in running_jobs + queued_jobs:
        info = job.info()
        assert (info.state, info.cancel_requested) == (JobState.CANCELLED, True)
    assert all(len(b.cancel_threads) == 1 for b in running)
    assert keyed.info().state is JobState.CANCELLED
    assert driver.close(timeout=SAFETY)  # a second close is harmless
    with pytest.raises(OperationInvalidError, match="closed"):
        driver.start_job(JobKind.DOMAIN_SAVE, "late", _noop)
    assert len(driver.list_jobs()) == 8


def test_close_without_cancel_lets_running_jobs_finish(
    make_driver: MakeDriver, make_blocker: MakeBlocker
) -> None:
    """close(cancel=False) cancels only queued jobs; it reports False until the rest end."""
    driver = make_driver(1)
    blocker = make_blocker(honour_cancel=True, result="finished")
    running = start(driver, blocker)
    assert blocker.started.wait(SAFETY)
    queued = driver.start_job(JobKind.DOMAIN_SAVE, "q", _noop)
    assert driver.close(cancel=False, timeout=0) is False
    assert queued.info().state is JobState.CANCELLED
    info = running.info()
    assert (info.state, info.cancel_requested) == (JobState.RUNNING, False)
    with pytest.raises(OperationInvalidError):
        driver.start_job(JobKind.DOMAIN_SAVE, "late", _noop)
    blocker.release()
    assert driver.close(cancel=False, timeout=SAFETY) is True
    assert running.result() == "finished"


def test_close_of_a_job_that_ignores_cancel_waits_for_it(
    make_driver: MakeDriver, make_blocker: MakeBlocker
) -> None:
    """A job that ignores the close's cancel keeps its thread until it ends."""
    driver = make_driver(1)
    blocker = make_blocker(honour_cancel=False, result=1)
    job = start(driver, blocker)
    assert blocker.started.wait(SAFETY)
    assert driver.close(timeout=0) is False
    assert job.info().cancel_requested
    blocker.release()
    assert driver.close(timeout=SAFETY) is True
    assert job.result() == 1


def test_close_of_an_unused_driver_is_immediate() -> None:
    """A driver that never ran a job has no threads and closes at once."""
    before = job_threads()
    driver = LocalJobDriver(3)
    assert job_threads() == before
    assert driver.close(timeout=SAFETY)
    assert "max_jobs=3" in repr(driver)
