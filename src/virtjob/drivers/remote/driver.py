"""`RemoteDriver`: the `Driver` protocol over virtjobd's host routes.

``DRIVER+unix:///PATH?socket=S``, ``DRIVER+tcp://HOST:PORT/PATH`` and
``DRIVER+tls://HOST:PORT/PATH?ca_file=F`` all reach the daemon's host ``DRIVER:///PATH``
under ``/v1/hosts/DRIVER/PATH``. URI parameters other than ``socket``, ``token_file`` and
``ca_file`` are the hosted driver's (``?rate=`` for the test driver) and travel with every
request. Domains and networks are addressed by UUID, so a ref always means the object it was
made for.
"""

from __future__ import annotations

from typing import Any

from virtjob.drivers.base import (
    Capabilities,
    Confinement,
    DomainInfo,
    DomainRef,
    NetworkInfo,
    NetworkRef,
)
from virtjob.errors import InvalidArgError, NoJobError, NoSupportError
from virtjob.jobs import Job
from virtjob.uri import ConnectURI

from . import wire
from .jobs import RemoteJobDriver
from .transport import TRANSPORT_PARAMS, Transport, quote_segment


class RemoteDriver:
    """A connection to one host served by virtjobd.

    Opening it asks the daemon for the host's capabilities, so an unreachable daemon
    (`ConnectError`), a refused token (`AuthError`) or an unknown driver (`NoSupportError`)
    shows at once. Every method raises what the daemon answered.
    """

    def __init__(self, uri: ConnectURI) -> None:
        instance = uri.path.strip("/")
        if not instance or "/" in instance:
            raise InvalidArgError(
                f"{uri} must name one host instance, e.g. {uri.driver}+{uri.transport}:///default"
            )
        self.uri = str(uri)
        self.host = uri.local_uri
        self._params = {k: v for k, v in uri.params.items() if k not in TRANSPORT_PARAMS}
        self._base = (
            f"{wire.API_PREFIX}/hosts/{quote_segment(uri.driver)}/{quote_segment(instance)}"
        )
        self._transport = Transport(uri)
        self.jobs = RemoteJobDriver(self._transport)
        try:
            self._transport.probe()
            self._capabilities = wire.capabilities_from_dict(self._call("GET", "")["capabilities"])
        except BaseException:
            self._transport.close()
            raise

    def _call(self, method: str, path: str, body: wire.Json | None = None) -> Any:
        return self._transport.call(
            method, self._base + path, body=body, params=self._params or None
        )

    def _job(self, path: str, body: wire.Json | None = None) -> Job:
        return self.jobs.handle(wire.job_from_dict(self._call("POST", path, body)))

    @staticmethod
    def _key(ref: DomainRef | NetworkRef) -> str:
        return quote_segment(str(ref.uuid))

    def close(self) -> None:
        """Close the connection to the daemon (the host and its jobs live on there)."""
        self.jobs.close()
        self._transport.close()

    def confine(self, confinement: Confinement) -> None:  # noqa: ARG002 - refused whatever it is
        """A remote host is confined by its own daemon: always `NoSupportError`."""
        raise NoSupportError(
            f"{self.uri} is served by virtjobd, which confines its own hosts; confine a local"
            f" driver instead"
        )

    def capabilities(self) -> Capabilities:
        """What the hosted driver offers (asked once, when connecting)."""
        return self._capabilities

    # -- domains ------------------------------------------------------------------------------

    def list_domains(self) -> list[DomainRef]:
        """Every domain of the host."""
        return [wire.domain_ref_from_dict(item) for item in self._call("GET", "/domains")]

    def lookup_domain(self, key: str) -> DomainRef:
        """The domain named `key` or with UUID `key`."""
        info = wire.domain_info_from_dict(self._call("GET", f"/domains/{quote_segment(key)}"))
        return DomainRef(info.name, info.uuid)

    def define_domain(self, xml: str) -> DomainRef:
        """Define a domain from XML."""
        return wire.domain_ref_from_dict(self._call("POST", "/domains", {"xml": xml}))

    def undefine_domain(self, ref: DomainRef) -> None:
        """Undefine the domain."""
        self._call("DELETE", f"/domains/{self._key(ref)}")

    def domain_info(self, ref: DomainRef) -> DomainInfo:
        """A snapshot of the domain."""
        return wire.domain_info_from_dict(self._call("GET", f"/domains/{self._key(ref)}"))

    def domain_xml(self, ref: DomainRef) -> str:
        """The domain's XML."""
        return str(self._call("GET", f"/domains/{self._key(ref)}/xml")["xml"])

    def domain_destroy(self, ref: DomainRef) -> None:
        """Stop the domain at once."""
        self._call("POST", f"/domains/{self._key(ref)}/destroy")

    def domain_shutdown(self, ref: DomainRef, force_after: float | None = None) -> None:
        """Ask the guest to shut down; with `force_after`, the daemon forces it off if it still
        runs that many seconds later. The daemon answers at once."""
        body = None if force_after is None else {"force_after": force_after}
        self._call("POST", f"/domains/{self._key(ref)}/shutdown", body=body)

    def domain_suspend(self, ref: DomainRef) -> None:
        """Pause the domain."""
        self._call("POST", f"/domains/{self._key(ref)}/suspend")

    def domain_resume(self, ref: DomainRef) -> None:
        """Resume the domain."""
        self._call("POST", f"/domains/{self._key(ref)}/resume")

    def create_domain_job(self, xml: str) -> Job:
        """Job: create and boot a transient domain."""
        return self._job("/domains/create", {"xml": xml})

    def start_domain_job(self, ref: DomainRef) -> Job:
        """Job: boot a defined domain."""
        return self._job(f"/domains/{self._key(ref)}/start")

    def save_domain_job(self, ref: DomainRef, path: str) -> Job:
        """Job: save the domain to `path` (a path on the daemon's machine)."""
        return self._job(f"/domains/{self._key(ref)}/save", {"path": path})

    def restore_domain_job(self, path: str) -> Job:
        """Job: restore the domain saved at `path` (on the daemon's machine)."""
        return self._job("/domains/restore", {"path": path})

    def dump_core_job(self, ref: DomainRef, path: str) -> Job:
        """Job: dump the domain's memory to `path` (on the daemon's machine)."""
        return self._job(f"/domains/{self._key(ref)}/dump-core", {"path": path})

    # -- networks -----------------------------------------------------------------------------

    def list_networks(self) -> list[NetworkRef]:
        """Every network of the host."""
        return [wire.network_ref_from_dict(item) for item in self._call("GET", "/networks")]

    def lookup_network(self, key: str) -> NetworkRef:
        """The network named `key` or with UUID `key`."""
        info = wire.network_info_from_dict(self._call("GET", f"/networks/{quote_segment(key)}"))
        return NetworkRef(info.name, info.uuid)

    def define_network(self, xml: str) -> NetworkRef:
        """Define a network from XML."""
        return wire.network_ref_from_dict(self._call("POST", "/networks", {"xml": xml}))

    def undefine_network(self, ref: NetworkRef) -> None:
        """Undefine the network."""
        self._call("DELETE", f"/networks/{self._key(ref)}")

    def network_info(self, ref: NetworkRef) -> NetworkInfo:
        """A snapshot of the network."""
        return wire.network_info_from_dict(self._call("GET", f"/networks/{self._key(ref)}"))

    def network_xml(self, ref: NetworkRef) -> str:
        """The network's XML."""
        return str(self._call("GET", f"/networks/{self._key(ref)}/xml")["xml"])

    def network_destroy(self, ref: NetworkRef) -> None:
        """Stop the network."""
        self._call("POST", f"/networks/{self._key(ref)}/destroy")

    def create_network_job(self, xml: str) -> Job:
        """Job: create and start a transient network."""
        return self._job("/networks/create", {"xml": xml})

    def start_network_job(self, ref: NetworkRef) -> Job:
        """Job: start a defined network."""
        return self._job(f"/networks/{self._key(ref)}/start")

    # -- jobs ---------------------------------------------------------------------------------

    def list_jobs(self) -> list[Job]:
        """Every job of the host the daemon knows, oldest first (history included)."""
        return [self.jobs.handle(wire.job_from_dict(item)) for item in self._call("GET", "/jobs")]

    def lookup_job(self, job_id: str) -> Job:
        """The job with that id on this host; `NoJobError` if none."""
        view = self.jobs.fetch(job_id)
        if view.host != self.host:
            raise NoJobError(
                f"no job with id {job_id!r} on {self.host} (it belongs to {view.host});"
                f" connect to that host to see it"
            )
        return self.jobs.handle(view)

    def __repr__(self) -> str:
        return f"<RemoteDriver {self.uri}>"
