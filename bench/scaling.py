"""Scaling benchmarks: how the engine's costs grow with the number of jobs one driver holds.

One row per size, so the table shows the growth (the sizes are 1k, 10k and 100k finished jobs;
``--quick`` stops at 10k, and at 1k for the slow memory rows, listing the others as skipped):

- ``scaling.list_jobs@N``: `LocalJobDriver.list_jobs()` with N finished jobs vs listing a plain
  dict of N small frozen dataclasses under a lock, wrapped into handles.
- ``scaling.lookup_info@N``: ``driver.lookup_job(id).info()`` for random ids among the N vs
  the same through a plain dict (a handle made from the record, then a dict read by id).
- ``scaling.memory@N``: bytes each finished job keeps alive in the driver (`tracemalloc`,
  retained after a full collection) vs N resolved `concurrent.futures.Future` objects held in a
  dict under the same kind of id. The jobs measured are trivial ones nobody waited on while
  they ran; a job that was waited on (``wait()``, ``result()``, ``watch()``) while running, or
  whose worker paced itself with ``ctx.wait_for_cancel()``, also keeps the `threading.Condition`
  made for that wait (about 1 KB more; the record never drops it).
- ``scaling.running_info`` / ``running_start`` / ``running_cancel``: 1,000 (200 quick) jobs
  blocked at once on ``LocalJobDriver(max_jobs=1000)``: `Job.info()` polled from 8 threads,
  the time to get them all running, the time to cancel them all and see them final; vs
  ``ThreadPoolExecutor(max_workers=1000)`` tasks blocked on an Event each, ``future.done()``.
"""

from __future__ import annotations

import gc
import random
import secrets
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from bench import Config, Pair, Skip, benchmark
from virtjob.jobs import Job, JobContext, JobKind, JobState, LocalJobDriver

KIND = JobKind.DOMAIN_SAVE
SUBJECT = "bench"
CLOSE_TIMEOUT = 30.0
POLL_THREADS = 8
SIZES = ((1_000, "1k"), (10_000, "10k"), (100_000, "100k"))
QUICK_LIMIT = 10_000
"""The largest size run under ``--quick``; larger ones are skipped there."""

_perf = time.perf_counter


def _close(driver: LocalJobDriver) -> None:
    if not driver.close(timeout=CLOSE_TIMEOUT):
        raise RuntimeError(f"{driver!r} did not close within {CLOSE_TIMEOUT} s")


def _check_size(cfg: Config, n: int, limit: int = QUICK_LIMIT) -> None:
    if cfg.quick and n > limit:
        raise Skip(f"{n:,} jobs: full run only (--quick stops at {limit:,})")


def _trivial_worker(_ctx: JobContext) -> None:
    return None


class _Countdown:
    """Sets `done` once `tick()` has been called `n` times (from any threads)."""

    def __init__(self, n: int) -> None:
        self._lock = threading.Lock()
        self._left = n
        self.done = threading.Event()
        if n <= 0:
            self.done.set()

    def tick(self, *_args: object) -> None:
        with self._lock:
            self._left -= 1
            if self._left == 0:
                self.done.set()


def _wait(event: threading.Event, what: str) -> None:
    if not event.wait(CLOSE_TIMEOUT):
        raise RuntimeError(f"{what} did not happen within {CLOSE_TIMEOUT} s")


def _finished_jobs(driver: LocalJobDriver, n: int) -> None:
    """Run `n` trivial jobs to completion on `driver`; nobody waits on a running job."""
    countdown = _Countdown(n)
    for _ in range(n):
        driver.start_job(KIND, SUBJECT, _trivial_worker).add_done_callback(countdown.tick)
    _wait(countdown.done, f"the end of {n:,} trivial jobs")


# -- the plain-Python registry the baselines use ---------------------------------------------


@dataclass(frozen=True, slots=True)
class _Record:
    """A finished job as a plain registry would keep it."""

    id: str
    kind: JobKind
    subject: str
    state: JobState


class _Store:
    """A dict of frozen records behind a lock: the minimal job registry."""

    def __init__(self, n: int) -> None:
        self.lock = threading.Lock()
        self.records: dict[str, _Record] = {}
        for _ in range(n):
            job_id = secrets.token_hex(6)
            self.records[job_id] = _Record(job_id, KIND, SUBJECT, JobState.SUCCEEDED)

    def list_handles(self) -> list[_Handle]:
        with self.lock:
            records = list(self.records.values())
        return [_Handle(self, r.id, r.kind, r.subject) for r in records]

    def lookup(self, job_id: str) -> _Handle:
        record = self.records[job_id]
        return _Handle(self, record.id, record.kind, record.subject)


class _Handle:
    """What `Job` is to `LocalJobDriver`: the identity of a record, nothing else."""

    __slots__ = ("_id", "_kind", "_store", "_subject")

    def __init__(self, store: _Store, job_id: str, kind: JobKind, subject: str) -> None:
        self._store = store
        self._id = job_id
        self._kind = kind
        self._subject = subject

    def info(self) -> _Record:
        return self._store.records[self._id]


# -- scaling.list_jobs@N ---------------------------------------------------------------------


def _list_jobs(n: int) -> Callable[[Config], Iterator[Pair]]:
    def setup(cfg: Config) -> Iterator[Pair]:
        _check_size(cfg, n)
        reps = max(1, 100_000 // n)  # about 100,000 handles per measured call at every size
        driver = LocalJobDriver(max_jobs=8)
        try:
            _finished_jobs(driver, n)
            store = _Store(n)
            assert len(driver.list_jobs()) == len(store.list_handles()) == n

            def ours() -> float:
                listing = driver.list_jobs
                t0 = _perf()
                for _ in range(reps):
                    listing()
                return (_perf() - t0) / reps * 1e3

            def baseline() -> float:
                listing = store.list_handles
                t0 = _perf()
                for _ in range(reps):
                    listing()
                return (_perf() - t0) / reps * 1e3

            yield Pair(ours=ours, baseline=baseline)
        finally:
            _close(driver)

    return setup


# -- scaling.lookup_info@N -------------------------------------------------------------------


def _lookup_info(n: int) -> Callable[[Config], Iterator[Pair]]:
    def setup(cfg: Config) -> Iterator[Pair]:
        _check_size(cfg, n)
        calls = cfg.pick(50_000, 20_000)
        driver = LocalJobDriver(max_jobs=8)
        try:
            _finished_jobs(driver, n)
            store = _Store(n)
            rng = random.Random(7)
            ours_ids = [job.id for job in driver.list_jobs()]
            base_ids = list(store.records)
            picks = [rng.randrange(n) for _ in range(calls)]  # the same positions on both sides
            ours_seq = [ours_ids[i] for i in picks]
            base_seq = [base_ids[i] for i in picks]
            assert driver.lookup_job(ours_seq[0]).info().state is JobState.SUCCEEDED

            def ours() -> float:
                lookup = driver.lookup_job
                t0 = _perf()
                for job_id in ours_seq:
                    lookup(job_id).info()
                return (_perf() - t0) / calls * 1e9

            def baseline() -> float:
                lookup = store.lookup
                t0 = _perf()
                for job_id in base_seq:
                    lookup(job_id).info()
                return (_perf() - t0) / calls * 1e9

            yield Pair(ours=ours, baseline=baseline)
        finally:
            _close(driver)

    return setup


# -- scaling.memory@N ------------------------------------------------------------------------


def _warm_pool(driver: LocalJobDriver) -> None:
    """Start all of the driver's threads (blocked jobs force one each), so none is counted."""
    gate = threading.Event()
    started = _Countdown(driver.max_jobs)

    def hold(_ctx: JobContext) -> None:
        started.tick()
        gate.wait()

    jobs = [driver.start_job(KIND, SUBJECT, hold) for _ in range(driver.max_jobs)]
    _wait(started.done, "the start of the pool's threads")
    gate.set()
    for job in jobs:
        job.wait(CLOSE_TIMEOUT)
        job.destroy()


def _retained(make: Callable[[], object], n: int) -> float:
    """Bytes per item that `make()` leaves allocated, traced from start to a full collection.

    The cyclic GC is paused while `make()` runs (tracing makes its passes over the growing
    heap slow); the full collection afterwards frees whatever it would have freed.
    """
    gc.collect()
    enabled = gc.isenabled()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        gc.disable()
        try:
            keep = make()
        finally:
            if enabled:
                gc.enable()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del keep
    return (after - before) / n


QUICK_MEMORY_LIMIT = 1_000
"""Memory rows are slow under tracemalloc: --quick measures only the smallest size."""


def _memory(n: int) -> Callable[[Config], Iterator[Pair]]:
    def setup(cfg: Config) -> Iterator[Pair]:
        _check_size(cfg, n, QUICK_MEMORY_LIMIT)

        def ours() -> float:
            driver = LocalJobDriver(max_jobs=8)
            try:
                _warm_pool(driver)

                def make() -> object:
                    _finished_jobs(driver, n)
                    return None  # what is left is what the driver keeps

                per_job = _retained(make, n)
                if len(driver.list_jobs()) != n:
                    raise RuntimeError("the driver does not hold the jobs it ran")
                return per_job
            finally:
                _close(driver)

        def baseline() -> float:
            def make() -> object:
                futures: dict[str, Future[None]] = {}
                for _ in range(n):
                    future: Future[None] = Future()
                    future.set_result(None)
                    futures[secrets.token_hex(6)] = future
                return futures

            return _retained(make, n)

        yield Pair(ours=ours, baseline=baseline)

    return setup


for _n, _label in SIZES:
    benchmark(
        f"scaling.list_jobs@{_label}",
        group="scaling",
        unit="ms/call",
        ours=f"driver.list_jobs() on a LocalJobDriver holding {_n:,} finished jobs (handles for"
        " all, oldest first)",
        baseline=f"a dict of {_n:,} frozen dataclasses (id, kind, subject, state): list its"
        " values under a lock and wrap each into a 4-slot handle object",
    )(_list_jobs(_n))
    benchmark(
        f"scaling.lookup_info@{_label}",
        group="scaling",
        unit="ns/call",
        ours=f"driver.lookup_job(id).info() for random ids among {_n:,} finished jobs"
        " (50,000 calls, 20,000 quick)",
        baseline=f"the same ids in a dict of {_n:,} frozen dataclasses: a handle made from the"
        " record, then handle.info() reads the record back from the dict by id",
    )(_lookup_info(_n))
    benchmark(
        f"scaling.memory@{_label}",
        group="scaling",
        unit="bytes/job",
        ours=f"memory a LocalJobDriver keeps per finished job: tracemalloc around starting"
        f" {_n:,} trivial jobs and seeing them end (done callbacks, no waiter), handles"
        " dropped, after gc.collect(); the pool's threads are started beforehand",
        baseline=f"{_n:,} concurrent.futures.Future objects resolved with set_result(None),"
        " held in a dict under a secrets.token_hex(6) id as the driver holds its records",
    )(_memory(_n))


# -- scaling.running_* -----------------------------------------------------------------------


def _blocked_worker(started: _Countdown) -> Callable[[JobContext], None]:
    def work(ctx: JobContext) -> None:
        started.tick()
        ctx.wait_for_cancel(None)
        ctx.finish_cancel()

    return work


def _blocked_task(started: _Countdown, stop: threading.Event) -> None:
    started.tick()
    stop.wait()


@dataclass
class _Timings:
    start: float
    cancel: float


class _Running:
    """`n` jobs blocked on a fresh LocalJobDriver(max_jobs=n)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.driver = LocalJobDriver(max_jobs=n)
        self.jobs: list[Job] = []

    def start(self) -> float:
        started = _Countdown(self.n)
        worker = _blocked_worker(started)
        t0 = _perf()
        self.jobs = [self.driver.start_job(KIND, SUBJECT, worker) for _ in range(self.n)]
        _wait(started.done, f"the start of {self.n:,} jobs")
        return _perf() - t0

    def cancel(self) -> float:
        t0 = _perf()
        for job in self.jobs:
            job.cancel()
        for job in self.jobs:
            job.wait(CLOSE_TIMEOUT)
        elapsed = _perf() - t0
        if any(job.info().state is not JobState.CANCELLED for job in self.jobs):
            raise RuntimeError("a cancelled job did not end CANCELLED")
        return elapsed

    def close(self) -> None:
        _close(self.driver)


class _Pooled:
    """The baseline: `n` tasks blocked on an Event each in ThreadPoolExecutor(max_workers=n)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.executor = ThreadPoolExecutor(max_workers=n)
        self.stops = [threading.Event() for _ in range(n)]
        self.futures: list[Future[None]] = []

    def start(self) -> float:
        started = _Countdown(self.n)
        t0 = _perf()
        self.futures = [self.executor.submit(_blocked_task, started, s) for s in self.stops]
        _wait(started.done, f"the start of {self.n:,} tasks")
        return _perf() - t0

    def cancel(self) -> float:
        t0 = _perf()
        for stop in self.stops:
            stop.set()
        for future in self.futures:
            future.result(CLOSE_TIMEOUT)
        return _perf() - t0

    def close(self) -> None:
        for stop in self.stops:
            stop.set()
        self.executor.shutdown(wait=True)


def _once(make: Callable[[], _Running | _Pooled]) -> _Timings:
    """One full life: make the pool, start all, cancel all, close it (close not timed)."""
    pool = make()
    try:
        start = pool.start()
        cancel = pool.cancel()
    finally:
        pool.close()
    return _Timings(start, cancel)


def _running_size(cfg: Config) -> int:
    return cfg.pick(1_000, 200)


@benchmark(
    "scaling.running_start",
    group="scaling",
    unit="ms",
    ours="a fresh LocalJobDriver(max_jobs=1000) (200 quick): start_job 1,000 workers that each"
    " block in ctx.wait_for_cancel(None), until all have begun running (a thread each)",
    baseline="a fresh ThreadPoolExecutor(max_workers=1000): submit 1,000 tasks that each block"
    " on an Event of their own, until all have begun running",
)
def running_start(cfg: Config) -> Iterator[Pair]:
    """Time to get n blocked jobs running (thread creation included on both sides)."""
    n = _running_size(cfg)
    yield Pair(
        ours=lambda: _once(lambda: _Running(n)).start * 1e3,
        baseline=lambda: _once(lambda: _Pooled(n)).start * 1e3,
    )


@benchmark(
    "scaling.running_cancel",
    group="scaling",
    unit="ms",
    ours="job.cancel() on each of the 1,000 blocked jobs (200 quick), then job.wait() on each:"
    " from the first cancel until all are CANCELLED",
    baseline="event.set() for each of the 1,000 blocked tasks, then future.result() on each",
)
def running_cancel(cfg: Config) -> Iterator[Pair]:
    """Time to cancel n blocked jobs and see every one of them final."""
    n = _running_size(cfg)
    yield Pair(
        ours=lambda: _once(lambda: _Running(n)).cancel * 1e3,
        baseline=lambda: _once(lambda: _Pooled(n)).cancel * 1e3,
    )


def _poll_rate(calls: list[Callable[[], object]], seconds: float) -> float:
    """Calls per second from `POLL_THREADS` threads, each cycling over its share of `calls`."""
    shares = [calls[i::POLL_THREADS] for i in range(POLL_THREADS)]
    counts = [0] * POLL_THREADS
    barrier = threading.Barrier(POLL_THREADS + 1)
    deadline = 0.0

    def poll(index: int) -> None:
        share = shares[index]
        done = 0
        barrier.wait()
        while _perf() < deadline:
            for call in share:
                call()
            done += len(share)
        counts[index] = done

    threads = [threading.Thread(target=poll, args=(i,)) for i in range(POLL_THREADS)]
    for thread in threads:
        thread.start()
    deadline = _perf() + seconds + 0.01  # set before the barrier releases the pollers
    t0 = _perf()
    barrier.wait()
    for thread in threads:
        thread.join()
    return sum(counts) / (_perf() - t0)


@benchmark(
    "scaling.running_info",
    group="scaling",
    unit="calls/s",
    ours="job.info() on 1,000 blocked jobs (200 quick) of one LocalJobDriver(max_jobs=1000),"
    " polled round-robin from 8 threads for 0.5 s (0.1 s quick): calls/s across the 8",
    baseline="future.done() on 1,000 blocked ThreadPoolExecutor(max_workers=1000) tasks, the"
    " same way",
    higher_is_better=True,
)
def running_info(cfg: Config) -> Iterator[Pair]:
    """Polling throughput while many jobs run at once (both pools stay up for all rounds)."""
    n = _running_size(cfg)
    seconds = cfg.pick(0.5, 0.1)
    running = _Running(n)
    pooled = _Pooled(n)
    try:
        running.start()
        pooled.start()
        job_calls: list[Callable[[], object]] = [job.info for job in running.jobs]
        future_calls: list[Callable[[], object]] = [f.done for f in pooled.futures]
        yield Pair(
            ours=lambda: _poll_rate(job_calls, seconds),
            baseline=lambda: _poll_rate(future_calls, seconds),
        )
    finally:
        try:
            running.cancel()
        finally:
            running.close()
            pooled.close()
