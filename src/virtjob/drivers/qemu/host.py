"""The QEMU host behind ``qemu:///session``: definitions on disk, one QEMU per running domain.

One `QemuHost` exists per state directory in a process, shared by every connection to it.
Definitions persist as ``STATE/qemu/domains/NAME.xml``; each QEMU's output goes to
``STATE/qemu/logs/NAME.log``. All bookkeeping is guarded by `lock`; QMP calls and process
launches happen outside it.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os
import shutil
import stat
import threading
import time
import uuid
from dataclasses import dataclass

from virtjob.config import DomainConfig, format_domain_xml, parse_domain_xml
from virtjob.drivers import objects
from virtjob.drivers.base import Confinement, DomainRef, DomainState
from virtjob.drivers.qemu.command import DEFAULT_EMULATOR, build_argv, find_emulator, kvm_usable
from virtjob.drivers.qemu.confine import check_domain
from virtjob.drivers.qemu.images import open_images
from virtjob.drivers.qemu.monitor import EventLoopThread
from virtjob.drivers.qemu.process import Launcher, QemuProcess
from virtjob.errors import (
    InvalidArgError,
    NoDomainError,
    NoSupportError,
    OperationFailedError,
    XMLError,
)
from virtjob.jobs import LocalJobDriver
from virtjob.savefile import AtomicFile

log = logging.getLogger("virtjob.qemu")
MAX_JOBS = 8
STATE_TIMEOUT = 2.0
"""Seconds QEMU has to say its state before the domain is reported paused (unresponsive)."""
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


@dataclass(frozen=True)
class _ForceOff:
    """A pending forced power-off of a domain that was asked to shut down (`force_off_after`)."""

    process: QemuProcess
    deadline: float
    timer: threading.Timer


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
    """The domains of one state directory and the QEMU processes that run them.

    `forced_accel` is the ``?accel=`` its first connection gave (None: none): ``tcg`` runs
    every guest under TCG, ``kvm`` only insisted that KVM be usable. Otherwise each guest runs
    as its ``<domain type>`` says (see `accel_for`). `accel` is the host's default, for
    `Capabilities.hypervisor`.
    """

    def __init__(self, state_dir: str, accel: str | None) -> None:
        self.state_dir = state_dir
        self.forced_accel = accel
        self.accel = accel or ("kvm" if kvm_usable() else "tcg")
        self.root = os.path.join(state_dir, "qemu")
        self.definitions = os.path.join(self.root, "domains")
        self.logs = os.path.join(self.root, "logs")
        for directory in (self.definitions, self.logs):
            os.makedirs(directory, mode=0o700, exist_ok=True)
        self.lock = threading.RLock()
        self.confinement: Confinement | None = None
        """What jobs and guests may touch; None leaves them unconfined (`Driver.confine`)."""
        self.domains: dict[uuid.UUID, QemuDomain] = {}
        self.jobs = LocalJobDriver(MAX_JOBS, host="qemu:///session")
        self.loop = EventLoopThread(f"virtjob-qmp-{os.path.basename(state_dir)}")
        self.launcher = Launcher(f"virtjob-qemu-launcher-{os.path.basename(state_dir)}")
        self._ids = itertools.count(1)
        self._force_offs: dict[uuid.UUID, _ForceOff] = {}
        self._load_definitions()

    def _load_definitions(self) -> None:
        for entry in sorted(os.listdir(self.definitions)):
            if not entry.endswith(".xml") or entry.startswith("."):
                continue
            path = os.path.join(self.definitions, entry)
            try:
                config = parse_domain_xml(_read_definition(path))
            except (OSError, UnicodeDecodeError, XMLError) as exc:
                raise OperationFailedError(
                    f"cannot load the domain definition {path}: {exc}; fix or remove the file"
                ) from exc
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

    # -- what a guest may be ----------------------------------------------------------------

    def accel_for(self, config: DomainConfig) -> str:
        """The accelerator QEMU runs `config` with: ``kvm`` for ``<domain type='kvm'>``,
        ``tcg`` for ``type='qemu'`` (and for every guest of a host opened with accel=tcg).

        Raises `NoSupportError` for a KVM guest when /dev/kvm is not usable, and
        `InvalidArgError` for ``type='test'`` (a test-driver domain).
        """
        kind = config.domain_type
        if kind == "test":
            raise InvalidArgError(
                f"domain {config.name!r} is <domain type='test'>, which only the test driver"
                f" runs; use type='kvm' (KVM) or type='qemu' (TCG emulation) on qemu:///session"
            )
        if self.forced_accel == "tcg" or kind == "qemu":
            return "tcg"
        if not kvm_usable():
            raise NoSupportError(
                f"domain {config.name!r} is <domain type='kvm'> but /dev/kvm is not usable"
                f" here; use <domain type='qemu'> to run it under TCG emulation, or open"
                f" qemu:///session?accel=tcg to emulate every guest of this host"
            )
        return "kvm"

    def vet(self, config: DomainConfig) -> tuple[DomainConfig, str, str]:
        """Check that this host may run `config`: the config to launch (image paths resolved
        on a confined host), its accelerator and its emulator binary.

        Called when a domain is defined, created, started or restored, and again at launch.
        Raises what `accel_for` raises, `AccessDeniedError` when the host is confined and
        `config` names an emulator, image file or QEMU argument outside what it allows
        (`virtjob.drivers.qemu.confine`), and `OperationFailedError` when the emulator is not
        installed.
        """
        accel = self.accel_for(config)
        checked, emulator = self.check_definition(config)
        return checked, accel, emulator or find_emulator(checked)

    def check_definition(self, config: DomainConfig) -> tuple[DomainConfig, str | None]:
        """What `vet` checks that does not depend on this machine's KVM and QEMU install: the
        domain type and, on a confined host, the confinement. Returns the config with image
        paths resolved (confined host) and the emulator the confinement picked, if any.

        Raises `InvalidArgError` for a test-driver domain, `AccessDeniedError` for one that
        reaches outside the confinement.
        """
        if config.domain_type == "test":
            self.accel_for(config)  # raises: only the test driver runs it
        confinement = self.confinement
        if confinement is None:
            return config, None
        return check_domain(config, confinement, shutil.which(DEFAULT_EMULATOR))

    # -- processes --------------------------------------------------------------------------

    def launch(
        self, config: DomainConfig, *, incoming: bool = False, pass_fds: tuple[int, ...] = ()
    ) -> QemuProcess:
        """Start a paused QEMU for `config` (not yet attached to any domain) and connect to it.

        On a confined host each disk image is opened here, race-free, its header checked, and
        handed to QEMU open (`virtjob.drivers.qemu.images`). Raises `NoSupportError`/
        `InvalidArgError` for a guest this host cannot run (`vet`) or a missing image,
        `AccessDeniedError` for one outside the host's confinement, `OperationFailedError`
        if QEMU fails to start.
        """
        checked, accel, emulator = self.vet(config)
        log_path = os.path.join(self.logs, f"{config.name}.log")
        confinement = self.confinement
        with contextlib.ExitStack() as stack:
            image_fds: dict[str, int] = {}
            if confinement is not None:  # QEMU gets each image open, never its path
                opened = stack.enter_context(open_images(checked, confinement))
                image_fds = {image.disk.target: image.fd for image in opened}
            return QemuProcess.launch(
                config.name,
                lambda monitor_fd: build_argv(
                    checked,
                    emulator=emulator,
                    accel=accel,
                    monitor_fd=monitor_fd,
                    incoming=incoming,
                    image_fds=image_fds,
                ),
                launcher=self.launcher,
                loop=self.loop,
                log_path=log_path,
                on_exit=self._exited,
                pass_fds=(*pass_fds, *image_fds.values()),
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
            for key, pending in list(self._force_offs.items()):
                if pending.process is process:  # off in time: nothing to force
                    pending.timer.cancel()
                    del self._force_offs[key]

    # -- forced power-off after a shutdown request ------------------------------------------

    def force_off_after(
        self, ref: DomainRef, process: QemuProcess, seconds: float, lock_key: str
    ) -> None:
        """Kill `process`, the QEMU of `ref`, if it still runs `seconds` from now; return at once.

        One timer per domain: a request whose deadline comes later than a pending one's keeps
        the earlier; an earlier one replaces it. The timer is cancelled when QEMU exits. When it
        fires, the host lock is held across the check that no job holds `lock_key` and the
        kill, so a job started meanwhile is never killed under it (it is left running, with a
        warning); a forced kill logs a warning on ``virtjob.qemu``.
        """
        deadline = time.monotonic() + seconds
        with self.lock:
            pending = self._force_offs.get(ref.uuid)
            if pending is not None:
                if pending.process is process and pending.deadline <= deadline:
                    return
                pending.timer.cancel()
            if process.ended.is_set():
                self._force_offs.pop(ref.uuid, None)
                return
            timer = threading.Timer(seconds, self._force_off, (ref, process, seconds, lock_key))
            timer.name = f"virtjob-shutdown-force-{ref.name}"
            timer.daemon = True
            self._force_offs[ref.uuid] = _ForceOff(process, deadline, timer)
            timer.start()

    def _force_off(self, ref: DomainRef, process: QemuProcess, seconds: float, key: str) -> None:
        with self.lock:
            pending = self._force_offs.get(ref.uuid)
            if pending is None or pending.timer is not threading.current_thread():
                return  # replaced by a sooner request, or QEMU exited
            del self._force_offs[ref.uuid]
            if process.ended.is_set():
                return
            holder = self.jobs.busy_with(key)
            if holder is not None:
                log.warning(
                    "domain %r did not power off within %g s of the shutdown request, but"
                    " %s job %s now runs on it: not forcing it off; cancel the job and shut"
                    " the domain down again, or destroy it",
                    ref.name,
                    seconds,
                    holder.kind,
                    holder.id,
                )
                return
            log.warning(
                "domain %r did not power off within %g s of the shutdown request;"
                " killing its QEMU (pid %d) as asked (force_after)",
                ref.name,
                seconds,
                process.pid,
            )
            process.send_kill(
                f"domain {ref.name!r} was forced off after it ignored a shutdown request"
            )

    def _detach(self, domain: QemuDomain, process: QemuProcess) -> None:
        domain.process = None
        domain.id = None
        domain.crashed = _crashed(process)
        if not domain.persistent:
            self.domains.pop(domain.config.uuid, None)

    def state(self, domain: QemuDomain) -> DomainState:
        """The domain's run state, asked of QEMU itself while it runs.

        A QEMU that is alive but does not answer (stopped by a signal, hung) runs no guest
        code: it is reported PAUSED, never CRASHED, and a warning is logged.
        """
        process = domain.process
        if process is None:
            return DomainState.CRASHED if domain.crashed else DomainState.SHUTOFF
        if process.stopped():
            log.warning(
                "QEMU of domain %r (pid %d) is stopped by a signal; reporting the domain paused",
                domain.config.name,
                process.pid,
            )
            return DomainState.PAUSED
        try:
            status = process.monitor.execute("query-status", timeout=STATE_TIMEOUT)
        except OperationFailedError:
            if not process.ended.wait(0.5):
                log.warning(
                    "QEMU of domain %r (pid %d) did not answer query-status within %g s;"
                    " reporting the domain paused (unresponsive)",
                    domain.config.name,
                    process.pid,
                    STATE_TIMEOUT,
                )
                return DomainState.PAUSED
            process.exited.wait(1.0)
            return DomainState.CRASHED if _crashed(process) else DomainState.SHUTOFF
        return _QEMU_STATES.get(str(status.get("status")), DomainState.NOSTATE)

    def running_process(self, ref: DomainRef, action: str) -> tuple[QemuDomain, QemuProcess]:
        """The domain and its live QEMU; `OperationInvalidError` if it is not running."""
        with self.lock:
            domain = self.domain(ref)
            process = domain.process
        if process is None or process.ended.is_set():
            raise objects.not_running(action, ref.name, "not running")
        return domain, process


def _read_definition(path: str) -> str:
    """The text of the stored definition at `path`, opened without following a symlink and
    without blocking on a FIFO. Raises `OSError` for anything but a regular file."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with open(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        os.set_blocking(fd, True)
        return file.read().decode("utf-8")


def _crashed(process: QemuProcess) -> bool:
    """Whether an ended QEMU crashed: virtjob did not end it (quit, kill) and it did not exit
    cleanly (status 0: the guest powered off, or QEMU quit on a guest's request)."""
    return not process.expected_exit and process.returncode != 0


_hosts: dict[str, QemuHost] = {}
_hosts_lock = threading.Lock()


def get_host(state_dir: str, accel: str | None, uri: str = "qemu:///session") -> QemuHost:
    """Return the process's host for `state_dir`, creating it on first use.

    `accel` is the ``?accel=`` of the connection `uri` (None: not given). Raises
    `InvalidArgError` when it contradicts the accelerator the open host was created with:
    every connection to the host shares its guests, so one cannot change it.
    """
    key = os.path.realpath(state_dir)
    with _hosts_lock:
        host = _hosts.get(key)
        if host is None:
            host = _hosts[key] = QemuHost(key, accel)
        elif accel is not None and accel != host.forced_accel:
            compatible = host.forced_accel is None and accel == "kvm" and kvm_usable()
            if not compatible:
                opened = (
                    f"accel={host.forced_accel}"
                    if host.forced_accel
                    else "no accel parameter (each guest runs as its <domain type> says)"
                )
                raise InvalidArgError(
                    f"{uri}: qemu:///session (state directory {key}) is already open in this"
                    f" process with {opened}; its connections share one host, its guests and"
                    f" its jobs, so accel={accel} cannot apply to it. Connect without accel,"
                    f" choose the accelerator per guest with <domain type='kvm'|'qemu'>, or"
                    f" use another state directory ($VIRTJOB_STATE_DIR)"
                )
        return host
