"""`TestDriver`: one connection's view of a simulated `TestHost`.

The XML functions of `virtjob.config` are imported by the methods that read or write XML, not
at the top: a command that shows no XML (``virtjob list``, ``dominfo``...) never loads lxml.
"""

from __future__ import annotations

from virtjob.drivers import objects
from virtjob.drivers.base import (
    Capabilities,
    Confinement,
    DomainInfo,
    DomainRef,
    DomainState,
    NetworkInfo,
    NetworkRef,
)
from virtjob.drivers.test import workers
from virtjob.drivers.test.host import TestDomain, TestHost, TestNetwork, discard_host
from virtjob.errors import OperationInvalidError
from virtjob.jobs import Job, JobKind

CAPABILITIES = Capabilities(
    driver="test", job_kinds=frozenset(JobKind), networks=True, hypervisor="test"
)


def domain_key(name: str) -> str:
    """The job lock key of the domain called `name`."""
    return f"domain:{name}"


def network_key(name: str) -> str:
    """The job lock key of the network called `name`."""
    return f"network:{name}"


class TestDriver:
    """Implements the driver protocol over a shared `TestHost`; jobs run at `rate` bytes/s."""

    def __init__(self, host: TestHost, rate: int, uri: str) -> None:
        self.host = host
        self.rate = rate
        self.uri = uri

    def close(self) -> None:
        """Nothing to release: the host and its jobs outlive connections."""

    def discard_host(self) -> None:
        """Drop the simulated host from the process (virtjobd closing a host that holds
        nothing): the next connection to its name finds a fresh host. Raises nothing."""
        discard_host(self.host)

    def confine(self, confinement: Confinement) -> None:
        """Keep this host's save, restore and dump files inside `confinement.dirs`."""
        self.host.confinement = confinement

    def capabilities(self) -> Capabilities:
        """The test driver runs all seven job variants and has networks."""
        return CAPABILITIES

    def _refuse_if_busy(self, key: str, action: str) -> None:
        objects.refuse_if_busy(self.host.jobs, key, action)

    def _start(
        self,
        kind: JobKind,
        subject: str,
        key: str,
        worker: workers.Worker,
        target: str | None = None,
    ) -> Job:
        return self.host.jobs.start_job(kind, subject, worker, lock_key=key, target=target)

    # -- domains ----------------------------------------------------------------------------

    def list_domains(self) -> list[DomainRef]:
        """Every domain on the host."""
        with self.host.lock:
            return [domain.ref for domain in self.host.domains.values()]

    def lookup_domain(self, key: str) -> DomainRef:
        """The domain with that name or UUID."""
        with self.host.lock:
            return self.host.find_domain(key).ref

    def define_domain(self, xml: str) -> DomainRef:
        """Define a new domain, or replace the definition of the one with the same name and UUID."""
        from virtjob.config import parse_domain_xml

        config = parse_domain_xml(xml)
        with self.host.lock:
            existing = self.host.domains.get(config.uuid)
            redefine = existing is not None and existing.config.name == config.name
            action = "redefine" if redefine else "define"
            # A job that is creating or restoring a domain of this name holds the name too.
            self._refuse_if_busy(domain_key(config.name), f"{action} domain {config.name!r}")
            if existing is not None and redefine:
                existing.config = config
                existing.persistent = True
                return existing.ref
            self.host.check_domain_clash(config)
            domain = TestDomain(config, persistent=True)
            self.host.domains[config.uuid] = domain
            return domain.ref

    def undefine_domain(self, ref: DomainRef) -> None:
        """Forget the definition; a running domain goes on as a transient one."""
        with self.host.lock:
            domain = self.host.domain(ref)
            self._refuse_if_busy(domain_key(ref.name), f"undefine domain {ref.name!r}")
            if not domain.persistent:
                raise OperationInvalidError(
                    f"cannot undefine domain {ref.name!r}: it is transient (not defined);"
                    f" destroy it to remove it"
                )
            domain.persistent = False
            if not domain.state.active:
                del self.host.domains[ref.uuid]

    def domain_info(self, ref: DomainRef) -> DomainInfo:
        """A snapshot of the domain."""
        with self.host.lock:
            domain = self.host.domain(ref)
            config = domain.config
            return DomainInfo(
                name=config.name,
                uuid=config.uuid,
                id=domain.id,
                state=domain.state,
                memory=config.memory,
                current_memory=config.current_memory,
                vcpus=config.vcpus,
                persistent=domain.persistent,
                os_type=config.os_type,
                reason=domain.reason,
            )

    def domain_xml(self, ref: DomainRef) -> str:
        """The domain's XML."""
        from virtjob.config import format_domain_xml

        with self.host.lock:
            return format_domain_xml(self.host.domain(ref).config)

    def _active_domain(self, ref: DomainRef, action: str) -> TestDomain:
        domain = self.host.domain(ref)
        self._refuse_if_busy(domain_key(ref.name), f"{action} domain {ref.name!r}")
        if not domain.state.active:
            raise objects.not_running(action, ref.name, domain.state)
        return domain

    def domain_destroy(self, ref: DomainRef) -> None:
        """Power the domain off at once."""
        with self.host.lock:
            self.host.stop(self._active_domain(ref, "destroy"), "destroyed")

    def domain_shutdown(
        self,
        ref: DomainRef,
        force_after: float | None = None,  # noqa: ARG002 - never needed: the guest obeys
    ) -> None:
        """The simulated guest obeys the power button at once, so it is never forced.

        `force_after` is accepted as the other drivers take it; nothing waits for it.
        """
        with self.host.lock:
            domain = self._active_domain(ref, "shut down")
            if domain.state is not DomainState.RUNNING:
                raise OperationInvalidError(
                    f"cannot shut down domain {ref.name!r}: it is {domain.state}; resume it first"
                )
            self.host.stop(domain, "shutdown")

    def domain_suspend(self, ref: DomainRef) -> None:
        """Pause the domain."""
        with self.host.lock:
            domain = self._active_domain(ref, "suspend")
            if domain.state is not DomainState.RUNNING:
                raise OperationInvalidError(
                    f"cannot suspend domain {ref.name!r}: it is {domain.state}, not running"
                )
            domain.state = DomainState.PAUSED
            domain.reason = "user"

    def domain_resume(self, ref: DomainRef) -> None:
        """Resume a paused domain."""
        with self.host.lock:
            domain = self._active_domain(ref, "resume")
            if domain.state is not DomainState.PAUSED:
                raise OperationInvalidError(
                    f"cannot resume domain {ref.name!r}: it is {domain.state}, not paused"
                )
            domain.state = DomainState.RUNNING
            domain.reason = "unpaused"

    def create_domain_job(self, xml: str) -> Job:
        """Boot a new transient domain in the background."""
        from virtjob.config import parse_domain_xml

        config = parse_domain_xml(xml)
        with self.host.lock:
            self.host.check_domain_clash(config)
            return self._start(
                JobKind.DOMAIN_CREATE,
                config.name,
                domain_key(config.name),
                workers.create_domain(self.host, config, self.rate),
            )

    def start_domain_job(self, ref: DomainRef) -> Job:
        """Boot a defined domain in the background."""
        with self.host.lock:
            domain = self.host.domain(ref)
            self._refuse_if_busy(domain_key(ref.name), f"start domain {ref.name!r}")
            if domain.state.active:
                raise OperationInvalidError(
                    f"cannot start domain {ref.name!r}: it is already {domain.state}"
                )
            return self._start(
                JobKind.DOMAIN_START,
                ref.name,
                domain_key(ref.name),
                workers.start_domain(self.host, ref, self.rate),
            )

    def save_domain_job(self, ref: DomainRef, path: str) -> Job:
        """Save a running domain to `path` in the background."""
        # Here, not at the top: a command that writes no file loads no save-file machinery.
        from virtjob.savefile import check_target

        with self.host.lock:  # a busy domain is refused first: that refusal names its job
            domain = self.host.domain(ref)
            self._refuse_if_busy(domain_key(ref.name), f"save domain {ref.name!r}")
            if not domain.state.active:
                raise objects.not_running("save", ref.name, domain.state)
            check_target(path, f"a save of domain {ref.name!r}", self.host.confinement)
            return self._start(
                JobKind.DOMAIN_SAVE,
                ref.name,
                domain_key(ref.name),
                workers.save_domain(self.host, ref, path, self.rate),
                path,
            )

    def restore_domain_job(self, path: str) -> Job:
        """Check the save file at `path` and restore its domain in the background."""
        from virtjob.savefile import SaveFileReader

        with SaveFileReader(path, workers.DRIVER_NAME, confinement=self.host.confinement) as reader:
            config = workers.check_restore_file(reader)
            try:
                with self.host.lock:
                    self._refuse_if_busy(domain_key(config.name), f"restore domain {config.name!r}")
                    workers.restorable(self.host, config)
            except OperationInvalidError:
                # A bit flipped in the XML can turn it into a clash (a name that does not match
                # the UUID): blame the corrupted file, not the host, when that is the cause.
                reader.verify()
                raise
        with self.host.lock:
            workers.restorable(self.host, config)
            return self._start(
                JobKind.DOMAIN_RESTORE,
                config.name,
                domain_key(config.name),
                workers.restore_domain(self.host, path, config, self.rate),
            )

    def dump_core_job(self, ref: DomainRef, path: str) -> Job:
        """Dump an active domain's memory to `path` in the background."""
        # Here, not at the top: a command that writes no file loads no save-file machinery.
        from virtjob.savefile import check_target

        with self.host.lock:  # a busy domain is refused first: that refusal names its job
            domain = self.host.domain(ref)
            self._refuse_if_busy(domain_key(ref.name), f"dump domain {ref.name!r}")
            if not domain.state.active:
                raise objects.not_running("dump", ref.name, domain.state)
            check_target(path, f"a core dump of domain {ref.name!r}", self.host.confinement)
            return self._start(
                JobKind.DOMAIN_DUMP_CORE,
                ref.name,
                domain_key(ref.name),
                workers.dump_core(self.host, ref, path, self.rate),
                path,
            )

    # -- networks ---------------------------------------------------------------------------

    def list_networks(self) -> list[NetworkRef]:
        """Every network on the host."""
        with self.host.lock:
            return [network.ref for network in self.host.networks.values()]

    def lookup_network(self, key: str) -> NetworkRef:
        """The network with that name or UUID."""
        with self.host.lock:
            return self.host.find_network(key).ref

    def define_network(self, xml: str) -> NetworkRef:
        """Define a new network, or replace the definition of the same name and UUID."""
        from virtjob.config import parse_network_xml

        config = parse_network_xml(xml)
        with self.host.lock:
            existing = self.host.networks.get(config.uuid)
            redefine = existing is not None and existing.config.name == config.name
            action = "redefine" if redefine else "define"
            # A job that is creating or restoring a network of this name holds the name too.
            self._refuse_if_busy(network_key(config.name), f"{action} network {config.name!r}")
            if existing is not None and redefine:
                existing.config = config
                existing.persistent = True
                return existing.ref
            self.host.check_network_clash(config)
            network = TestNetwork(config, persistent=True)
            self.host.networks[config.uuid] = network
            return network.ref

    def undefine_network(self, ref: NetworkRef) -> None:
        """Forget the definition; an active network goes on as a transient one."""
        with self.host.lock:
            network = self.host.network(ref)
            self._refuse_if_busy(network_key(ref.name), f"undefine network {ref.name!r}")
            if not network.persistent:
                raise OperationInvalidError(
                    f"cannot undefine network {ref.name!r}: it is transient (not defined);"
                    f" destroy it to remove it"
                )
            network.persistent = False
            if not network.active:
                del self.host.networks[ref.uuid]

    def network_info(self, ref: NetworkRef) -> NetworkInfo:
        """A snapshot of the network."""
        with self.host.lock:
            network = self.host.network(ref)
            return NetworkInfo(
                name=network.config.name,
                uuid=network.config.uuid,
                active=network.active,
                persistent=network.persistent,
                bridge=network.config.bridge,
                forward_mode=network.config.forward_mode,
            )

    def network_xml(self, ref: NetworkRef) -> str:
        """The network's XML."""
        from virtjob.config import format_network_xml

        with self.host.lock:
            return format_network_xml(self.host.network(ref).config)

    def network_destroy(self, ref: NetworkRef) -> None:
        """Stop an active network; a transient one disappears."""
        with self.host.lock:
            network = self.host.network(ref)
            self._refuse_if_busy(network_key(ref.name), f"destroy network {ref.name!r}")
            if not network.active:
                raise OperationInvalidError(
                    f"cannot destroy network {ref.name!r}: it is not active"
                )
            network.active = False
            if not network.persistent:
                del self.host.networks[ref.uuid]

    def create_network_job(self, xml: str) -> Job:
        """Bring up a new transient network in the background."""
        from virtjob.config import parse_network_xml

        config = parse_network_xml(xml)
        with self.host.lock:
            self.host.check_network_clash(config)
            self.host.check_bridge_free(config)
            return self._start(
                JobKind.NETWORK_CREATE,
                config.name,
                network_key(config.name),
                workers.create_network(self.host, config, self.rate),
            )

    def start_network_job(self, ref: NetworkRef) -> Job:
        """Start a defined network in the background."""
        with self.host.lock:
            network = self.host.network(ref)
            if network.active:
                raise OperationInvalidError(
                    f"cannot start network {ref.name!r}: it is already active"
                )
            self.host.check_bridge_free(network.config, allow=network)
            return self._start(
                JobKind.NETWORK_START,
                ref.name,
                network_key(ref.name),
                workers.start_network(self.host, ref, self.rate),
            )

    # -- jobs -------------------------------------------------------------------------------

    def list_jobs(self) -> list[Job]:
        """Every job on the host, oldest first."""
        return self.host.jobs.list_jobs()

    def lookup_job(self, job_id: str) -> Job:
        """The job with that id."""
        return self.host.jobs.lookup_job(job_id)
