"""`Service`: one running virtjobd's state — store, hosted drivers, job recorder, path policy.

`Service.open` recovers after a previous run (interrupted jobs failed, partial files removed,
definitions replayed); `begin_shutdown` refuses new jobs and cancels the running ones;
`finish_shutdown` waits for them (bounded), records their end and closes everything.
"""

from __future__ import annotations

import fcntl
import logging
import os
from dataclasses import dataclass, field

from virtjob.errors import OperationInvalidError

from .hosts import Hosts
from .recorder import Recorder
from .security import PathPolicy
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
    shutdown_grace: float = 10.0
    max_body: int = 2 << 20


class Service:
    """The daemon's state, shared by every request handler."""

    def __init__(self, settings: Settings, store: Store, policy: PathPolicy) -> None:
        self.settings = settings
        self.store = store
        self.policy = policy
        self.hosts = Hosts(store, settings.max_hosts)
        self.recorder = Recorder(store, settings.retain_jobs)
        self.stopping = False
        self._lock_fd: int | None = None

    @classmethod
    def open(cls, settings: Settings) -> Service:
        """Open the state directory and recover from the previous run.

        With no ``--allow-dir``, clients may use ``STATE_DIR/files`` only (created 0700).
        Raises `InvalidArgError` for a bad allowed directory, `InternalError` if the database
        cannot be opened.
        """
        os.makedirs(settings.state_dir, mode=0o700, exist_ok=True)
        lock = _lock_state_dir(settings.state_dir)
        if not settings.allow_dirs:
            files = os.path.join(settings.state_dir, FILES_DIR)
            os.makedirs(files, mode=0o700, exist_ok=True)
            settings.allow_dirs = [files]
        policy = PathPolicy(settings.allow_dirs)
        store = Store(os.path.join(settings.state_dir, DB_NAME))
        service = cls(settings, store, policy)
        service._lock_fd = lock
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
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the state directory's lock
            self._lock_fd = None
        return not late


def _lock_state_dir(state_dir: str) -> int:
    """Take the state directory's exclusive lock, held for the daemon's life.

    Raises `OperationInvalidError` when another virtjobd holds it: two daemons on one state
    directory would each take the other's running jobs for interrupted ones.
    """
    path = os.path.join(state_dir, LOCK_NAME)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise OperationInvalidError(
            f"another virtjobd is using the state directory {state_dir}; stop it first or"
            f" give this one another --state-dir"
        ) from None
    return fd
