"""The signals that interrupt following a job: SIGINT (Ctrl-C), SIGTERM and SIGHUP.

`SIGNALS` is the one `JobSignals` of the process: `virtjob.cli.jobrun` arms it while a
command follows a job, and the group (`virtjob.cli.main`) gives the handlers back at the end
of an in-process run.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING

from virtjob.jobs import JobInfo

if TYPE_CHECKING:
    from virtjob.cli.progress import Follower

_Handler = Callable[[int, FrameType | None], object] | int | signal.Handlers | None


class Interrupted(KeyboardInterrupt):
    """A signal that interrupts following a job: SIGINT (Ctrl-C), SIGTERM or SIGHUP."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def label(self) -> str:
        """``Ctrl-C``, ``SIGTERM`` or ``SIGHUP``."""
        return "Ctrl-C" if self.signum == signal.SIGINT else signal.Signals(self.signum).name


def label_of(exc: KeyboardInterrupt) -> str:
    """``Ctrl-C``, ``SIGTERM`` or ``SIGHUP``: what interrupted (Ctrl-C for a plain one)."""
    return exc.label if isinstance(exc, Interrupted) else "Ctrl-C"


class JobSignals:
    """The handlers of SIGINT, SIGTERM and SIGHUP while a command follows a job.

    `arm` installs them (in the main thread only, and not over a signal the process was
    started with ignored, as ``nohup`` or a background job does): each signal then raises
    `Interrupted` in the main thread, but only where that is safe: at once while it waits for
    the next snapshot in `wait` (a C-level queue), else at its next `wait` or `check`, so that
    the exception never lands inside a lock held by rich or the job driver.

    `disarm` (from any thread, the moment the job is seen to end) makes them ignore signals;
    `ignore` (from the main thread, once following is over) then sets them to SIG_IGN, which
    is how they stay until `restore` puts back the previous handlers. The ``virtjob`` process
    never restores them: it exits once it has reported the job, and SIG_IGN, unlike a Python
    handler, outlasts the interpreter's finalization.
    """

    NUMBERS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self._previous: dict[int, _Handler] = {}
        self._armed = False
        self._interruptible = False
        self._pending: list[int] = []

    def arm(self) -> None:
        """Make the signals raise `Interrupted` in the main thread."""
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in self.NUMBERS:
            if signum in self._previous:
                continue
            previous = signal.getsignal(signum)
            if previous == signal.SIG_IGN:
                continue
            self._previous[signum] = previous
            signal.signal(signum, self._handle)
        self._pending.clear()
        self._armed = True

    def wait(self, follower: Follower, timeout: float) -> JobInfo | None:
        """`follower.get(timeout)`, during which a signal raises `Interrupted` at once."""
        self.check()
        self._interruptible = True
        try:
            return follower.get(timeout)
        finally:
            self._interruptible = False

    def check(self) -> None:
        """Raise `Interrupted` for a signal that came while the main thread was busy."""
        if self._armed and self._pending:
            raise Interrupted(self._pending.pop(0))

    def disarm(self) -> None:
        """Ignore the signals from now on (safe from any thread: it only flips a flag)."""
        self._armed = False

    def ignore(self) -> None:
        """Set the signals `arm` took over to SIG_IGN (main thread only)."""
        self._armed = False
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in self._previous:
            signal.signal(signum, signal.SIG_IGN)

    def restore(self) -> None:
        """Put back the handlers `arm` replaced."""
        self._armed = False
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, previous in self._previous.items():
            signal.signal(signum, signal.SIG_DFL if previous is None else previous)
        self._previous.clear()

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if not self._armed:
            return
        if self._interruptible:
            self._interruptible = False
            raise Interrupted(signum)
        self._pending.append(signum)


SIGNALS = JobSignals()
