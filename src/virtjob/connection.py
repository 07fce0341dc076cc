"""`Connection` and `open()`: the entry point to a host."""

from __future__ import annotations

import uuid
from types import TracebackType

from virtjob import jobs
from virtjob.domain import Domain, domain_job
from virtjob.drivers import connect_driver
from virtjob.drivers.base import Capabilities, Driver
from virtjob.errors import InvalidArgError, OperationInvalidError
from virtjob.job import Job, check_path, finish, void_job
from virtjob.network import Network, network_job
from virtjob.uri import ConnectURI, default_uri, parse_uri

__all__ = ["Connection", "open"]


def open(uri: str | None = None) -> Connection:
    """Connect to the host named by `uri` (default: ``$VIRTJOB_DEFAULT_URI`` or test:///default).

    Raises `InvalidArgError` for a malformed URI, `NoSupportError` for an unknown driver, and
    `ConnectError`/`AuthError` when a daemon cannot be reached or refuses the credentials.
    """
    if uri is not None and not isinstance(uri, str):
        raise InvalidArgError(
            f"a connection URI is a string such as 'test:///default', not {uri!r}"
        )
    parsed = parse_uri(default_uri() if uri is None else uri)
    return Connection(connect_driver(parsed), parsed)


class Connection:
    """A connection to one host: look up and create domains, networks and jobs.

    Jobs belong to the host: every connection to it sees the same ones. Use it as a context
    manager, or call `close()`; afterwards every call raises `OperationInvalidError`.
    """

    def __init__(self, driver: Driver, uri: ConnectURI) -> None:
        self._driver: Driver | None = driver
        self._uri = uri

    @property
    def uri(self) -> str:
        """The URI this connection was opened with (secrets masked)."""
        return str(self._uri)

    @property
    def host_uri(self) -> str:
        """The URI of the host itself: two connections to one host share it.

        For a driver in this process the query parameters only tune the connection (the test
        driver's ``rate``), so they are left out; a remote URI is kept whole (its parameters can
        name another daemon).
        """
        return self._uri.local_uri if not self._uri.is_remote else str(self._uri)

    @property
    def driver(self) -> Driver:
        """The driver behind this connection; `OperationInvalidError` once closed."""
        if self._driver is None:
            raise OperationInvalidError(
                f"the connection to {self.uri} is closed; open a new one with virtjob.open()"
            )
        return self._driver

    @property
    def closed(self) -> bool:
        """True once `close()` has been called."""
        return self._driver is None

    def close(self) -> None:
        """Close the connection. Jobs it started go on: they belong to the host."""
        driver, self._driver = self._driver, None
        if driver is not None:
            driver.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def capabilities(self) -> Capabilities:
        """Say which job variants the driver runs and whether it manages networks."""
        return self.driver.capabilities()

    # -- domains ----------------------------------------------------------------------------

    def list_domains(self) -> list[Domain]:
        """Return every domain on the host, running or defined."""
        return [Domain(self, ref) for ref in self.driver.list_domains()]

    def lookup_domain(self, name_or_uuid: str | uuid.UUID) -> Domain:
        """Return the domain with that name or UUID; `NoDomainError` if there is none."""
        return Domain(self, self.driver.lookup_domain(_key(name_or_uuid, "domain")))

    def define_domain(self, xml: str) -> Domain:
        """Define a persistent (shut-off) domain from XML; `XMLError` if the XML is bad,
        `OperationInvalidError` if the name or UUID is taken by another domain."""
        return Domain(self, self.driver.define_domain(_xml(xml)))

    def create_domain_job(self, xml: str) -> Job[Domain]:
        """Create and boot a transient domain from XML in the background; the result is it."""
        return domain_job(self, self.driver.create_domain_job(_xml(xml)))

    def create_domain(self, xml: str) -> Domain:
        """Create and boot a transient domain, returning it once running."""
        return finish(self.create_domain_job(xml))

    def restore_job(self, path: str) -> Job[Domain]:
        """Restore a domain saved at `path` in the background; the result is the running domain.

        A bad file (missing, truncated, corrupted, foreign) is reported before anything on the
        host changes; a cancelled restore leaves no domain behind. `InvalidArgError` if `path`
        is not a file path.
        """
        return domain_job(self, self.driver.restore_domain_job(check_path(path)))

    def restore(self, path: str) -> Domain:
        """Restore the domain saved at `path` and return it once running."""
        return finish(self.restore_job(path))

    # -- networks ---------------------------------------------------------------------------

    def list_networks(self) -> list[Network]:
        """Return every network on the host, active or defined."""
        return [Network(self, ref) for ref in self.driver.list_networks()]

    def lookup_network(self, name_or_uuid: str | uuid.UUID) -> Network:
        """Return the network with that name or UUID; `NoNetworkError` if there is none."""
        return Network(self, self.driver.lookup_network(_key(name_or_uuid, "network")))

    def define_network(self, xml: str) -> Network:
        """Define a persistent (inactive) network from XML."""
        return Network(self, self.driver.define_network(_xml(xml)))

    def create_network_job(self, xml: str) -> Job[Network]:
        """Create and start a transient network from XML in the background; the result is it."""
        return network_job(self, self.driver.create_network_job(_xml(xml)))

    def create_network(self, xml: str) -> Network:
        """Create and start a transient network, returning it once active."""
        return finish(self.create_network_job(xml))

    # -- jobs -------------------------------------------------------------------------------

    def list_jobs(self) -> list[Job[Domain | Network | None]]:
        """Return every job on the host not yet destroyed, oldest first.

        Each is typed by the union of what jobs make; its kind says which it is, and its
        results are what they were on the handle that started it (see `virtjob.job`).
        """
        return [self._listed(job) for job in self.driver.list_jobs()]

    def lookup_job(self, job_id: str) -> Job[Domain | Network | None]:
        """Return the job with that id (typed as `list_jobs` types them); `NoJobError` if
        there is none, `InvalidArgError` if `job_id` is not a non-empty string."""
        if not isinstance(job_id, str) or not job_id:
            raise InvalidArgError(f"a job id is a non-empty string, not {job_id!r}")
        return self._listed(self.driver.lookup_job(job_id))

    def _listed(self, job: jobs.Job[object]) -> Job[Domain | Network | None]:
        """A driver's job of any kind as the handle its kind makes (`Job[Domain]`...)."""
        if job.kind.yields_domain:
            return domain_job(self, job)
        if job.kind.yields_network:
            return network_job(self, job)
        return void_job(job)

    def __repr__(self) -> str:
        return f"<Connection {self.uri}{' (closed)' if self.closed else ''}>"


def _key(value: str | uuid.UUID, what: str) -> str:
    if isinstance(value, uuid.UUID):
        return str(value)
    if not isinstance(value, str) or not value:
        raise InvalidArgError(f"a {what} is looked up by its name or its UUID, not {value!r}")
    return value


def _xml(value: str | bytes) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidArgError(f"XML document is not valid UTF-8: {exc}") from exc
    if not isinstance(value, str):
        raise InvalidArgError(f"expected an XML document as a string, got {type(value).__name__}")
    return value
