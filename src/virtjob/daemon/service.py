"""`Service`: one running virtjobd's state — store, hosted drivers, job recorder, path policy.

`Service.open` recovers after a previous run (interrupted jobs failed, partial files removed,
definitions replayed); `begin_shutdown` refuses new jobs and cancels the running ones;
`finish_shutdown` waits for them (bounded), records their end and closes everything.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
from dataclasses import dataclass, field

from virtjob.drivers.base import Confinement
from virtjob.errors import InvalidArgError, OperationInvalidError

from .hosts import Hosts
from .recorder import Recorder
from .security import PathPolicy, make_private_dir, resolve_private_dir
from .store import Store

log = logging.getLogger("virtjob.daemon")

DB_NAME = "virtjobd.sqlite3"
FILES_DIR = "files"
LOCK_NAME = "virtjobd.lock"


@dataclass
class Settings:
    """What virtjobd was told on its command line (see `virtjob.daemon.cli`)."""

    state_dir: str
    allow_dirs: list[str] = field(default_factory=list)
    token: str | None = None
    retain_jobs: int = 1000
    max_hosts: int = 32
    max_domains: int = 64
    """Domains one host may hold (defined, running, or being created or restored)."""
    max_networks: int = 64
    """Networks one host may hold (defined, active, or being created)."""
    shutdown_grace: float = 10.0
    max_body: int = 2 << 20
    allow_emulators: list[str] = field(default_factory=list)
    """Emulator binaries a domain's XML may name besides the driver's default."""
    allow_qemu_args: bool = False
    """Whether domain XML may carry ``<qemu:commandline>`` extra arguments."""
    socket_path: str | None = None
    """The unix socket the daemon listens on (never a valid file target), if any."""
    header_timeout: float = 10.0
    """Seconds a client has to send a whole request (line, headers, body)."""
    max_connections: int = 1000
    """Connections served at once; more are answered 503 and closed."""
    host_params: dict[str, dict[str, str]] = field(default_factory=dict)
    """The operator's URI parameters for each driver's hosts (``--qemu-accel tcg``:
    ``{"qemu": {"accel": "tcg"}}``); clients may not give them."""


class Service:
    """The daemon's state, shared by every request handler."""

    def __init__(self, settings: Settings, store: Store, policy: PathPolicy) -> None:
        self.settings = settings
        self.store = store
        self.policy = policy
        self.confinement = Confinement(
            dirs=policy.dirs,
            excluded=policy.excluded,
            emulators=tuple(settings.allow_emulators),
            qemu_args=settings.allow_qemu_args,
        )
        self.hosts = Hosts(
            store,
            settings.max_hosts,
            self.confinement,
            max_domains=settings.max_domains,
            max_networks=settings.max_networks,
            host_params=settings.host_params,
            state_dir=settings.state_dir,
        )
        self.recorder = Recorder(store, settings.retain_jobs)
        self.stopping = False
        self._lock_fds: tuple[int, ...] = ()

    @classmethod
    def open(cls, settings: Settings) -> Service:
        """Open the state directory and recover from the previous run.

        The state directory (created 0700 if missing) and the unix socket's directory are
        resolved once (`resolve_private_dir`): `settings.state_dir` and `settings.socket_path`
        are replaced by the real paths, used from then on for the lock, the database, the
        excluded paths and the socket, and handed to the hosted drivers that keep files (the
        QEMU driver); the environment is neither read nor changed. With no ``--allow-dir``,
        clients may use ``STATE_DIR/files`` only (created 0700); the state directory (and
        the unix socket) are never valid targets. Raises `InvalidArgError` for a state or
        socket directory another user could change or redirect, or a bad allowed directory;
        `OperationInvalidError` when another virtjobd uses the state directory;
        `InternalError` if the database cannot be opened.
        """
        state_dir = make_private_dir(settings.state_dir, "state directory")
        settings.state_dir = state_dir
        if settings.socket_path is not None:
            socket_dir, name = os.path.split(settings.socket_path)
            if os.path.isdir(socket_dir):  # else listening says so
                real = resolve_private_dir(socket_dir, "socket directory", sticky_ok=True)
                settings.socket_path = os.path.join(real, name)
        locks = _lock_state_dir(state_dir)
        try:
            files = os.path.join(state_dir, FILES_DIR)
            if not settings.allow_dirs:
                os.makedirs(files, mode=0o700, exist_ok=True)
                settings.allow_dirs = [files]
            excluded = (state_dir,) + ((settings.socket_path,) if settings.socket_path else ())
            policy = PathPolicy(settings.allow_dirs, excluded, carve_outs=(files,))
            store = Store(os.path.join(state_dir, DB_NAME))
        except BaseException:
            for fd in locks:
                os.close(fd)
            raise
        service = cls(settings, store, policy)
        service._lock_fds = locks
        service.recorder.recover()
        service.hosts.preload()
        return service

    def check_accepting(self) -> None:
        """Raise `OperationInvalidError` once shutdown has begun (no new jobs then)."""
        if self.stopping:
            raise OperationInvalidError(
                "virtjobd is shutting down and starts no new jobs; retry once it is back"
            )

    def begin_shutdown(self) -> int:
        """Refuse new jobs and ask every running one to stop; return how many were asked."""
        self.stopping = True
        count = self.recorder.cancel_all()
        if count:
            log.info("shutting down: cancelled %d running job(s)", count)
        return count

    def finish_shutdown(self) -> bool:
        """Wait (up to the grace period) for the jobs to end, then close everything.

        Returns True if every job ended in time (and its final state is recorded).
        """
        self.stopping = True
        self.recorder.cancel_all()
        late = self.recorder.wait_all(self.settings.shutdown_grace)
        for tracked in late:
            log.error(
                "job %s (%s of %r) did not stop within %.0f s; the next start marks it interrupted",
                tracked.job.id,
                tracked.job.kind,
                tracked.job.subject,
                self.settings.shutdown_grace,
            )
        self.recorder.attach_loop(None)
        self.hosts.close()
        self.recorder.close()
        self.store.close()
        for fd in self._lock_fds:
            os.close(fd)  # releases the state directory's locks
        self._lock_fds = ()
        return not late


def _lock_state_dir(state_dir: str) -> tuple[int, ...]:
    """Take the state directory's exclusive locks, held for the daemon's life.

    The lock is on the directory itself (its inode, whatever path names it), which no file
    operation inside it can replace; the lock file ``virtjobd.lock`` is locked too, for
    daemons of earlier versions that lock only the file, and records the holder's pid.
    Raises `OperationInvalidError` when another virtjobd holds either: two daemons on one
    state directory would each take the other's running jobs for interrupted ones.
    """
    fds: list[int] = []
    try:
        fds.append(os.open(state_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
        path = os.path.join(state_dir, LOCK_NAME)
        fds.append(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600))
        for fd in fds:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        for fd in fds:
            os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise OperationInvalidError(
                f"another virtjobd is using the state directory {state_dir}; stop it first or"
                f" give this one another --state-dir"
            ) from exc
        raise InvalidArgError(
            f"cannot lock the state directory {state_dir}: {exc.strerror}; check that it is"
            f" a directory of yours and that {LOCK_NAME} in it is a regular file"
        ) from exc
    os.ftruncate(fds[1], 0)
    os.pwrite(fds[1], f"{os.getpid()}\n".encode(), 0)
    return tuple(fds)
