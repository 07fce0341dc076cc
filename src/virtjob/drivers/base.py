"""The driver protocol: what `Connection`, `Domain` and `Network` ask of a host.

A driver implements the operations for one kind of host (``test``, ``qemu``, ``remote``).
The public objects stay thin: they check arguments and dispatch here. Objects cross this
boundary as small frozen values (`DomainRef`, `NetworkRef`, `DomainInfo`); long operations
come back as plain `Job` handles (`Job[object]`) from the job engine, whose results are refs
as each method says. The public layer (`virtjob.job`) checks each result and types the
handle it gives users (`Job[Domain]`, `Job[Network]`, `Job[None]`).
"""

from __future__ import annotations

import enum
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from virtjob.jobs import Job, JobKind
from virtjob.refs import DomainRef, NetworkRef

__all__ = [
    "Capabilities",
    "Confinement",
    "DomainInfo",
    "DomainRef",
    "DomainState",
    "Driver",
    "NetworkInfo",
    "NetworkRef",
]


class DomainState(enum.StrEnum):
    """A domain's run state, after libvirt's ``virDomainState``."""

    NOSTATE = "nostate"
    RUNNING = "running"
    BLOCKED = "blocked"
    PAUSED = "paused"
    SHUTDOWN = "shutdown"
    SHUTOFF = "shutoff"
    CRASHED = "crashed"
    PMSUSPENDED = "pmsuspended"

    @property
    def active(self) -> bool:
        """True while the domain has a running (or paused) instance."""
        return self not in (DomainState.SHUTOFF, DomainState.CRASHED, DomainState.NOSTATE)


@dataclass(frozen=True, slots=True)
class DomainInfo:
    """A snapshot of a domain: what ``virtjob dominfo`` shows."""

    name: str
    uuid: uuid.UUID
    id: int | None
    state: DomainState
    memory: int
    current_memory: int
    vcpus: int
    persistent: bool
    os_type: str
    reason: str | None = None
    """Why the domain came to its state, in virsh's words ("booted", "restored",
    "unpaused", "user" for paused, "destroyed", "shutdown", "saved"); None when the driver
    does not know (the QEMU driver records none yet)."""


@dataclass(frozen=True, slots=True)
class NetworkInfo:
    """A snapshot of a network: what ``virtjob net-info`` shows."""

    name: str
    uuid: uuid.UUID
    active: bool
    persistent: bool
    bridge: str | None
    forward_mode: str | None


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a driver offers: its name, the job variants it runs, and whether it has networks."""

    driver: str
    job_kinds: frozenset[JobKind]
    networks: bool
    hypervisor: str

    def supports(self, kind: JobKind) -> bool:
        """True when the driver runs jobs of `kind`."""
        return kind in self.job_kinds


@dataclass(frozen=True, slots=True)
class Confinement:
    """What a host may touch on behalf of clients it does not trust (set by virtjobd).

    `dirs`: save, restore and dump files, and a domain's disk images, must lie beneath one of
    these directories (resolved, absolute), checked race-free when the job opens them.
    `excluded`: paths beneath `dirs` that are never valid (the daemon's own state directory).
    `emulators`: the emulator binaries a domain may name (empty: only the driver's default).
    `qemu_args`: whether ``<qemu:commandline>`` extra arguments are allowed.
    `excluded_ids`: the (device, inode) of each of `excluded`, taken when the confinement is
    made (None for one missing then), so that another path to an excluded directory (a bind
    mount, a rename) is refused too (`virtjob.files`).
    """

    dirs: tuple[str, ...]
    excluded: tuple[str, ...] = ()
    emulators: tuple[str, ...] = ()
    qemu_args: bool = False
    excluded_ids: tuple[tuple[int, int] | None, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "excluded_ids", tuple(_identity(p) for p in self.excluded))


def _identity(path: str) -> tuple[int, int] | None:
    """The (device, inode) of what `path` leads to, None if there is nothing."""
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return None
    return info.st_dev, info.st_ino


class Driver(Protocol):
    """Operations on one host. Every method raises a `VirtError` subclass on failure.

    Lookups take a name or a UUID string and raise `NoDomainError`/`NoNetworkError`;
    operations on a ref whose object has gone raise the same. Job methods return at once;
    a variant the driver lacks raises `NoSupportError`.
    """

    uri: str

    def close(self) -> None:
        """Release what this connection holds (the host and its jobs live on)."""
        ...

    def confine(self, confinement: Confinement) -> None:
        """Restrict, for the whole host, what its jobs and domains may touch (see `Confinement`).

        Called by virtjobd right after it opens a host; a driver that cannot confine raises
        `NoSupportError`. Without a call the host is unconfined (the caller's own rights).
        """
        ...

    def capabilities(self) -> Capabilities:
        """Describe the driver."""
        ...

    # -- domains ----------------------------------------------------------------------------

    def list_domains(self) -> Sequence[DomainRef]:
        """Every domain, active or defined."""
        ...

    def lookup_domain(self, key: str) -> DomainRef:
        """The domain named `key`, or whose UUID is `key`."""
        ...

    def define_domain(self, xml: str) -> DomainRef:
        """Make a domain persistent from XML (or update a defined one's XML)."""
        ...

    def undefine_domain(self, ref: DomainRef) -> None:
        """Forget a domain's definition; a running one becomes transient."""
        ...

    def domain_info(self, ref: DomainRef) -> DomainInfo:
        """A snapshot of the domain."""
        ...

    def domain_xml(self, ref: DomainRef) -> str:
        """The domain's XML document."""
        ...

    def domain_destroy(self, ref: DomainRef) -> None:
        """Stop the domain at once."""
        ...

    def domain_shutdown(self, ref: DomainRef, force_after: float | None = None) -> None:
        """Ask the guest to power off (ACPI) and return at once; the guest may ignore it.

        With `force_after` (seconds, checked by the caller), the host stops the domain as
        `domain_destroy` does if it still runs that long after the request (a warning logged
        on the ``virtjob`` logger; a request that comes later keeps the earlier deadline); the
        call never waits for it. `OperationInvalidError` unless the domain is running and free
        of jobs.
        """
        ...

    def domain_suspend(self, ref: DomainRef) -> None:
        """Pause the domain's vCPUs."""
        ...

    def domain_resume(self, ref: DomainRef) -> None:
        """Resume a paused domain."""
        ...

    def create_domain_job(self, xml: str) -> Job:
        """Start a new transient domain from XML; the job's result is its `DomainRef`."""
        ...

    def start_domain_job(self, ref: DomainRef) -> Job:
        """Boot a defined domain; the job's result is its `DomainRef`."""
        ...

    def save_domain_job(self, ref: DomainRef, path: str) -> Job:
        """Save the running domain's memory to `path` and stop it; the result is None."""
        ...

    def restore_domain_job(self, path: str) -> Job:
        """Bring a saved domain back to life; the job's result is its `DomainRef`."""
        ...

    def dump_core_job(self, ref: DomainRef, path: str) -> Job:
        """Write the domain's memory to `path`; the domain keeps its state; the result is None."""
        ...

    # -- networks ---------------------------------------------------------------------------

    def list_networks(self) -> Sequence[NetworkRef]:
        """Every network, active or defined."""
        ...

    def lookup_network(self, key: str) -> NetworkRef:
        """The network named `key`, or whose UUID is `key`."""
        ...

    def define_network(self, xml: str) -> NetworkRef:
        """Make a network persistent from XML."""
        ...

    def undefine_network(self, ref: NetworkRef) -> None:
        """Forget a network's definition; an active one becomes transient."""
        ...

    def network_info(self, ref: NetworkRef) -> NetworkInfo:
        """A snapshot of the network."""
        ...

    def network_xml(self, ref: NetworkRef) -> str:
        """The network's XML document."""
        ...

    def network_destroy(self, ref: NetworkRef) -> None:
        """Stop the network."""
        ...

    def create_network_job(self, xml: str) -> Job:
        """Start a new transient network from XML; the job's result is its `NetworkRef`."""
        ...

    def start_network_job(self, ref: NetworkRef) -> Job:
        """Start a defined network; the job's result is its `NetworkRef`."""
        ...

    # -- jobs -------------------------------------------------------------------------------

    def list_jobs(self) -> Sequence[Job]:
        """Every job on the host not yet destroyed, oldest first."""
        ...

    def lookup_job(self, job_id: str) -> Job:
        """The job with that id; `NoJobError` if none."""
        ...
