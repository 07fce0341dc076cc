"""Job engine benchmarks: `LocalJobDriver`, `JobContext` and `Job` against plain-Python baselines.

- ``engine.jobs``: throughput of trivial jobs through 8 workers vs `ThreadPoolExecutor`.
- ``engine.update_rel``: one progress report vs a locked counter increment.
- ``engine.cancel_latency`` / ``engine.cancel_latency_busy``: cancel to terminal state for a
  worker checking every 5 ms of work vs the same loop checking a `threading.Event`.
- ``engine.info``: `Job.info()` calls per second vs reading a dataclass under a lock.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from bench import Config, Pair, Target, benchmark
from virtjob.jobs import JobContext, JobInfo, JobKind, JobState, LocalJobDriver

KIND = JobKind.DOMAIN_SAVE
SUBJECT = "bench"
CLOSE_TIMEOUT = 10.0
WORK_UNIT = 0.005
"""Seconds of "work" a cooperative worker does between two cancel checks."""

_perf = time.perf_counter


def _close(driver: LocalJobDriver) -> None:
    if not driver.close(timeout=CLOSE_TIMEOUT):
        raise RuntimeError(f"{driver!r} did not close within {CLOSE_TIMEOUT} s")


# -- engine.jobs -----------------------------------------------------------------------------


def _trivial_worker(_ctx: JobContext) -> None:
    return None


def _trivial_task(_arg: object) -> None:
    return None


@benchmark(
    "engine.jobs",
    group="engine",
    unit="us/job",
    ours="10,000 trivial jobs (2,000 quick) through LocalJobDriver(max_jobs=8): start_job all,"
    " then result() each; the driver is created and closed inside the timed region",
    baseline="the same through ThreadPoolExecutor(max_workers=8): submit all, then result()"
    " each; the executor is created and shut down inside the timed region",
    target=Target.ratio_at_most(1.5),
)
def jobs(cfg: Config) -> Iterator[Pair]:
    """Wall time per job, creation and shutdown of the pool included on both sides."""
    n = cfg.pick(10_000, 2_000)

    def ours() -> float:
        t0 = _perf()
        driver = LocalJobDriver(max_jobs=8)
        try:
            handles = [driver.start_job(KIND, SUBJECT, _trivial_worker) for _ in range(n)]
            for job in handles:
                job.result()
        finally:
            _close(driver)
        return (_perf() - t0) / n * 1e6

    def baseline() -> float:
        t0 = _perf()
        with ThreadPoolExecutor(max_workers=8) as executor:
            futures = [executor.submit(_trivial_task, None) for _ in range(n)]
            for future in futures:
                future.result()
        return (_perf() - t0) / n * 1e6

    yield Pair(ours=ours, baseline=baseline)


# -- engine.update_rel -----------------------------------------------------------------------


class _LockedCounter:
    __slots__ = ("_lock", "value")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def add(self, amount: int) -> None:
        with self._lock:
            self.value += amount


@benchmark(
    "engine.update_rel",
    group="engine",
    unit="ns/call",
    ours="ctx.update_rel(percent=...) in a loop inside a running bounded job, while the caller"
    " blocks in job.result() (as every synchronous call does)",
    baseline="counter.add(1), a method doing `with lock: self.value += amount`, same loop,"
    " same worker thread",
    target=Target.ratio_at_most(3.0),
)
def update_rel(cfg: Config) -> Iterator[Pair]:
    """Both loops run as workers of one single-thread driver: the same thread, the same loop."""
    n = cfg.pick(500_000, 50_000)
    driver = LocalJobDriver(max_jobs=1)

    def ours_worker(ctx: JobContext) -> float:
        ctx.initialize(bounded=True)
        step = 50.0 / n  # stays below 100 %, so every call does the full update
        update = ctx.update_rel
        t0 = _perf()
        for _ in range(n):
            update(percent=step)
        return (_perf() - t0) / n * 1e9

    def baseline_worker(_ctx: JobContext) -> float:
        add = _LockedCounter().add
        t0 = _perf()
        for _ in range(n):
            add(1)
        return (_perf() - t0) / n * 1e9

    def ours() -> float:
        value: float = driver.start_job(KIND, SUBJECT, ours_worker).result()
        return value

    def baseline() -> float:
        value: float = driver.start_job(KIND, SUBJECT, baseline_worker).result()
        return value

    try:
        yield Pair(ours=ours, baseline=baseline)
    finally:
        _close(driver)


# -- engine.cancel_latency -------------------------------------------------------------------


def _sleep_work(seconds: float) -> None:
    """Work that waits (I/O, a child process): sleeps `seconds` in all, releasing the GIL."""
    deadline = _perf() + seconds
    while (left := deadline - _perf()) > 0:
        time.sleep(left)


def _busy_work(seconds: float) -> None:
    """Work that computes in Python: spins `seconds`, holding the GIL but for switches."""
    deadline = _perf() + seconds
    while _perf() < deadline:
        pass


class _JobLoop:
    """A cooperative worker: a unit of work, then ``ctx.finish_cancel()``, until cancelled."""

    def __init__(self, work: Callable[[float], None]) -> None:
        self.work = work
        self.started = threading.Event()

    def __call__(self, ctx: JobContext) -> None:
        self.started.set()
        while True:
            self.work(WORK_UNIT)
            if ctx.finish_cancel():
                return


class _EventLoop:
    """The baseline: the same loop, checking a `threading.Event` the canceller sets."""

    def __init__(self, work: Callable[[float], None]) -> None:
        self.work = work
        self.started = threading.Event()
        self.stop = threading.Event()
        self.done = threading.Event()

    def __call__(self) -> None:
        self.started.set()
        while True:
            self.work(WORK_UNIT)
            if self.stop.is_set():
                self.done.set()
                return


def _cancel_latency(cfg: Config, work: Callable[[float], None]) -> Iterator[Pair]:
    tries = cfg.pick(40, 10)  # per round: 200 samples per side in a full run, 30 quick
    driver = LocalJobDriver(max_jobs=1)
    executor = ThreadPoolExecutor(max_workers=1)
    # The same seed on both sides: cancels land at the same phases of the work unit.
    ours_rng, baseline_rng = random.Random(5), random.Random(5)

    def ours() -> list[float]:
        samples: list[float] = []
        for _ in range(tries):
            loop = _JobLoop(work)
            job = driver.start_job(KIND, SUBJECT, loop)
            if not loop.started.wait(CLOSE_TIMEOUT):
                raise RuntimeError("the cooperative job did not start")
            time.sleep(ours_rng.uniform(0.0, WORK_UNIT))
            t0 = _perf()
            job.cancel()
            info = job.wait(CLOSE_TIMEOUT)
            samples.append((_perf() - t0) * 1e3)
            if info.state is not JobState.CANCELLED:
                raise RuntimeError(f"cancelled job ended {info.state}")
            job.destroy()
        return samples

    def baseline() -> list[float]:
        samples: list[float] = []
        for _ in range(tries):
            loop = _EventLoop(work)
            future = executor.submit(loop)
            if not loop.started.wait(CLOSE_TIMEOUT):
                raise RuntimeError("the cooperative thread did not start")
            time.sleep(baseline_rng.uniform(0.0, WORK_UNIT))
            t0 = _perf()
            loop.stop.set()
            if not loop.done.wait(CLOSE_TIMEOUT):
                raise RuntimeError("the cooperative thread did not stop")
            samples.append((_perf() - t0) * 1e3)
            future.result()
        return samples

    try:
        yield Pair(ours=ours, baseline=baseline)
    finally:
        executor.shutdown(wait=True)
        _close(driver)


@benchmark(
    "engine.cancel_latency",
    group="engine",
    unit="ms",
    ours="job.cancel() until job.wait() returns, for a worker that sleeps 5 ms of 'work'"
    " then checks ctx.finish_cancel(); cancel at a random point of the 5 ms (200 tries,"
    " 30 quick)",
    baseline="the same loop checking a threading.Event every 5 ms: event.set() until the loop"
    " signals it has stopped",
    stats=("p50", "p99"),
    target={"p99": Target.below(50.0)},
)
def cancel_latency(cfg: Config) -> Iterator[Pair]:
    """Latency of a cancel for a worker whose work releases the GIL (I/O, subprocesses)."""
    yield from _cancel_latency(cfg, _sleep_work)


@benchmark(
    "engine.cancel_latency_busy",
    group="engine",
    unit="ms",
    ours="as engine.cancel_latency, but the 5 ms of work is a pure-Python busy loop that holds"
    " the GIL",
    baseline="the same busy loop checking a threading.Event",
    stats=("p50", "p99"),
    target={"p99": Target.below(50.0)},
)
def cancel_latency_busy(cfg: Config) -> Iterator[Pair]:
    """Latency of a cancel for a CPU-bound worker: the canceller competes for the GIL."""
    yield from _cancel_latency(cfg, _busy_work)


# -- engine.info -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Snapshot:
    state: JobState
    percent: float
    remaining: float | None


class _Guarded:
    __slots__ = ("_lock", "_value")

    def __init__(self, value: _Snapshot) -> None:
        self._lock = threading.Lock()
        self._value = value

    def get(self) -> _Snapshot:
        with self._lock:
            return self._value


@benchmark(
    "engine.info",
    group="engine",
    unit="calls/s",
    ours="job.info() on a running bounded job (10 % done, remaining estimated from the rate),"
    " from the main thread",
    baseline="guarded.get(): a method returning a frozen dataclass under a lock",
    higher_is_better=True,
)
def info(cfg: Config) -> Iterator[Pair]:
    """How often a caller (a CLI progress bar, the daemon's SSE stream) can poll a job."""
    n = cfg.pick(500_000, 50_000)
    driver = LocalJobDriver(max_jobs=1)
    gate = threading.Event()
    ready = threading.Event()

    def worker(ctx: JobContext) -> None:
        ctx.initialize(bounded=True)
        time.sleep(0.01)
        ctx.update(percent=10.0)
        ready.set()
        gate.wait()

    job = driver.start_job(KIND, SUBJECT, worker)
    try:
        if not ready.wait(CLOSE_TIMEOUT):
            raise RuntimeError("the job to poll did not start")
        first: JobInfo = job.info()
        assert first.state is JobState.RUNNING
        assert first.remaining is not None
        guarded = _Guarded(_Snapshot(JobState.RUNNING, 10.0, 1.0))

        def ours() -> float:
            call = job.info
            t0 = _perf()
            for _ in range(n):
                call()
            return n / (_perf() - t0)

        def baseline() -> float:
            call = guarded.get
            t0 = _perf()
            for _ in range(n):
                call()
            return n / (_perf() - t0)

        yield Pair(ours=ours, baseline=baseline)
    finally:
        gate.set()
        job.wait(CLOSE_TIMEOUT)
        _close(driver)
