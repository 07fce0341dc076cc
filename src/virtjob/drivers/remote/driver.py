"""`RemoteDriver`: the `Driver` protocol over virtjobd's host routes.

``DRIVER+unix:///PATH?socket=S``, ``DRIVER+tcp://HOST:PORT/PATH`` and
``DRIVER+tls://HOST:PORT/PATH?ca_file=F`` all reach the daemon's host ``DRIVER:///PATH``
under ``/v1/hosts/DRIVER/PATH``. URI parameters other than ``socket``, ``token_file`` and
``ca_file`` are the hosted driver's (``?rate=`` for the test driver) and travel with every
request. Domains and networks are addressed by UUID, so a ref always means the object it was
made for. Each method sends the route `virtjob.api.routes.HOST_ROUTES` lists under its own name
(``self._send("domain_info", ...)``), and decodes the answer with `virtjob.api`.
"""

from __future__ import annotations

import logging
from typing import Any

from virtjob.api import objects
from virtjob.api.document import decode_job
from virtjob.api.routes import HOST_ROUTES, host_base
from virtjob.drivers.base import (
    Capabilities,
    Confinement,
    DomainInfo,
    DomainRef,
    NetworkInfo,
    NetworkRef,
)
from virtjob.errors import (
    InternalError,
    InvalidArgError,
    NoDomainError,
    NoJobError,
    NoNetworkError,
    NoSupportError,
)
from virtjob.jobs import Job
from virtjob.uri import ConnectURI

from .jobs import RemoteJobDriver
from .keys import key_problem, shown
from .transport import TRANSPORT_PARAMS, Json, Transport

log = logging.getLogger("virtjob.remote")


class RemoteDriver:
    """A connection to one host served by virtjobd.

    Opening it asks the daemon for the host's capabilities, so an unreachable daemon
    (`ConnectError`), a refused token (`AuthError`) or an unknown driver (`NoSupportError`)
    shows at once. Every method sends the request `virtjob.api.routes.HOST_ROUTES` names for
    it, and raises what the daemon answered.
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
        self._base = host_base(uri.driver, instance)
        self._transport = Transport(uri)
        self.jobs = RemoteJobDriver(self._transport)
        try:
            answer = self._send("capabilities")
            if not isinstance(answer, dict) or "capabilities" not in answer:
                raise objects.malformed("host", answer, KeyError("capabilities"))
            self._capabilities = objects.decode_capabilities(answer["capabilities"])
        except BaseException:
            self._transport.close()
            raise

    def _send(self, operation: str, key: str | None = None, body: Json | None = None) -> Any:
        """Send the route of `operation` (a `Driver` method name) for object `key`."""
        route = HOST_ROUTES[operation]
        path = route.path if key is None else route.path_for(key=key)
        return self._transport.call(
            route.method, self._base + path, body=body, params=self._params or None
        )

    def _job(self, operation: str, key: str | None = None, body: Json | None = None) -> Job:
        return self.jobs.handle(decode_job(self._send(operation, key, body)))

    @staticmethod
    def _key(ref: DomainRef | NetworkRef) -> str:
        return str(ref.uuid)

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
        return [objects.decode_domain_ref(item) for item in _list(self._send("list_domains"))]

    def lookup_domain(self, key: str) -> DomainRef:
        """The domain named `key` or with UUID `key`; `NoDomainError` if none (at once, without
        asking the daemon, for a key no domain can have: see `keys`)."""
        problem = key_problem(key, "domain name or UUID")
        if problem is not None:
            raise NoDomainError(f"no domain {shown(key)} on {self.host}: {problem}")
        info = objects.decode_domain_info(self._send("lookup_domain", key))
        return DomainRef(info.name, info.uuid)

    def define_domain(self, xml: str) -> DomainRef:
        """Define a domain from XML."""
        return objects.decode_domain_ref(self._send("define_domain", body={"xml": xml}))

    def undefine_domain(self, ref: DomainRef) -> None:
        """Undefine the domain."""
        self._send("undefine_domain", self._key(ref))

    def domain_info(self, ref: DomainRef) -> DomainInfo:
        """A snapshot of the domain."""
        return objects.decode_domain_info(self._send("domain_info", self._key(ref)))

    def domain_xml(self, ref: DomainRef) -> str:
        """The domain's XML."""
        return _xml(self._send("domain_xml", self._key(ref)))

    def domain_destroy(self, ref: DomainRef) -> None:
        """Stop the domain at once."""
        self._send("domain_destroy", self._key(ref))

    def domain_shutdown(self, ref: DomainRef, force_after: float | None = None) -> None:
        """Ask the guest to shut down; with `force_after`, the daemon forces it off if it still
        runs that many seconds later. The daemon answers at once."""
        body = None if force_after is None else {"force_after": force_after}
        self._send("domain_shutdown", self._key(ref), body)

    def domain_suspend(self, ref: DomainRef) -> None:
        """Pause the domain."""
        self._send("domain_suspend", self._key(ref))

    def domain_resume(self, ref: DomainRef) -> None:
        """Resume the domain."""
        self._send("domain_resume", self._key(ref))

    def create_domain_job(self, xml: str) -> Job:
        """Job: create and boot a transient domain."""
        return self._job("create_domain_job", body={"xml": xml})

    def start_domain_job(self, ref: DomainRef) -> Job:
        """Job: boot a defined domain."""
        return self._job("start_domain_job", self._key(ref))

    def save_domain_job(self, ref: DomainRef, path: str) -> Job:
        """Job: save the domain to `path` (a path on the daemon's machine)."""
        return self._job("save_domain_job", self._key(ref), {"path": path})

    def restore_domain_job(self, path: str) -> Job:
        """Job: restore the domain saved at `path` (on the daemon's machine)."""
        return self._job("restore_domain_job", body={"path": path})

    def dump_core_job(self, ref: DomainRef, path: str) -> Job:
        """Job: dump the domain's memory to `path` (on the daemon's machine)."""
        return self._job("dump_core_job", self._key(ref), {"path": path})

    # -- networks -----------------------------------------------------------------------------

    def list_networks(self) -> list[NetworkRef]:
        """Every network of the host."""
        return [objects.decode_network_ref(item) for item in _list(self._send("list_networks"))]

    def lookup_network(self, key: str) -> NetworkRef:
        """The network named `key` or with UUID `key`; `NoNetworkError` if none (at once,
        without asking the daemon, for a key no network can have: see `keys`)."""
        problem = key_problem(key, "network name or UUID")
        if problem is not None:
            raise NoNetworkError(f"no network {shown(key)} on {self.host}: {problem}")
        info = objects.decode_network_info(self._send("lookup_network", key))
        return NetworkRef(info.name, info.uuid)

    def define_network(self, xml: str) -> NetworkRef:
        """Define a network from XML."""
        return objects.decode_network_ref(self._send("define_network", body={"xml": xml}))

    def undefine_network(self, ref: NetworkRef) -> None:
        """Undefine the network."""
        self._send("undefine_network", self._key(ref))

    def network_info(self, ref: NetworkRef) -> NetworkInfo:
        """A snapshot of the network."""
        return objects.decode_network_info(self._send("network_info", self._key(ref)))

    def network_xml(self, ref: NetworkRef) -> str:
        """The network's XML."""
        return _xml(self._send("network_xml", self._key(ref)))

    def network_destroy(self, ref: NetworkRef) -> None:
        """Stop the network."""
        self._send("network_destroy", self._key(ref))

    def create_network_job(self, xml: str) -> Job:
        """Job: create and start a transient network."""
        return self._job("create_network_job", body={"xml": xml})

    def start_network_job(self, ref: NetworkRef) -> Job:
        """Job: start a defined network."""
        return self._job("start_network_job", self._key(ref))

    # -- jobs ---------------------------------------------------------------------------------

    def list_jobs(self) -> list[Job]:
        """Every job of the host the daemon knows, oldest first (history included).

        A job this client cannot read (a newer virtjobd's: a kind or state this version does
        not know) is left out and logged, not made the whole list's failure; looking it up
        says what it is.
        """
        jobs: list[Job] = []
        for item in _list(self._send("list_jobs")):
            try:
                jobs.append(self.jobs.handle(decode_job(item)))
            except InternalError as exc:
                log.warning("job list of %s: a job left out: %s", self.uri, exc)
        return jobs

    def lookup_job(self, job_id: str) -> Job:
        """The job with that id on this host (``JOB_ROUTES["job_document"]``, then the
        document's host is checked); `NoJobError` if none."""
        document = self.jobs.job_document(job_id)
        if document.host != self.host:
            raise NoJobError(
                f"no job with id {job_id!r} on {self.host} (it belongs to {document.host});"
                f" connect to that host to see it"
            )
        return self.jobs.handle(document)

    def __repr__(self) -> str:
        return f"<RemoteDriver {self.uri}>"


def _list(answer: Any) -> list[Any]:
    """`answer`, which must be a JSON list; `InternalError` if not."""
    if not isinstance(answer, list):
        raise objects.malformed("list", answer, TypeError("not a list"))
    return answer


def _xml(answer: Any) -> str:
    """The ``xml`` of an ``{"xml": ...}`` answer; `InternalError` if it has none."""
    if not isinstance(answer, dict) or not isinstance(answer.get("xml"), str):
        raise objects.malformed("XML answer", answer, KeyError("xml"))
    return str(answer["xml"])
