"""Random interleavings of operations and cancels never make the host disagree with a model.

The model holds, for each of a few domains, what the last *successful* operation left: absent,
or defined/transient and running/paused/shut off. Each rule predicts from the model whether
the operation is allowed, checks the host agrees (an accepted call, or the refusal's error
class), and updates the model from what really happened: a job that SUCCEEDED changes it, a
CANCELLED one leaves it alone (FAILED never happens here: nothing can go wrong on disk). After
every step the host's real states must match the model.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import virtjob
from tests.drivers.test.helpers import cancel_at
from virtjob import DomainState, JobState

NAMES = ("a", "b", "c")
UUIDS = {
    "a": "a0000000-0000-4000-8000-00000000000a",
    "b": "b0000000-0000-4000-8000-00000000000b",
    "c": "c0000000-0000-4000-8000-00000000000c",
}
MEMORY_MIB = 32
RATE = 256 << 20
"""A save or restore of a 32 MiB domain takes three 50 ms ticks: quick, yet cancellable."""

_hosts = itertools.count(1)

names = st.sampled_from(NAMES)
cancels = st.sampled_from([None, None, 0.0, 40.0, 70.0])
"""No cancel (twice as likely), or cancel once the job reports that percent."""


def document(name: str) -> str:
    """The definition of model domain `name` (fixed UUID, so it can be redefined)."""
    return (
        f"<domain type='test'><name>{name}</name><uuid>{UUIDS[name]}</uuid>"
        f"<memory unit='MiB'>{MEMORY_MIB}</memory><os><type>hvm</type></os></domain>"
    )


@dataclass
class Expected:
    """What the model says about one existing domain."""

    persistent: bool
    state: DomainState

    @property
    def active(self) -> bool:
        """True when the domain should be running or paused."""
        return self.state is not DomainState.SHUTOFF


class DomainModel(RuleBasedStateMachine):
    """Operations and cancels on domains a, b, c of a fresh host, checked against a model."""

    def __init__(self) -> None:
        super().__init__()
        self.conn = virtjob.open(f"test:///prop{next(_hosts)}?rate={RATE}")
        self.dir = Path(tempfile.mkdtemp(prefix="virtjob-prop-"))
        self.files = itertools.count(1)
        # a runs, b is defined and shut off, c is absent (its handle made while defined)
        self.handles = {name: self.conn.define_domain(document(name)) for name in NAMES}
        self.handles["a"].start()
        self.handles["c"].undefine()
        self.model: dict[str, Expected | None] = {
            "a": Expected(persistent=True, state=DomainState.RUNNING),
            "b": Expected(persistent=True, state=DomainState.SHUTOFF),
            "c": None,
        }
        self.saved: dict[str, Path | None] = dict.fromkeys(NAMES)

    def teardown(self) -> None:
        """Stop whatever still runs, close the connection, remove the files."""
        for job in self.conn.list_jobs():
            job.cancel()
            job.wait(timeout=10)
        self.conn.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- helpers ------------------------------------------------------------------------------

    def attempt(self, name: str, allowed: bool, call: Callable[[], object]) -> bool:
        """Run `call`; when the model says it is not allowed, expect the right refusal.

        A domain the model says is absent must raise NoDomainError; one that exists but is in
        the wrong state, OperationInvalidError. Returns whether the call was accepted.
        """
        if allowed:
            call()
            return True
        error = virtjob.NoDomainError if self.model[name] is None else virtjob.OperationInvalidError
        with pytest.raises(error):
            call()
        return False

    def finish(self, job: virtjob.Job, cancel: float | None) -> JobState:
        """Let `job` run (cancelling it at `cancel` percent) and return how it ended."""
        info = job.wait(timeout=10) if cancel is None else cancel_at(job, cancel)
        event(f"{job.kind} {info.state}")
        assert info.state is not JobState.FAILED, job.error()
        if cancel is None:
            assert info.state is JobState.SUCCEEDED
        job.destroy()
        return info.state

    def in_state(self, name: str, *states: DomainState) -> bool:
        """True when the model has domain `name` in one of `states`."""
        entry = self.model[name]
        return entry is not None and entry.state in states

    # -- rules --------------------------------------------------------------------------------

    @rule(name=names)
    def define(self, name: str) -> None:
        """define_domain always succeeds here (no job runs between steps)."""
        self.conn.define_domain(document(name))
        entry = self.model[name]
        if entry is None:
            self.model[name] = Expected(persistent=True, state=DomainState.SHUTOFF)
        else:
            entry.persistent = True

    @rule(name=names)
    def undefine(self, name: str) -> None:
        """undefine needs a persistent domain; a running one becomes transient."""
        entry = self.model[name]
        if self.attempt(name, entry is not None and entry.persistent, self.handles[name].undefine):
            assert entry is not None
            if entry.active:
                entry.persistent = False
            else:
                self.model[name] = None

    @rule(name=names, cancel=cancels)
    def start(self, name: str, cancel: float | None) -> None:
        """start_job needs a shut-off domain; success makes it run."""
        job: list[virtjob.Job] = []
        allowed = self.in_state(name, DomainState.SHUTOFF)
        accepted = self.attempt(name, allowed, lambda: job.append(self.handles[name].start_job()))
        if accepted and self.finish(job[0], cancel) is JobState.SUCCEEDED:
            entry = self.model[name]
            assert entry is not None
            entry.state = DomainState.RUNNING

    @rule(name=names)
    def destroy(self, name: str) -> None:
        """destroy needs an active domain; a transient one disappears."""
        allowed = self.in_state(name, DomainState.RUNNING, DomainState.PAUSED)
        if self.attempt(name, allowed, self.handles[name].destroy):
            self.stopped(name)

    @rule(name=names)
    def shutdown(self, name: str) -> None:
        """shutdown needs a running (not paused) domain; a transient one disappears."""
        allowed = self.in_state(name, DomainState.RUNNING)
        if self.attempt(name, allowed, self.handles[name].shutdown):
            self.stopped(name)

    def stopped(self, name: str) -> None:
        """Record that `name` stopped: shut off, or gone if it was transient."""
        entry = self.model[name]
        assert entry is not None
        if entry.persistent:
            entry.state = DomainState.SHUTOFF
        else:
            self.model[name] = None

    @rule(name=names)
    def suspend(self, name: str) -> None:
        """suspend needs a running domain."""
        if self.attempt(name, self.in_state(name, DomainState.RUNNING), self.handles[name].suspend):
            entry = self.model[name]
            assert entry is not None
            entry.state = DomainState.PAUSED

    @rule(name=names)
    def resume(self, name: str) -> None:
        """resume needs a paused domain."""
        if self.attempt(name, self.in_state(name, DomainState.PAUSED), self.handles[name].resume):
            entry = self.model[name]
            assert entry is not None
            entry.state = DomainState.RUNNING

    @rule(name=names, cancel=cancels)
    def save(self, name: str, cancel: float | None) -> None:
        """save_job needs an active domain; success stops it and leaves a file, a cancel
        leaves no file and the domain as it was."""
        path = self.dir / f"{name}-{next(self.files)}.save"
        job: list[virtjob.Job] = []
        allowed = self.in_state(name, DomainState.RUNNING, DomainState.PAUSED)

        def call() -> None:
            job.append(self.handles[name].save_job(str(path)))

        if not self.attempt(name, allowed, call):
            assert not path.exists()
            return
        if self.finish(job[0], cancel) is JobState.SUCCEEDED:
            assert path.is_file()
            self.saved[name] = path
            self.stopped(name)
        else:
            assert not path.exists()

    @rule(name=names, cancel=cancels)
    def dump(self, name: str, cancel: float | None) -> None:
        """dump_core_job needs an active domain and never changes its state."""
        path = self.dir / f"{name}-{next(self.files)}.core"
        job: list[virtjob.Job] = []
        allowed = self.in_state(name, DomainState.RUNNING, DomainState.PAUSED)

        def call() -> None:
            job.append(self.handles[name].dump_core_job(str(path)))

        if not self.attempt(name, allowed, call):
            assert not path.exists()
            return
        state = self.finish(job[0], cancel)
        assert path.is_file() is (state is JobState.SUCCEEDED)

    @rule(name=names, cancel=cancels)
    def restore(self, name: str, cancel: float | None) -> None:
        """restore_job of the domain's last save needs it absent or shut off; success makes it
        run (transient if it was absent); a cancel leaves it as it was."""
        path = self.saved[name]
        if path is None:
            with pytest.raises(virtjob.InvalidArgError):
                self.conn.restore_job(str(self.dir / f"{name}-never.save"))
            return
        entry = self.model[name]
        job: list[virtjob.Job] = []

        def call() -> None:
            job.append(self.conn.restore_job(str(path)))

        if entry is None or not entry.active:
            call()
        else:
            with pytest.raises(virtjob.OperationInvalidError):
                call()
            return
        if self.finish(job[0], cancel) is JobState.SUCCEEDED:
            if entry is None:
                self.model[name] = Expected(persistent=False, state=DomainState.RUNNING)
            else:
                entry.state = DomainState.RUNNING
        assert path.is_file()

    # -- the check after every step -------------------------------------------------------------

    @invariant()
    def host_matches_model(self) -> None:
        """Each domain's real state, persistence and id agree with the model; nothing else is
        left behind: no job records, no partial files."""
        present = {d.name for d in self.conn.list_domains()}
        expected_present = {name for name, entry in self.model.items() if entry is not None}
        assert present == expected_present | {"test"}
        for name, entry in self.model.items():
            if entry is None:
                with pytest.raises(virtjob.NoDomainError):
                    self.handles[name].info()
                continue
            info = self.handles[name].info()
            assert (info.state, info.persistent) == (entry.state, entry.persistent), name
            assert (info.id is None) is (entry.state is DomainState.SHUTOFF)
        assert self.conn.list_jobs() == []
        assert [f for f in os.listdir(self.dir) if f.startswith(".")] == []


DomainModel.TestCase.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)
TestDomainModel = DomainModel.TestCase
