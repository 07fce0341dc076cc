"""`Domain`: a handle on one virtual machine, thin over its connection's driver."""

from __future__ import annotations

import functools
import uuid
from typing import TYPE_CHECKING

from virtjob import jobs
from virtjob.drivers.base import DomainInfo, DomainRef, DomainState
from virtjob.errors import InternalError, InvalidArgError, NoJobError
from virtjob.job import Job, bind, check_path, finish, void_job
from virtjob.jobs import JobKind

if TYPE_CHECKING:
    from virtjob.connection import Connection

__all__ = ["DOMAIN_JOB_KINDS", "Domain", "DomainInfo", "DomainState"]

DOMAIN_JOB_KINDS = frozenset(
    {
        JobKind.DOMAIN_CREATE,
        JobKind.DOMAIN_START,
        JobKind.DOMAIN_SAVE,
        JobKind.DOMAIN_RESTORE,
        JobKind.DOMAIN_DUMP_CORE,
    }
)
"""The job kinds that act on a domain (a job's `subject` is then the domain's name)."""


MAX_FORCE_AFTER = 3600.0
"""The longest `Domain.shutdown` waits for a guest before it forces it off, in seconds."""


def check_force_after(seconds: object) -> float:
    """Return `seconds` as a float if it is a number from 0 to `MAX_FORCE_AFTER`.

    Raises `InvalidArgError` naming the value and the range otherwise.
    """
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise InvalidArgError(
            f"force_after={seconds!r} is not a number of seconds;"
            f" give 0 to {MAX_FORCE_AFTER:g}, or None to only ask the guest"
        )
    value = float(seconds)
    if not 0 <= value <= MAX_FORCE_AFTER:  # also refuses NaN
        raise InvalidArgError(
            f"force_after={seconds!r} is out of range; give 0 to {MAX_FORCE_AFTER:g} seconds,"
            f" or None to only ask the guest"
        )
    return value


class Domain:
    """A virtual machine on a host. Handles compare equal when they name the same domain.

    Every method raises `NoDomainError` once the domain no longer exists, and
    `OperationInvalidError` once the connection is closed. A ``*_job`` method returns a `Job`
    at once; its synchronous twin waits for the same job, returns its result and leaves no job
    record behind (Ctrl-C while it waits cancels the job).
    """

    __slots__ = ("_conn", "_ref")

    def __init__(self, conn: Connection, ref: DomainRef) -> None:
        self._conn = conn
        self._ref = ref

    @property
    def name(self) -> str:
        """The domain's name, unique on its host."""
        return self._ref.name

    @property
    def uuid(self) -> uuid.UUID:
        """The domain's UUID."""
        return self._ref.uuid

    @property
    def id(self) -> int | None:
        """The id of the running instance, None while the domain is shut off."""
        return self.info().id

    @property
    def connection(self) -> Connection:
        """The connection this handle belongs to."""
        return self._conn

    def info(self) -> DomainInfo:
        """Return a snapshot: state, memory, vCPUs, persistence."""
        return self._conn.driver.domain_info(self._ref)

    def state(self) -> DomainState:
        """Return the domain's current run state."""
        return self.info().state

    def is_active(self) -> bool:
        """True while the domain runs (or is paused)."""
        return self.info().state.active

    def is_persistent(self) -> bool:
        """True when the domain has a definition that outlives its run."""
        return self.info().persistent

    def xml(self) -> str:
        """Return the domain's XML document."""
        return self._conn.driver.domain_xml(self._ref)

    def job(self) -> Job[Domain | None] | None:
        """Return the job queued or running on this domain, or None when it has none.

        A domain has at most one such job (a second is refused), always its newest one: a
        create, start or restore (its result is this domain) or a save or dump (None).
        Raises what `Connection.list_jobs` raises, e.g. `ConnectError` for a daemon gone.
        """
        conn = self._conn
        mine = [
            job
            for job in conn.driver.list_jobs()
            if job.kind in DOMAIN_JOB_KINDS and job.subject == self.name
        ]
        for job in reversed(mine):
            try:
                state = job.info().state
            except NoJobError:  # destroyed since it was listed: look at the one before
                continue
            if state.terminal:
                return None
            return domain_job(conn, job) if job.kind.yields_domain else void_job(job)
        return None

    # -- jobs and their synchronous twins -----------------------------------------------------

    def start_job(self) -> Job[Domain]:
        """Boot this defined, shut-off domain in the background; the job's result is the domain.

        Refused with `OperationInvalidError` when it is already running or busy with a job.
        """
        return domain_job(self._conn, self._conn.driver.start_domain_job(self._ref))

    def start(self) -> Domain:
        """Boot this domain and return it once running; raises what `start_job` and its job do."""
        return finish(self.start_job())

    def save_job(self, path: str) -> Job[None]:
        """Save the running domain's memory to `path`, then stop it; the job's result is None.

        A cancelled or failed save leaves no file at `path` and the domain as it was.
        `InvalidArgError` if `path` is not a file path.
        """
        return void_job(self._conn.driver.save_domain_job(self._ref, check_path(path)))

    def save(self, path: str) -> None:
        """Save this domain to `path` and stop it; raises what `save_job` and the job raise."""
        finish(self.save_job(path))

    def dump_core_job(self, path: str) -> Job[None]:
        """Write the domain's memory to `path`; the domain keeps its state. Result: None.

        `InvalidArgError` if `path` is not a file path.
        """
        return void_job(self._conn.driver.dump_core_job(self._ref, check_path(path)))

    def dump_core(self, path: str) -> None:
        """Dump this domain's memory to `path`; raises what `dump_core_job` and the job raise."""
        finish(self.dump_core_job(path))

    # -- immediate operations -------------------------------------------------------------------

    def undefine(self) -> None:
        """Remove the definition; a running domain goes on as a transient one."""
        self._conn.driver.undefine_domain(self._ref)

    def destroy(self) -> None:
        """Stop the domain at once (power off); `OperationInvalidError` if it is not running."""
        self._conn.driver.domain_destroy(self._ref)

    def shutdown(self, force_after: float | None = None) -> None:
        """Ask the guest to power off cleanly (ACPI power button) and return at once.

        The guest may ignore the request (no OS, or one that is busy or hung): the domain then
        goes on running. With `force_after` (seconds), the host powers the domain off as
        `destroy` does if it is still running that long after the request, and logs a warning
        (on the host: the daemon's log for a remote one); the call does not wait for it. To
        learn how it ended, watch `state()` (the CLI's ``shutdown --force-after`` does).

        Raises `OperationInvalidError` if the domain is not running (or busy with a job) and
        `InvalidArgError` if `force_after` is not a number of seconds from 0 to
        `MAX_FORCE_AFTER`.
        """
        if force_after is not None:
            force_after = check_force_after(force_after)
        self._conn.driver.domain_shutdown(self._ref, force_after)

    def suspend(self) -> None:
        """Pause the domain's vCPUs; `OperationInvalidError` unless it is running."""
        self._conn.driver.domain_suspend(self._ref)

    def resume(self) -> None:
        """Resume a paused domain; `OperationInvalidError` unless it is paused."""
        self._conn.driver.domain_resume(self._ref)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Domain):
            return NotImplemented
        return self._ref.uuid == other._ref.uuid and self._conn.host_uri == other._conn.host_uri

    def __hash__(self) -> int:
        return hash(self._ref.uuid)

    def __repr__(self) -> str:
        return f"<Domain {self.name!r} {self.uuid}>"


def domain_job(conn: Connection, job: jobs.Job[object]) -> Job[Domain]:
    """`job`, a driver's create, start or restore job, as a public handle whose result is the
    domain it made, on `conn`. Raises nothing itself (see `_made_domain`)."""
    return bind(job, functools.partial(_made_domain, conn))


def _made_domain(conn: Connection, made: object) -> Domain:
    """The `Domain` on `conn` of the ref a job made; `InternalError` if a driver's job
    yielded something else (a bug in that driver)."""
    if not isinstance(made, DomainRef):
        raise InternalError(
            f"a job that makes a domain yielded {made!r} instead of one; this is a bug in the"
            f" driver of {conn.uri}"
        )
    return Domain(conn, made)
