"""`Job`: the handle users hold, typed by what its job makes.

It is the engine's `virtjob.jobs.Job` plus the two questions only a virtualization API can
answer, `domain()` and `network()`. Every job handle that `Connection`, `Domain` and `Network`
return is one of these, whatever the driver (test, qemu, remote) and however it was had
(started, listed, looked up): its results are objects of the connection it came from, never a
driver's refs.

=========================================================  ===============================
call                                                       handle
=========================================================  ===============================
``conn.create_domain_job``, ``dom.start_job``,             ``Job[Domain]``
``conn.restore_job``
``conn.create_network_job``, ``net.start_job``             ``Job[Network]``
``dom.save_job``, ``dom.dump_core_job``                    ``Job[None]``
``dom.job()``                                              ``Job[Domain | None]``
``conn.list_jobs()``, ``conn.lookup_job()``                ``Job[Domain | Network | None]``
=========================================================  ===============================

A listed or looked-up job is typed by the union because only its `kind` (known at run time)
tells what it makes; its `result()`, `domain()` and `network()` then give exactly what the
same job's handle gave when it was started. The functions below are the public objects' own
plumbing, not part of the API.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from virtjob import jobs
from virtjob.errors import InvalidArgError
from virtjob.jobs.job import T_co

if TYPE_CHECKING:
    from virtjob.domain import Domain
    from virtjob.network import Network

__all__ = ["Job"]

T = TypeVar("T")


class Job(jobs.Job[T_co]):
    """A handle on one job of a host, whose `result()` is a `T_co` (see the module docs).

    Everything `virtjob.jobs.Job` does, plus `domain()` and `network()`, which give the same
    types whatever the driver.
    """

    __slots__ = ()

    def domain(self) -> Domain | None:
        """Return the domain a succeeded create, start or restore job made, else None (also
        while the job runs). Raises `NoJobError` once the job is destroyed."""
        from virtjob.domain import Domain  # here: virtjob.domain imports this module

        made = self._result_if(self.kind.yields_domain)
        return made if isinstance(made, Domain) else None

    def network(self) -> Network | None:
        """Return the network a succeeded network create or start job made, else None (also
        while the job runs). Raises `NoJobError` once the job is destroyed."""
        from virtjob.network import Network  # here: virtjob.network imports this module

        made = self._result_if(self.kind.yields_network)
        return made if isinstance(made, Network) else None


def bind(job: jobs.Job[object], adapt: Callable[[object], T]) -> Job[T]:
    """`job`, a driver's handle, as a public one whose results pass through `adapt` (which
    turns a driver's ref into a `Domain` or `Network`). Raises nothing."""
    return Job(job.driver, job.id, job.kind, job.subject, result_adapter=adapt)


def void_job(job: jobs.Job[object]) -> Job[None]:
    """`job`, a driver's save or dump job, as a public handle: it makes nothing."""
    return bind(job, _nothing)


def _nothing(value: object) -> None:
    """A save or dump makes nothing, whatever a driver's worker returned."""


def finish(job: jobs.Job[T]) -> T:
    """Wait for `job`, destroy its record, and return its result or raise its error.

    The synchronous twin of every ``*_job`` call: a Ctrl-C while it waits cancels the job
    and waits for it to stop (``with job:``).
    """
    with job:
        return job.result()


def check_path(path: str | os.PathLike[str]) -> str:
    """Return `path`, the file a job reads or writes, as an absolute path string.

    Raises `InvalidArgError` when it is not a path (a number, bytes, an empty string, one
    holding a NUL).
    """
    try:
        text = os.fspath(path)
    except TypeError:
        raise InvalidArgError(f"expected a file path, got {path!r}") from None
    if not isinstance(text, str) or not text or "\0" in text:
        raise InvalidArgError(f"expected a non-empty file path, got {path!r}")
    return os.path.abspath(text)
