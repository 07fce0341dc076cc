"""Cancel latency across layers: from `Job.cancel()` to the caller seeing the final state.

- ``cancel.test_save``: a save on the test driver (``test:///benchcancel``, domain ``test``)
  cancelled 20 ms in, vs the engine alone: a cooperative worker pacing itself with
  ``ctx.wait_for_cancel()`` on a `LocalJobDriver`, cancelled 20 ms in.
- ``cancel.remote_save``: the same save through a real virtjobd on a temporary unix socket
  (``test+unix://``), cancelled from the client until its ``job.wait()`` returns, vs the
  in-process test driver's save.

The QEMU save cancel is ``qemu.save_cancel`` (bench/qemu.py). Median and p99 over 10 tries per
call, 50 in a full run (4 per call, 12 quick).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator

from bench import Config, Pair, benchmark
from virtjob.jobs import Job, JobContext, JobKind, JobState, LocalJobDriver

CANCEL_AFTER = 0.02
"""Seconds after the job is started at which it is asked to stop."""
WAIT_TIMEOUT = 30.0
TEST_URI = "test:///benchcancel"
DOMAIN = "test"
PACE = 0.05
"""Seconds a cooperative worker waits between progress steps (the test driver's TICK)."""

_perf = time.perf_counter


def _tries(cfg: Config) -> int:
    return cfg.pick(10, 4)


def _latencies(start_job: Callable[[], Job], tries: int) -> list[float]:
    """Start a job, cancel it `CANCEL_AFTER` s later; ms from cancel() until wait() returns."""
    samples: list[float] = []
    for _ in range(tries):
        job = start_job()
        try:
            time.sleep(CANCEL_AFTER)
            t0 = _perf()
            job.cancel()
            final = job.wait(WAIT_TIMEOUT)
            samples.append((_perf() - t0) * 1e3)
        except BaseException:
            job.cancel()
            job.wait(WAIT_TIMEOUT)
            raise
        finally:
            job.destroy()
        if final.state is not JobState.CANCELLED:
            raise RuntimeError(f"the cancelled job ended {final.state}: {final}")
    return samples


def _cooperative(ctx: JobContext) -> None:
    """A worker shaped like the test driver's: paced steps that wake at once on a cancel."""
    ctx.initialize(bounded=True)
    step = 0
    while not ctx.wait_for_cancel(PACE):
        step += 1
        ctx.update(processed=step, total=1_000)
    ctx.finish_cancel()


@benchmark(
    "cancel.test_save",
    group="cancel",
    unit="ms",
    ours="dom.save_job() on the test driver (test:///benchcancel, domain 'test', 512 MiB at"
    " 256 MiB/s), cancelled 20 ms after save_job() returned: cancel() until wait() returns"
    " CANCELLED (partial file removed, domain running again); 50 tries (12 quick)",
    baseline="the engine alone: a LocalJobDriver worker reporting progress every 50 ms and"
    " pacing with ctx.wait_for_cancel(), cancelled 20 ms in, until wait() returns",
    stats=("median", "p99"),
)
def test_save(cfg: Config) -> Iterator[Pair]:
    """What the test driver's save adds to the engine's own cancel path."""
    import virtjob

    tries = _tries(cfg)
    base = tempfile.mkdtemp(prefix="vjbench-cancel-")
    conn = virtjob.open(TEST_URI)
    dom = conn.lookup_domain(DOMAIN)
    driver = LocalJobDriver(max_jobs=1)
    path = os.path.join(base, "t.save")
    try:
        yield Pair(
            ours=lambda: _latencies(lambda: dom.save_job(path), tries),
            baseline=lambda: _latencies(
                lambda: driver.start_job(JobKind.DOMAIN_SAVE, "bench", _cooperative), tries
            ),
        )
        if os.path.exists(path):
            raise RuntimeError(f"a cancelled save left {path} behind")
    finally:
        driver.close(timeout=WAIT_TIMEOUT)
        conn.close()
        shutil.rmtree(base, ignore_errors=True)


@benchmark(
    "cancel.remote_save",
    group="cancel",
    unit="ms",
    ours="the same save through virtjobd (a subprocess on a temporary unix socket,"
    " test+unix:///benchcancel): client cancel() until the client's wait() (a long poll)"
    " returns CANCELLED; 50 tries (12 quick)",
    baseline="the same save on the in-process test driver (cancel.test_save's ours)",
    stats=("median", "p99"),
)
def remote_save(cfg: Config) -> Iterator[Pair]:
    """What the daemon and the HTTP round trips add to a cancel."""
    import virtjob
    from bench.daemon import _daemon

    tries = _tries(cfg)
    base = tempfile.mkdtemp(prefix="vjbench-cancel-")
    try:
        with _daemon() as (sock, files):
            remote = virtjob.open(f"test+unix:///benchcancel?socket={sock}")
            local = virtjob.open(TEST_URI)
            try:
                remote_dom = remote.lookup_domain(DOMAIN)
                local_dom = local.lookup_domain(DOMAIN)
                remote_path = os.path.join(files, "r.save")
                local_path = os.path.join(base, "l.save")
                yield Pair(
                    ours=lambda: _latencies(lambda: remote_dom.save_job(remote_path), tries),
                    baseline=lambda: _latencies(lambda: local_dom.save_job(local_path), tries),
                )
            finally:
                remote.close()
                local.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)
