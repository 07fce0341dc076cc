"""`Network`: a handle on one virtual network, thin over its connection's driver."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from virtjob.drivers.base import NetworkInfo, NetworkRef
from virtjob.jobs import Job

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

    def start_job(self) -> Job:
        """Start this defined, inactive network in the background; the result is the network.

        Refused with `OperationInvalidError` when it is already active or busy with a job.
        """
        return self._conn.bind(self._conn.driver.start_network_job(self._ref))

    def start(self) -> Network:
        """Start this network and return it once active; raises what `start_job` and its job do."""
        return self._conn.finish(self.start_job())  # type: ignore[no-any-return]

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
