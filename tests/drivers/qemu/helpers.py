"""Helpers for the QEMU-driver tests: guests with known memory, reading ELF dumps, processes.

Guests are small q35 machines with no disk (SeaBIOS finds nothing to boot and waits). A guest
can carry a file of known bytes loaded into its RAM at `PATTERN_ADDR` by QEMU's generic
loader device (passed through ``qemu:commandline``); a core dump then shows whether those
bytes are still there, and big random patterns make save and dump streams large enough to
act on part-way.
"""

from __future__ import annotations

import contextlib
import os
import signal
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import virtjob
from virtjob import Domain, DomainState, Job, JobInfo, JobState
from virtjob.drivers.qemu import QemuDriver
from virtjob.drivers.qemu.host import QemuHost
from virtjob.savefile import PARTIAL_MARK

MIB = 1 << 20
PATTERN_ADDR = 0x4000000
"""Guest-physical address (64 MiB) where a guest's pattern file is loaded."""
FIRMWARE_MIB = 32
"""SeaBIOS keeps its tables in the top ~16 MiB of guest RAM: a pattern must end below this
many MiB from the top, or the firmware changes it while the guest runs."""
ACCEL_ENV = "VIRTJOB_TEST_ACCEL"
POLL = 0.05
"""Seconds between polls of a domain's state (see `wait_until`)."""
BIG_MEMORY_MIB = 256
BIG_PATTERN_MIB = 160
"""Random bytes in the `big` guest: a save or dump stream of ~180 MiB, long enough (hundreds of
milliseconds even on a fast host) to act on it part-way."""
DEADLINE = 1.0
"""Seconds a cancel or destroy has to bring the job to its end (DESIGN.md, job.cancel)."""

Starter = Callable[[Domain, str], Job]
STARTERS: dict[str, Starter] = {
    "save": lambda dom, path: dom.save_job(path),
    "dump": lambda dom, path: dom.dump_core_job(path),
}
"""The jobs that stream a running guest's memory out, by name."""

_PT_LOAD = 1
_ELF_HEADER = struct.Struct("<16sHHIQQQIHHHHHH")
_PROGRAM_HEADER = struct.Struct("<IIQQQQQQ")


@dataclass
class Guest:
    """A running test domain and the bytes its RAM holds at `PATTERN_ADDR` (maybe none)."""

    dom: Domain
    pattern: bytes


@dataclass
class QemuEnv:
    """One test's QEMU host: its state directory, a connection, and every guest it made."""

    conn: virtjob.Connection
    accel: str
    state_dir: Path
    files: Path
    uuids: set[uuid.UUID] = field(default_factory=set)
    _serial: int = 0

    @property
    def host(self) -> QemuHost:
        """The in-process host behind the connection (for pids and logs only)."""
        return cast(QemuDriver, self.conn.driver).host

    def path(self, name: str) -> str:
        """A path in the test's file directory."""
        return str(self.files / name)

    def write_pattern(self, size: int, name: str = "pattern.bin") -> tuple[Path, bytes]:
        """A file of `size` random bytes, and those bytes."""
        data = os.urandom(size)
        path = self.files / name
        path.write_bytes(data)
        return path, data

    def domain_xml(
        self,
        name: str,
        *,
        memory_mib: int = 128,
        pattern: Path | None = None,
        domain_uuid: uuid.UUID | None = None,
        domain_type: str = "kvm",
        devices: str = "",
    ) -> str:
        """A disk-less one-vCPU guest with a fresh UUID (remembered, to find its QEMU later).

        `domain_type` is ``<domain type>``; `devices` is extra XML inside ``<devices>``.
        """
        domain_uuid = domain_uuid or uuid.uuid4()
        self.uuids.add(domain_uuid)
        extra = ""
        if pattern is not None:
            end = PATTERN_ADDR + pattern.stat().st_size
            assert end <= (memory_mib - FIRMWARE_MIB) * MIB, "the firmware would overwrite it"
            extra = (
                "<qemu:commandline><qemu:arg value='-device'/>"
                f"<qemu:arg value='loader,file={pattern},addr={PATTERN_ADDR:#x},force-raw=on'/>"
                "</qemu:commandline>"
            )
        return (
            f"<domain type='{domain_type}'"
            " xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>"
            f"<name>{name}</name><uuid>{domain_uuid}</uuid>"
            f"<memory unit='MiB'>{memory_mib}</memory><vcpu>1</vcpu>"
            f"<os><type arch='x86_64'>hvm</type></os><devices>{devices}</devices>{extra}</domain>"
        )

    def create(self, name: str, *, memory_mib: int = 128, pattern_mib: int = 0) -> Guest:
        """Boot a transient guest, with `pattern_mib` MiB of random bytes in its RAM."""
        pattern: Path | None = None
        data = b""
        if pattern_mib:
            pattern, data = self.write_pattern(pattern_mib * MIB, f"{name}.pattern")
        xml = self.domain_xml(name, memory_mib=memory_mib, pattern=pattern)
        dom = self.conn.create_domain(xml)
        assert dom.state() is DomainState.RUNNING
        return Guest(dom, data)

    def pid(self, dom: Domain) -> int:
        """The process id of the domain's running QEMU."""
        with self.host.lock:
            process = self.host.domains[dom.uuid].process
        assert process is not None, f"{dom.name} has no QEMU process"
        return process.pid

    def qemu_pids(self) -> list[int]:
        """Pids of live processes whose command line names one of this test's domains."""
        return qemu_pids(self.uuids)

    def kvm_enabled(self, dom: Domain) -> bool:
        """Whether the domain's QEMU runs the guest under KVM (QMP ``query-kvm``)."""
        with self.host.lock:
            process = self.host.domains[dom.uuid].process
        assert process is not None, f"{dom.name} has no QEMU process"
        return bool(process.monitor.execute("query-kvm").get("enabled"))

    def migration_status(self, dom: Domain) -> str:
        """QEMU's own ``query-migrate`` status of the domain (no public API says it)."""
        with self.host.lock:
            process = self.host.domains[dom.uuid].process
        assert process is not None, f"{dom.name} has no QEMU process"
        return str(process.monitor.execute("query-migrate").get("status", "none"))

    def launches(self) -> int:
        """How many QEMU processes the host has launched so far (one log line each)."""
        count = 0
        for log in Path(self.host.logs).glob("*.log"):
            with log.open("rb") as file:
                count += sum(1 for line in file if line.startswith(b"--- "))
        return count

    def memory_at(self, dom: Domain, length: int, addr: int = PATTERN_ADDR) -> bytes:
        """`length` bytes of the guest's RAM at `addr`, read from a fresh core dump."""
        self._serial += 1
        core = self.files / f"{dom.name}-{self._serial}.core"
        dom.dump_core(str(core))
        try:
            return guest_memory(core, addr, length)
        finally:
            core.unlink()


def assert_same_memory(got: bytes, expected: bytes, where: str = "guest RAM") -> None:
    """`got` is `expected`; otherwise say where they part (pytest's own diff of hundreds of
    MiB would take minutes)."""
    if got == expected:
        return
    if len(got) != len(expected):
        raise AssertionError(f"{where}: {len(got)} bytes, expected {len(expected)}")
    pages = [i for i in range(0, len(got), 4096) if got[i : i + 4096] != expected[i : i + 4096]]
    raise AssertionError(
        f"{where}: {len(pages)} pages of 4 KiB differ, the first at guest address"
        f" {PATTERN_ADDR + pages[0]:#x}, the last at {PATTERN_ADDR + pages[-1]:#x}"
    )


def guest_memory(core: Path, addr: int, length: int) -> bytes:
    """Read guest-physical memory [`addr`, `addr` + `length`) from an ELF core dump.

    QEMU's ``dump-guest-memory`` without paging writes one PT_LOAD segment per RAM block,
    whose physical address says where it sits in the guest.
    """
    with core.open("rb") as file:
        header = _ELF_HEADER.unpack(file.read(_ELF_HEADER.size))
        ident, phoff, phentsize, phnum = header[0], header[5], header[9], header[10]
        assert ident[:4] == b"\x7fELF", f"{core} is not an ELF file"
        assert ident[4] == 2, f"{core} is not a 64-bit ELF core"
        segments: list[tuple[int, int, int]] = []
        for index in range(phnum):
            file.seek(phoff + index * phentsize)
            entry = _PROGRAM_HEADER.unpack(file.read(_PROGRAM_HEADER.size))
            if entry[0] == _PT_LOAD:
                _, _, offset, _, paddr, filesz, _, _ = entry
                segments.append((paddr, filesz, offset))
        out = bytearray()
        while len(out) < length:
            at = addr + len(out)
            for paddr, filesz, offset in segments:
                if paddr <= at < paddr + filesz:
                    file.seek(offset + at - paddr)
                    out += file.read(min(length - len(out), paddr + filesz - at))
                    break
            else:
                raise AssertionError(f"guest address {at:#x} is in no segment of {core}")
        return bytes(out)


def qemu_pids(uuids: set[uuid.UUID]) -> list[int]:
    """Pids of live processes whose command line contains one of `uuids`."""
    wanted = [str(u).encode() for u in uuids]
    found: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as file:
                cmdline = file.read()
        except OSError:  # it ended while we looked
            continue
        if any(token in cmdline for token in wanted):
            found.append(int(entry))
    return found


@contextlib.contextmanager
def stopped(pid: int) -> Iterator[None]:
    """Keep process `pid` stopped (SIGSTOP) inside the block: a QEMU that does not answer.

    It is let go (SIGCONT) on the way out, whatever happens, unless it is gone by then.
    """
    os.kill(pid, signal.SIGSTOP)
    try:
        wait_until(lambda: _proc_state(pid) in ("T", "t", None), f"process {pid} stopping", 5)
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


STREAMED = 4 * MIB
"""Bytes a restore must have streamed into QEMU before `streaming_restore` hands it over."""


def streaming_restore(env: QemuEnv, job: Job) -> int:
    """Watch restore `job` until it has streamed `STREAMED` bytes of the image into its new
    QEMU (the job's bytes are the image checked, then the image fed), and return that QEMU's
    pid; fail if the restore ends first."""
    pid: int | None = None
    for info in job.watch(interval=0):
        if not (info.processed and info.total) or info.processed <= info.total // 2:
            continue  # still checking the file: no QEMU yet
        if pid is None:
            [pid] = env.qemu_pids()
        if info.processed > info.total // 2 + STREAMED:
            return pid
    raise AssertionError(f"the restore ended before it streamed: {job.info()}")


def assert_midway(job: Job) -> None:
    """The job has not moved all its bytes yet (it is caught part-way)."""
    info = job.info()
    assert info.processed is not None
    assert info.total is not None
    assert info.processed < info.total, f"the job was over before we could act: {info}"


def _proc_state(pid: int) -> str | None:
    """The state letter of process `pid` in /proc (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0].decode()
    except (OSError, IndexError):
        return None


def partials(directory: Path) -> list[Path]:
    """Hidden partial files (``.NAME.virtjob-partial-*``) anywhere under `directory`."""
    return list(directory.rglob(f"*{PARTIAL_MARK}*"))


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll `predicate` until it holds; fail after `timeout` seconds.

    Only for what the public API announces no event for (a domain's state after its QEMU was
    killed, an ACPI shutdown running into its timeout): a bounded poll is all there is.
    """
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still not true after {timeout} s")
        pause.wait(POLL)


def state_or_gone(dom: Domain) -> DomainState | None:
    """The domain's state, or None once it no longer exists."""
    try:
        return dom.state()
    except virtjob.NoDomainError:
        return None


def progress_infos(infos: list[JobInfo]) -> list[JobInfo]:
    """The RUNNING infos that carry byte counts."""
    return [i for i in infos if i.state is JobState.RUNNING and i.processed is not None]


def assert_byte_progress(infos: list[JobInfo], at_least: int) -> None:
    """Several RUNNING infos with a fixed total >= `at_least` and growing `processed`."""
    running = progress_infos(infos)
    assert len(running) >= 2, f"expected several progress steps, got {infos}"
    totals = {i.total for i in running}
    assert len(totals) == 1, f"the total changed along the way: {running}"
    total = totals.pop()
    assert total is not None
    assert total >= at_least
    processed = [i.processed or 0 for i in running]
    assert processed == sorted(processed), f"processed went backwards: {processed}"
    assert processed[-1] > processed[0], f"processed never grew: {processed}"
    assert all(0 <= p <= total for p in processed)
    percents = [i.percent or 0.0 for i in running]
    assert percents == sorted(percents)


def first_progress(job: Job) -> JobInfo:
    """Watch `job` until it reports moved bytes; that info (it must be part-way, running)."""
    for info in job.watch(interval=0):
        if info.processed and info.total:
            assert info.state is JobState.RUNNING
            assert info.processed < info.total, f"the job was over before we could act: {info}"
            return info
    raise AssertionError(f"{job} ended without reporting progress: {job.info()}")


def assert_no_file(target: Path) -> None:
    """Nothing at `target`, and no hidden partial file beside it."""
    assert not target.exists()
    assert partials(target.parent) == []
