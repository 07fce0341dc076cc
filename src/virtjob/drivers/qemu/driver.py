"""`QemuDriver`: one connection's view of a `QemuHost`."""

from __future__ import annotations

from typing import NoReturn

from virtjob.config import format_domain_xml, parse_domain_xml
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
from virtjob.drivers.qemu import workers
from virtjob.drivers.qemu.host import QemuDomain, QemuHost
from virtjob.errors import NoSupportError, OperationInvalidError
from virtjob.jobs import Job, JobKind
from virtjob.savefile import check_target

DOMAIN_JOBS = frozenset(
    {
        JobKind.DOMAIN_CREATE,
        JobKind.DOMAIN_START,
        JobKind.DOMAIN_SAVE,
        JobKind.DOMAIN_RESTORE,
        JobKind.DOMAIN_DUMP_CORE,
    }
)


def domain_key(name: str) -> str:
    """The job lock key of the domain called `name`."""
    return f"domain:{name}"


class QemuDriver:
    """Implements the driver protocol over a shared `QemuHost`.

    Networks are not managed by this driver yet: every network call raises `NoSupportError`
    (the test driver covers them). `shutdown` asks the guest by ACPI and returns at once; it
    kills QEMU later only when asked to (`force_after`, or `shutdown_timeout` from the URI's
    ``?shutdown_timeout=``: the default `force_after` of this connection, None when not given).
    """

    persists_definitions = True  # under the state directory: virtjobd must not replay its own

    def __init__(self, host: QemuHost, uri: str, shutdown_timeout: float | None = None) -> None:
        self.host = host
        self.uri = uri
        self.shutdown_timeout = shutdown_timeout

    def close(self) -> None:
        """Nothing to release: the host, its guests and its jobs outlive connections."""

    def confine(self, confinement: Confinement) -> None:
        """Keep this host's files, disk images, emulators and QEMU arguments to `confinement`."""
        self.host.confinement = confinement

    def capabilities(self) -> Capabilities:
        """The five domain job variants; no networks."""
        return Capabilities(
            driver="qemu",
            job_kinds=DOMAIN_JOBS,
            networks=False,
            hypervisor=self.host.accel,
        )

    def _refuse_if_busy(self, name: str, action: str) -> None:
        objects.refuse_if_busy(self.host.jobs, domain_key(name), action)

    def _start(
        self, kind: JobKind, name: str, plan: workers.Plan, target: str | None = None
    ) -> Job:
        return self.host.jobs.start_job(
            kind, name, plan.worker, plan.on_cancel, lock_key=domain_key(name), target=target
        )

    # -- domains ----------------------------------------------------------------------------

    def list_domains(self) -> list[DomainRef]:
        """Every domain: defined ones and running transient ones."""
        with self.host.lock:
            return [domain.ref for domain in self.host.domains.values()]

    def lookup_domain(self, key: str) -> DomainRef:
        """The domain with that name or UUID."""
        with self.host.lock:
            return self.host.find_domain(key).ref

    def define_domain(self, xml: str) -> DomainRef:
        """Define a domain (stored under the state directory), or update the same one.

        Raises `AccessDeniedError` on a confined host for XML that reaches outside it.
        """
        config = parse_domain_xml(xml)
        self.host.check_definition(config)
        with self.host.lock:
            existing = self.host.domains.get(config.uuid)
            if existing is not None and existing.config.name == config.name:
                self._refuse_if_busy(config.name, f"redefine domain {config.name!r}")
                self.host.store_definition(config)
                if existing.process is None:
                    existing.config = config
                existing.persistent = True
                return existing.ref
            self.host.check_clash(config)
            self.host.store_definition(config)
            domain = QemuDomain(config, persistent=True)
            self.host.domains[config.uuid] = domain
            return domain.ref

    def undefine_domain(self, ref: DomainRef) -> None:
        """Forget the definition; a running domain goes on as a transient one."""
        with self.host.lock:
            domain = self.host.domain(ref)
            self._refuse_if_busy(ref.name, f"undefine domain {ref.name!r}")
            if not domain.persistent:
                raise OperationInvalidError(
                    f"cannot undefine domain {ref.name!r}: it is transient (not defined);"
                    f" destroy it to remove it"
                )
            self.host.drop_definition(ref.name)
            domain.persistent = False
            if domain.process is None:
                del self.host.domains[ref.uuid]

    def domain_info(self, ref: DomainRef) -> DomainInfo:
        """A snapshot of the domain; the state is QEMU's own."""
        with self.host.lock:
            domain = self.host.domain(ref)
        config = domain.config
        return DomainInfo(
            name=config.name,
            uuid=config.uuid,
            id=domain.id,
            state=self.host.state(domain),
            memory=config.memory,
            current_memory=config.current_memory,
            vcpus=config.vcpus,
            persistent=domain.persistent,
            os_type=config.os_type,
        )

    def domain_xml(self, ref: DomainRef) -> str:
        """The domain's XML."""
        with self.host.lock:
            return format_domain_xml(self.host.domain(ref).config)

    def domain_destroy(self, ref: DomainRef) -> None:
        """Kill the domain's QEMU at once, even a hung one, even while a job runs on it.

        A save or dump running on the domain then fails saying the domain was destroyed (its
        partial file removed). While a start or restore is still bringing the domain up there
        is no QEMU of it to kill yet: `OperationInvalidError` naming that job (cancel it).
        Raises `OperationInvalidError` for a domain that is not running.
        """
        with self.host.lock:
            process = self.host.domain(ref).process
        if process is None or process.ended.is_set():
            self._refuse_if_busy(ref.name, f"destroy domain {ref.name!r}")
            raise objects.not_running("destroy", ref.name, "not running")
        process.kill(reason=f"domain {ref.name!r} was destroyed")

    def domain_shutdown(self, ref: DomainRef, force_after: float | None = None) -> None:
        """Press the guest's ACPI power button (QMP ``system_powerdown``) and return at once.

        With `force_after` (else this connection's `shutdown_timeout`, if any), QEMU is killed
        (a warning logged) if it still runs that many seconds later, unless a job has started
        on the domain by then (`QemuHost.force_off_after`). Raises `OperationInvalidError` if
        the domain is not running or a job runs on it.
        """
        with self.host.lock:
            self._refuse_if_busy(ref.name, f"shut down domain {ref.name!r}")
            _, process = self.host.running_process(ref, "shut down")
        process.monitor.execute("system_powerdown")
        if force_after is None:
            force_after = self.shutdown_timeout
        if force_after is not None:
            self.host.force_off_after(ref, process, force_after, domain_key(ref.name))

    def domain_suspend(self, ref: DomainRef) -> None:
        """Pause the guest's vCPUs."""
        self._pause_or_resume(ref, "suspend", "stop", DomainState.RUNNING)

    def domain_resume(self, ref: DomainRef) -> None:
        """Resume a paused guest."""
        self._pause_or_resume(ref, "resume", "cont", DomainState.PAUSED)

    def _pause_or_resume(
        self, ref: DomainRef, action: str, command: str, needed: DomainState
    ) -> None:
        self._refuse_if_busy(ref.name, f"{action} domain {ref.name!r}")
        domain, process = self.host.running_process(ref, action)
        state = self.host.state(domain)
        if state is not needed:
            raise OperationInvalidError(
                f"cannot {action} domain {ref.name!r}: it is {state}, not {needed}"
            )
        process.monitor.execute(command)

    def create_domain_job(self, xml: str) -> Job:
        """Boot a new transient domain in the background.

        Raises at once what `QemuHost.vet` raises for a guest this host may not or cannot run.
        """
        config = parse_domain_xml(xml)
        self.host.vet(config)
        with self.host.lock:
            self.host.check_clash(config)
            return self._start(
                JobKind.DOMAIN_CREATE, config.name, workers.create_domain(self.host, config)
            )

    def start_domain_job(self, ref: DomainRef) -> Job:
        """Boot a defined domain in the background (refused at once as `QemuHost.vet` says)."""
        with self.host.lock:
            config = self.host.domain(ref).config
        self.host.vet(config)
        with self.host.lock:
            if self.host.domain(ref).process is not None:
                raise OperationInvalidError(
                    f"cannot start domain {ref.name!r}: it is already running"
                )
            return self._start(JobKind.DOMAIN_START, ref.name, workers.start_domain(self.host, ref))

    def save_domain_job(self, ref: DomainRef, path: str) -> Job:
        """Save a running domain to `path` in the background."""
        self._refuse_if_busy(ref.name, f"save domain {ref.name!r}")  # names the busy job
        self.host.running_process(ref, "save")
        check_target(path, f"a save of domain {ref.name!r}", self.host.confinement)
        with self.host.lock:
            return self._start(
                JobKind.DOMAIN_SAVE, ref.name, workers.save_domain(self.host, ref, path), path
            )

    def restore_domain_job(self, path: str) -> Job:
        """Check the save file at `path` and restore its domain in the background."""
        config, xml = workers.read_save_header(path, self.host.confinement)
        self.host.vet(config)  # the save file's XML is a client's XML too
        with self.host.lock:
            workers.restorable(self.host, config)
            return self._start(
                JobKind.DOMAIN_RESTORE,
                config.name,
                workers.restore_domain(self.host, path, config, xml),
            )

    def dump_core_job(self, ref: DomainRef, path: str) -> Job:
        """Dump a running domain's memory to `path` in the background."""
        self._refuse_if_busy(ref.name, f"dump domain {ref.name!r}")  # names the busy job
        self.host.running_process(ref, "dump")
        check_target(path, f"a core dump of domain {ref.name!r}", self.host.confinement)
        with self.host.lock:
            return self._start(
                JobKind.DOMAIN_DUMP_CORE, ref.name, workers.dump_core(self.host, ref, path), path
            )

    # -- networks ---------------------------------------------------------------------------

    def _no_networks(self) -> NoReturn:
        raise NoSupportError(
            "the qemu driver does not manage networks yet; give guests"
            " <interface type='user'> and use test:/// to work with virtual networks"
        )

    def list_networks(self) -> list[NetworkRef]:
        """Not supported: raises `NoSupportError`."""
        self._no_networks()

    def lookup_network(self, key: str) -> NetworkRef:
        """Not supported: raises `NoSupportError`."""
        self._no_networks()

    def define_network(self, xml: str) -> NetworkRef:
        """Not supported: raises `NoSupportError`."""
        self._no_networks()

    def undefine_network(self, ref: NetworkRef) -> None:
        """Not supported: raises `NoSupportError`."""
        self._no_networks()

    def network_info(self, ref: NetworkRef) -> NetworkInfo:
        """Not supported: raises `NoSupportError`."""
        self._no_networks()

    def network_xml(self, ref: NetworkRef) -> str:
        """Not supported: raises `NoSupportError`."""
        self._no_networks()

    def network_destroy(self, ref: NetworkRef) -> None:
        """Not supported: raises `NoSupportError`."""
        self._no_networks()

    def create_network_job(self, xml: str) -> Job:
        """Not supported: raises `NoSupportError`."""
        self._no_networks()

    def start_network_job(self, ref: NetworkRef) -> Job:
        """Not supported: raises `NoSupportError`."""
        self._no_networks()

    # -- jobs -------------------------------------------------------------------------------

    def list_jobs(self) -> list[Job]:
        """Every job on the host, oldest first."""
        return self.host.jobs.list_jobs()

    def lookup_job(self, job_id: str) -> Job:
        """The job with that id."""
        return self.host.jobs.lookup_job(job_id)
