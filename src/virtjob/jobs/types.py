"""The values a job reports: its state, its kind, and snapshots of its progress."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from virtjob.errors import VirtError


class JobState(enum.StrEnum):
    """Where a job is in its life: ``QUEUED -> RUNNING -> SUCCEEDED | FAILED | CANCELLED``.

    A queued job may also go straight to ``CANCELLED``. The last three states are final.
    """

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        """True for the three final states."""
        return self in _TERMINAL


_TERMINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})


class JobKind(enum.StrEnum):
    """Which operation a job performs (the proposal's seven job variants)."""

    DOMAIN_CREATE = "domain-create"
    DOMAIN_START = "domain-start"
    DOMAIN_SAVE = "domain-save"
    DOMAIN_RESTORE = "domain-restore"
    DOMAIN_DUMP_CORE = "domain-dump-core"
    NETWORK_CREATE = "network-create"
    NETWORK_START = "network-start"

    @property
    def yields_domain(self) -> bool:
        """True when a successful job of this kind hands back a domain."""
        return self in _YIELDS_DOMAIN

    @property
    def yields_network(self) -> bool:
        """True when a successful job of this kind hands back a network."""
        return self in _YIELDS_NETWORK


_YIELDS_DOMAIN = frozenset({JobKind.DOMAIN_CREATE, JobKind.DOMAIN_START, JobKind.DOMAIN_RESTORE})
_YIELDS_NETWORK = frozenset({JobKind.NETWORK_CREATE, JobKind.NETWORK_START})


@dataclass(frozen=True, slots=True)
class JobInfo:
    """An immutable snapshot of a job's progress.

    - `state`: the `JobState` when the snapshot was taken.
    - `bounded`: False until the worker says how much work there is (``initialize``).
    - `elapsed`: seconds spent running; 0 while queued, frozen once the job ends.
    - `remaining`: estimated seconds left, None when unknown, 0 once the job ends.
    - `percent`: 0-100, never decreases; None while unbounded; 100 on success.
    - `processed` / `total`: bytes moved and bytes to move, when the worker reports them.
    - `cancel_requested`: someone asked the job to stop.
    """

    state: JobState
    bounded: bool
    elapsed: float
    remaining: float | None
    percent: float | None
    processed: int | None
    total: int | None
    cancel_requested: bool


@dataclass(frozen=True, slots=True)
class JobOutcome:
    """How a finished job ended: its final state and its result or error."""

    state: JobState
    result: object = None
    error: VirtError | None = None
