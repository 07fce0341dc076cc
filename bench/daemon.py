"""virtjobd benchmarks: job-info round trips and event-stream latency over the unix socket.

- ``daemon.info_1``: `Job.info()` calls per second through the remote driver from one client
  vs the same ``GET /v1/jobs/{id}`` sent by a minimal raw-socket HTTP/1.1 client (the server's
  own ceiling: what is left is client-side cost: building the httpx request and response,
  the remote driver's transport, decoding the JSON and the `JobInfo`).
- ``daemon.info_8``: the same from 8 client threads, each with its own connection.
- ``daemon.event_latency``: delay from a progress update in the daemon to the client's
  `Job.watch()` (the event's wall time is the job's recorded start + its elapsed, both on the
  daemon's clock, same machine) vs an in-process `Job.watch()` on a `LocalJobDriver`.

Each benchmark starts its own virtjobd (``python -m virtjob.daemon``) in a temporary
directory and stops it afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator

from bench import Config, Pair, Skip, Target, benchmark

_perf = time.perf_counter
READY_TIMEOUT = 15.0


@contextlib.contextmanager
def _daemon() -> Iterator[tuple[str, str]]:
    """A virtjobd on a temporary unix socket: yields (socket path, files directory)."""
    base = tempfile.mkdtemp(prefix="vjbench-")
    sock, files = os.path.join(base, "d.sock"), os.path.join(base, "files")
    os.makedirs(files)
    argv = [sys.executable, "-m", "virtjob.daemon", "--state-dir", os.path.join(base, "s")]
    argv += ["--listen", f"unix:{sock}", "--allow-dir", files]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise Skip(f"virtjobd exited with {proc.returncode}")
            with socket.socket(socket.AF_UNIX) as probe:
                try:
                    probe.connect(sock)
                    break
                except OSError:
                    pass
            if time.monotonic() > deadline:
                raise Skip("virtjobd did not start")
            time.sleep(0.02)  # bounded readiness poll
        yield sock, files
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(READY_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(base, ignore_errors=True)


def _raw_getter(sock_path: str, path: str) -> Callable[[], None]:
    """A minimal keep-alive HTTP/1.1 GET over a unix socket (reads Content-Length bodies)."""
    conn = socket.socket(socket.AF_UNIX)
    conn.connect(sock_path)
    request = f"GET {path} HTTP/1.1\r\nhost: virtjobd\r\n\r\n".encode()
    buffer = b""

    def get() -> None:
        nonlocal buffer
        conn.sendall(request)
        while b"\r\n\r\n" not in buffer:
            buffer += conn.recv(65536)
        head, _, buffer = buffer.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        while len(buffer) < length:
            buffer += conn.recv(65536)
        buffer = buffer[length:]

    return get


def _rate(calls: Callable[[], None], n: int, threads: int) -> float:
    def loop() -> None:
        for _ in range(n):
            calls()

    if threads == 1:
        t0 = _perf()
        loop()
        return n / (_perf() - t0)
    workers = [threading.Thread(target=loop) for _ in range(threads)]
    t0 = _perf()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return n * threads / (_perf() - t0)


def _info_benchmark(cfg: Config, threads: int) -> Iterator[Pair]:
    import virtjob

    n = cfg.pick(3000, 600) // threads
    with _daemon() as (sock, files):
        uri = f"test+unix:///bench?socket={sock}&rate={1 << 20}"
        with virtjob.open(uri) as conn:
            job = conn.lookup_domain("test").dump_core_job(os.path.join(files, "core"))
            path = f"/v1/jobs/{job.id}"
            conns = [virtjob.open(uri) for _ in range(threads)]
            handles = [c.lookup_job(job.id) for c in conns]
            raw = [_raw_getter(sock, path) for _ in range(threads)]
            per_thread = iter(range(10**9))
            lock = threading.Lock()

            def pick(items: list[Callable[[], object]]) -> Callable[[], None]:
                local = threading.local()

                def call() -> None:
                    fn = getattr(local, "fn", None)
                    if fn is None:
                        with lock:
                            fn = local.fn = items[next(per_thread) % len(items)]
                    fn()

                return call

            try:
                yield Pair(
                    ours=lambda: _rate(pick([h.info for h in handles]), n, threads),
                    baseline=lambda: _rate(pick(list(raw)), n, threads),
                )
            finally:
                job.cancel()
                job.wait(10)
                for c in conns:
                    c.close()


@benchmark(
    "daemon.info_1",
    group="daemon",
    unit="req/s",
    ours="remote Job.info() round trips over the unix socket, one client (3,000 calls)",
    baseline="the same GET /v1/jobs/{id} from a minimal raw-socket HTTP/1.1 client",
    target=Target.ratio_at_least(0.5),
    higher_is_better=True,
)
def info_1(cfg: Config) -> Iterator[Pair]:
    """Job info round trips per second from one client."""
    yield from _info_benchmark(cfg, 1)


@benchmark(
    "daemon.info_8",
    group="daemon",
    unit="req/s",
    ours="remote Job.info() round trips, 8 client threads with a connection each",
    baseline="the same GET from 8 threads with minimal raw-socket clients",
    higher_is_better=True,
    target=Target.ratio_at_least(0.3),
)
def info_8(cfg: Config) -> Iterator[Pair]:
    """Job info round trips per second from 8 clients."""
    yield from _info_benchmark(cfg, 8)


@benchmark(
    "daemon.event_latency",
    group="daemon",
    unit="ms",
    ours="progress update in virtjobd -> remote Job.watch() yields it (SSE), per event",
    baseline="progress update -> in-process Job.watch() on a LocalJobDriver yields it",
    stats=("median", "p99"),
    target=Target.below(20.0),
)
def event_latency(cfg: Config) -> Iterator[Pair]:
    """Milliseconds from a progress update to the client seeing it."""
    import virtjob
    from virtjob.jobs import JobContext, JobKind, LocalJobDriver

    seconds = cfg.pick(2.0, 0.4)
    with _daemon() as (sock, files):
        conn = virtjob.open(f"test+unix:///lat?socket={sock}&rate={int((512 << 20) / seconds)}")
        local = LocalJobDriver(2)

        def ours() -> list[float]:
            job = conn.lookup_domain("test").dump_core_job(os.path.join(files, "core"))
            samples: list[float] = []
            start_wall: float | None = None
            for info in job.watch(0.0):
                now = time.time()
                if start_wall is None:
                    start_wall = job.document().started
                    if start_wall is None:
                        continue
                if info.state is virtjob.JobState.RUNNING:
                    samples.append((now - (start_wall + info.elapsed)) * 1000)
            job.destroy()
            return samples

        stamps: dict[int, float] = {}

        def worker(ctx: JobContext) -> None:
            ctx.initialize(bounded=True)
            for step in range(1, 41):
                ctx.wait_for_cancel(seconds / 40)
                stamps[step] = time.monotonic()
                ctx.update(processed=step, total=40)

        def baseline() -> list[float]:
            stamps.clear()
            job = local.start_job(JobKind.DOMAIN_SAVE, "bench", worker)
            samples = []
            for info in job.watch(0.0):
                now = time.monotonic()
                if info.processed and info.state is virtjob.JobState.RUNNING:
                    samples.append((now - stamps[info.processed]) * 1000)
            job.destroy()
            return samples

        try:
            yield Pair(ours=ours, baseline=baseline)
        finally:
            local.close(timeout=10)
            conn.close()
