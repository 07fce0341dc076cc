"""The QEMU host behind ``qemu:///session``: definitions on disk, one QEMU per running domain.

One `QemuHost` exists per state directory in a process, shared by every connection to it.
Definitions persist as ``STATE/qemu/domains/NAME.xml``; each QEMU's output goes to
``STATE/qemu/logs/NAME.log``. All bookkeeping is guarded by `lock`; QMP calls and process
launches happen outside it.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import uuid
from dataclasses import dataclass

from virtjob.config import DomainConfig, format_domain_xml, parse_domain_xml
from virtjob.drivers import objects
from virtjob.drivers.base import Confinement, DomainRef, DomainState
from virtjob.drivers.qemu.command import build_argv, find_emulator
from virtjob.drivers.qemu.monitor import EventLoopThread
from virtjob.drivers.qemu.process import Launcher, QemuProcess
from virtjob.errors import NoDomainError, OperationFailedError, XMLError
from virtjob.jobs import LocalJobDriver
from virtjob.savefile import AtomicFile

MAX_JOBS = 8
_QEMU_STATES = {
    "running": DomainState.RUNNING,
    "paused": DomainState.PAUSED,
    "prelaunch": DomainState.PAUSED,
    "postmigrate": DomainState.PAUSED,
    "inmigrate": DomainState.PAUSED,
    "finish-migrate": DomainState.PAUSED,
    "save-vm": DomainState.PAUSED,
    "restore-vm": DomainState.PAUSED,
    "suspended": DomainState.PMSUSPENDED,
    "shutdown": DomainState.SHUTDOWN,
    "internal-error": DomainState.CRASHED,
    "guest-panicked": DomainState.CRASHED,
    "io-error": DomainState.PAUSED,
    "watchdog": DomainState.PAUSED,
    "debug": DomainState.PAUSED,
}


@dataclass
class QemuDomain:
    """A domain of the host. Mutated only under the host lock."""

    config: DomainConfig
    persistent: bool
    process: QemuProcess | None = None
    id: int | None = None
    crashed: bool = False

    @property
    def ref(self) -> DomainRef:
        """This domain's identity."""
        return DomainRef(self.config.name, self.config.uuid)


class QemuHost:
    """The domains of one state directory and the QEMU processes that run them."""

    def __init__(self, state_dir: str, accel: str) -> None:
        self.state_dir = state_dir
        self.accel = accel
        self.root = os.path.join(state_dir, "qemu")
        self.definitions = os.path.join(self.root, "domains")
        self.logs = os.path.join(self.root, "logs")
        for directory in (self.definitions, self.logs):
            os.makedirs(directory, mode=0o700, exist_ok=True)
        self.lock = threading.RLock()
        self.confinement: Confinement | None = None
        """What jobs and guests may touch; None leaves them unconfined (`Driver.confine`)."""
        self.domains: dict[uuid.UUID, QemuDomain] = {}
        self.jobs = LocalJobDriver(MAX_JOBS)
        self.loop = EventLoopThread(f"virtjob-qmp-{os.path.basename(state_dir)}")
        self.launcher = Launcher(f"virtjob-qemu-launcher-{os.path.basename(state_dir)}")
        self._ids = itertools.count(1)
        self._load_definitions()

    def _load_definitions(self) -> None:
        for entry in sorted(os.listdir(self.definitions)):
            if not entry.endswith(".xml") or entry.startswith("."):
                continue
            path = os.path.join(self.definitions, entry)
            try:
                with open(path, encoding="utf-8") as file:
                    config = parse_domain_xml(file.read())
            except (OSError, XMLError) as exc:
                raise OperationFailedError(
                    f"cannot load the domain definition {path}: {exc}; fix or remove the file"
                ) from None
            self.domains[config.uuid] = QemuDomain(config, persistent=True)

    # -- definitions (callers hold `lock`) --------------------------------------------------

    def store_definition(self, config: DomainConfig) -> None:
        """Write `config` to the state directory, replacing any earlier definition."""
        with AtomicFile(self._definition_path(config.name)) as out:
            out.write(format_domain_xml(config).encode("utf-8"))
            out.commit()

    def drop_definition(self, name: str) -> None:
        """Remove the stored definition of domain `name`."""
        with contextlib.suppress(FileNotFoundError):  # never stored: the same result
            os.unlink(self._definition_path(name))

    def _definition_path(self, name: str) -> str:
        return os.path.join(self.definitions, f"{name}.xml")

    # -- lookups (callers hold `lock`) ------------------------------------------------------

    def find_domain(self, key: str) -> QemuDomain:
        """The domain named `key` or with UUID `key`; `NoDomainError` if none."""
        where = f"qemu:///session ({self.state_dir})"
        return objects.lookup(self.domains, key, "domain", where, NoDomainError)

    def domain(self, ref: DomainRef) -> QemuDomain:
        """The domain `ref` names; `NoDomainError` if it has gone."""
        return objects.by_ref(self.domains, ref, "domain", NoDomainError)

    def check_clash(self, config: DomainConfig, allow: QemuDomain | None = None) -> None:
        """Refuse `config` if another domain (not `allow`) has its name or UUID."""
        objects.check_clash(self.domains, config, "domain", allow)

    # -- processes --------------------------------------------------------------------------

    def launch(
        self, config: DomainConfig, *, incoming: bool = False, pass_fds: tuple[int, ...] = ()
    ) -> QemuProcess:
        """Start a paused QEMU for `config` (not yet attached to any domain) and connect to it."""
        emulator = find_emulator(config)
        log_path = os.path.join(self.logs, f"{config.name}.log")
        return QemuProcess.launch(
            config.name,
            lambda monitor_fd: build_argv(
                config,
                emulator=emulator,
                accel=self.accel,
                monitor_fd=monitor_fd,
                incoming=incoming,
            ),
            launcher=self.launcher,
            loop=self.loop,
            log_path=log_path,
            on_exit=self._exited,
            pass_fds=pass_fds,
        )

    def attach(self, domain: QemuDomain, process: QemuProcess) -> None:
        """Make `process` the running instance of `domain`. The caller holds `lock`."""
        domain.process = process
        domain.id = next(self._ids)
        domain.crashed = False
        self.domains[domain.config.uuid] = domain
        if process.ended.is_set():  # it died before we could attach it
            self._detach(domain, process)

    def _exited(self, process: QemuProcess) -> None:
        with self.lock:
            for domain in list(self.domains.values()):
                if domain.process is process:
                    self._detach(domain, process)

    def _detach(self, domain: QemuDomain, process: QemuProcess) -> None:
        domain.process = None
        domain.id = None
        domain.crashed = not process.expected_exit and process.returncode != 0
        if not domain.persistent:
            self.domains.pop(domain.config.uuid, None)

    def state(self, domain: QemuDomain) -> DomainState:
        """The domain's run state, asked of QEMU itself while it runs."""
        process = domain.process
        if process is None:
            return DomainState.CRASHED if domain.crashed else DomainState.SHUTOFF
        try:
            status = process.monitor.execute("query-status", timeout=5.0)
        except OperationFailedError:
            process.exited.wait(1.0)
            return DomainState.SHUTOFF if process.expected_exit else DomainState.CRASHED
        return _QEMU_STATES.get(str(status.get("status")), DomainState.NOSTATE)

    def running_process(self, ref: DomainRef, action: str) -> tuple[QemuDomain, QemuProcess]:
        """The domain and its live QEMU; `OperationInvalidError` if it is not running."""
        with self.lock:
            domain = self.domain(ref)
            process = domain.process
        if process is None or process.ended.is_set():
            raise objects.not_running(action, ref.name, "not running")
        return domain, process


_hosts: dict[str, QemuHost] = {}
_hosts_lock = threading.Lock()


def get_host(state_dir: str, accel: str) -> QemuHost:
    """Return the process's host for `state_dir`, creating it on first use."""
    key = os.path.realpath(state_dir)
    with _hosts_lock:
        host = _hosts.get(key)
        if host is None:
            host = _hosts[key] = QemuHost(key, accel)
        return host
