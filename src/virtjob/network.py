"""`Network`: a handle on one virtual network, thin over its connection's driver."""

from __future__ import annotations

import functools
import uuid
from typing import TYPE_CHECKING

from virtjob import jobs
from virtjob.drivers.base import NetworkInfo, NetworkRef
from virtjob.errors import InternalError
from virtjob.job import Job, bind, finish

if TYPE_CHECKING:
    from virtjob.connection import Connection

__all__ = ["Network", "NetworkInfo"]


class Network:
    """A virtual network on a host. Handles compare equal when they name the same network.

    Every method raises `NoNetworkError` once the network no longer exists, and
    `OperationInvalidError` once the connection is closed.
    """

    __slots__ = ("_conn", "_ref")

    def __init__(self, conn: Connection, ref: NetworkRef) -> None:
        self._conn = conn
        self._ref = ref

    @property
    def name(self) -> str:
        """The network's name, unique on its host."""
        return self._ref.name

    @property
    def uuid(self) -> uuid.UUID:
        """The network's UUID."""
        return self._ref.uuid

    @property
    def connection(self) -> Connection:
        """The connection this handle belongs to."""
        return self._conn

    def info(self) -> NetworkInfo:
        """Return a snapshot: active, persistent, bridge, forward mode."""
        return self._conn.driver.network_info(self._ref)

    def is_active(self) -> bool:
        """True while the network is up."""
        return self.info().active

    def is_persistent(self) -> bool:
        """True when the network has a definition that outlives its run."""
        return self.info().persistent

    def xml(self) -> str:
        """Return the network's XML document."""
        return self._conn.driver.network_xml(self._ref)

    def start_job(self) -> Job[Network]:
        """Start this defined, inactive network in the background; the result is the network.

        Refused with `OperationInvalidError` when it is already active or busy with a job.
        """
        return network_job(self._conn, self._conn.driver.start_network_job(self._ref))

    def start(self) -> Network:
        """Start this network and return it once active; raises what `start_job` and its job do."""
        return finish(self.start_job())

    def destroy(self) -> None:
        """Stop the network; `OperationInvalidError` if it is not active."""
        self._conn.driver.network_destroy(self._ref)

    def undefine(self) -> None:
        """Remove the definition; an active network goes on as a transient one."""
        self._conn.driver.undefine_network(self._ref)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Network):
            return NotImplemented
        return self._ref.uuid == other._ref.uuid and self._conn.host_uri == other._conn.host_uri

    def __hash__(self) -> int:
        return hash(self._ref.uuid)

    def __repr__(self) -> str:
        return f"<Network {self.name!r} {self.uuid}>"


def network_job(conn: Connection, job: jobs.Job[object]) -> Job[Network]:
    """`job`, a driver's network create or start job, as a public handle whose result is the
    network it made, on `conn`. Raises nothing itself (see `_made_network`)."""
    return bind(job, functools.partial(_made_network, conn))


def _made_network(conn: Connection, made: object) -> Network:
    """The `Network` on `conn` of the ref a job made; `InternalError` if a driver's job
    yielded something else (a bug in that driver)."""
    if not isinstance(made, NetworkRef):
        raise InternalError(
            f"a job that makes a network yielded {made!r} instead of one; this is a bug in the"
            f" driver of {conn.uri}"
        )
    return Network(conn, made)
