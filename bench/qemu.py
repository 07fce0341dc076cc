"""QEMU driver benchmarks: real guests against a raw sequential write of the same bytes.

- ``qemu.save`` / ``qemu.restore`` / ``qemu.dump``: a guest with 1 GiB of RAM holding 900 MiB
  of random bytes (256 MiB holding 200 MiB with ``--quick``); each side by side with
  ``dd bs=1M conv=fsync`` writing as many bytes as the operation wrote (save, dump) or read
  (restore) to the same directory.
- ``qemu.save_cancel``: time from `Job.cancel()` to the final state for a save caught mid-way,
  over 20 tries (5 quick), against the same on the test driver.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache

from bench import Config, Pair, Target, benchmark

_perf = time.perf_counter
CANCEL_AFTER = 0.02
"""Seconds into a save at which the cancel benchmark asks it to stop."""


def _need_qemu() -> str | None:
    return None if shutil.which("qemu-system-x86_64") else "qemu-system-x86_64 not found"


@cache
def _workdir() -> str:
    path = tempfile.mkdtemp(prefix="virtjob-bench-qemu-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


@cache
def _random_file(size: int, padding: int = 0) -> str:
    """A file of `size` random bytes followed by `padding` zero bytes, made once per run."""
    path = os.path.join(_workdir(), f"random-{size}-{padding}")
    with open(path, "wb") as out:
        left = size
        while left:
            chunk = min(left, 16 << 20)
            out.write(os.urandom(chunk))
            left -= chunk
        out.truncate(size + padding)
    return path


def _dd(size: int, target: str) -> float:
    """Seconds for dd to write `size` bytes of random data to `target` and fsync them."""
    source = _random_file(size + (64 << 20) >> 26 << 26)  # one source per 64 MiB step
    start = _perf()
    subprocess.run(
        [
            "dd",
            f"if={source}",
            f"of={target}",
            "bs=1M",
            f"count={size}",
            "iflag=count_bytes",
            "conv=fsync",
            "status=none",
        ],
        check=True,
    )
    elapsed = _perf() - start
    os.unlink(target)
    return elapsed


@dataclass(frozen=True)
class _Sizes:
    memory_mib: int
    random: int


def _sizes(quick: bool) -> _Sizes:
    return _Sizes(256, 200 << 20) if quick else _Sizes(1024, 900 << 20)


class _Guest:
    """A defined guest whose RAM holds random bytes, in a state directory of its own.

    The guest's RAM is a private mapping of a file holding the random bytes (QEMU's
    ``memory-backend-file`` with ``share=off``), so it boots in a blink already full of them.
    """

    def __init__(self, cfg: Config, name: str) -> None:
        import virtjob

        sizes = _sizes(cfg.quick)
        self.dir = tempfile.mkdtemp(prefix=f"{name}-", dir=_workdir())
        os.environ["VIRTJOB_STATE_DIR"] = os.path.join(self.dir, "state")
        self.conn = virtjob.open("qemu:///session")
        ram = _random_file(sizes.random, (sizes.memory_mib << 20) - sizes.random)
        backend = f"memory-backend-file,id=ram0,size={sizes.memory_mib}M,mem-path={ram},share=off"
        self.dom = self.conn.define_domain(
            f"""<domain type='kvm' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
              <name>{name}</name><memory unit='MiB'>{sizes.memory_mib}</memory>
              <vcpu>1</vcpu><os><type>hvm</type></os>
              <qemu:commandline>
                <qemu:arg value='-object'/><qemu:arg value='{backend}'/>
                <qemu:arg value='-machine'/><qemu:arg value='memory-backend=ram0'/>
              </qemu:commandline></domain>"""
        )
        self.dom.start()

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def close(self) -> None:
        if self.dom.is_active():
            self.dom.destroy()
        self.dom.undefine()
        self.conn.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def _timed(action: Callable[[], object]) -> float:
    start = _perf()
    action()
    return _perf() - start


@benchmark(
    "qemu.save",
    group="qemu",
    unit="s",
    ours="dom.save() of a running 1 GiB guest holding 900 MiB of random bytes (quick: 256/200"
    " MiB): migration stream through a pipe, SHA-256, write, fsync, rename",
    baseline="dd bs=1M conv=fsync of as many bytes as the save file holds, same directory",
    target=Target.ratio_at_most(3.0),
    requires=_need_qemu,
)
def qemu_save(cfg: Config) -> Iterator[Pair]:
    """Save time against a raw write of the same size; a restore brings the guest back."""
    guest = _Guest(cfg, "bench-save")
    save = guest.path("guest.save")

    def ours() -> float:
        elapsed = _timed(lambda: guest.dom.save(save))
        guest.conn.restore(save)
        return elapsed

    def baseline() -> float:
        size = os.path.getsize(save) if os.path.exists(save) else _sizes(cfg.quick).random
        return _dd(size, guest.path("dd.out"))

    try:
        yield Pair(ours=ours, baseline=baseline)
    finally:
        guest.close()


@benchmark(
    "qemu.restore",
    group="qemu",
    unit="s",
    ours="conn.restore() of that save: full checksum check, then the stream into a new QEMU",
    baseline="dd bs=1M conv=fsync of as many bytes as the save file holds, same directory",
    target=Target.ratio_at_most(3.0),
    requires=_need_qemu,
)
def qemu_restore(cfg: Config) -> Iterator[Pair]:
    """Restore time against a raw write of the same size; destroy resets for the next round."""
    guest = _Guest(cfg, "bench-restore")
    save = guest.path("guest.save")
    guest.dom.save(save)

    def ours() -> float:
        elapsed = _timed(lambda: guest.conn.restore(save))
        guest.dom.destroy()
        return elapsed

    def baseline() -> float:
        return _dd(os.path.getsize(save), guest.path("dd.out"))

    try:
        yield Pair(ours=ours, baseline=baseline)
    finally:
        guest.close()


@benchmark(
    "qemu.dump",
    group="qemu",
    unit="s",
    ours="dom.dump_core() of the running guest: dump-guest-memory (ELF, all of its RAM)"
    " through a pipe, write, fsync, rename",
    baseline="dd bs=1M conv=fsync of as many bytes as the dump holds, same directory",
    target=Target.ratio_at_most(3.0),
    requires=_need_qemu,
)
def qemu_dump(cfg: Config) -> Iterator[Pair]:
    """Dump time against a raw write of the same size."""
    guest = _Guest(cfg, "bench-dump")
    core = guest.path("guest.core")
    sizes: list[int] = []

    def ours() -> float:
        elapsed = _timed(lambda: guest.dom.dump_core(core))
        sizes.append(os.path.getsize(core))
        os.unlink(core)
        return elapsed

    def baseline() -> float:
        size = sizes[-1] if sizes else _sizes(cfg.quick).memory_mib << 20
        return _dd(size, guest.path("dd.out"))

    try:
        yield Pair(ours=ours, baseline=baseline)
    finally:
        guest.close()


def _cancel_latencies(start_job: Callable[[], object], tries: int) -> list[float]:
    """Start a job, let it run `CANCEL_AFTER` s, cancel it; seconds from cancel to final."""
    from virtjob.jobs import Job, JobState

    latencies = []
    for _ in range(tries):
        job = start_job()
        assert isinstance(job, Job)
        for info in job.watch(interval=0):
            if info.state is JobState.RUNNING and info.elapsed >= CANCEL_AFTER:
                break
            if info.state.terminal:
                raise RuntimeError(f"the job ended before it could be cancelled: {info}")
        start = _perf()
        job.cancel()
        final = job.wait(timeout=30)
        latencies.append(_perf() - start)
        job.destroy()
        if final.state is not JobState.CANCELLED:
            raise RuntimeError(f"the cancelled job ended {final.state}")
    return latencies


@benchmark(
    "qemu.save_cancel",
    group="qemu",
    unit="ms",
    ours="cancel of dom.save_job() 20 ms into the save of the big guest, to CANCELLED with the"
    " guest running again and the partial file removed; 20 tries (5 quick)",
    baseline="the same on the test driver's simulated save",
    stats=("median", "p99"),
    target={"median": Target.below(100.0), "p99": Target.below(100.0)},
    requires=_need_qemu,
)
def qemu_save_cancel(cfg: Config) -> Iterator[Pair]:
    """Cancel latency of a real save against the engine-only cost on the test driver."""
    import virtjob

    guest = _Guest(cfg, "bench-cancel")
    tries = cfg.pick(20, 5)
    test = virtjob.open("test:///bench-cancel")
    test_dom = test.lookup_domain("test")

    def ours() -> list[float]:
        seconds = _cancel_latencies(lambda: guest.dom.save_job(guest.path("c.save")), tries)
        return [s * 1000 for s in seconds]

    def baseline() -> list[float]:
        seconds = _cancel_latencies(lambda: test_dom.save_job(guest.path("t.save")), tries)
        return [s * 1000 for s in seconds]

    try:
        yield Pair(ours=ours, baseline=baseline)
    finally:
        test.close()
        guest.close()
