"""A Hypothesis state machine driving random start/cancel/release/wait/destroy/info sequences.

Each job runs a `Blocker` worker that the machine releases when it chooses. The machine keeps
a model of what each job may still do and checks, after every step:

- a job has one terminal state, and once seen it never changes (nor does its info);
- percent and elapsed never decrease between successive infos; states only move forward;
- a cancel leaves no job QUEUED; a cooperative job cancelled before release ends CANCELLED;
- every wait on a job the model says can finish succeeds within a bounded timeout
  (no deadlock); done callbacks run exactly once;
- after close, no job thread is left.
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass, field

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, rule

from tests.jobs.conftest import SAFETY, Blocker, job_threads, start
from virtjob.errors import JobTimeoutError, NoJobError, OperationFailedError, OperationInvalidError
from virtjob.jobs import Job, JobInfo, JobKind, JobState, LocalJobDriver


class Mode(enum.Enum):
    """How a job's worker behaves."""

    OBEY = "obey"  # honours cancels; succeeds once released
    IGNORE = "ignore"  # ignores cancels; succeeds once released
    FAIL = "fail"  # honours cancels; fails once released


_NORMAL = {
    Mode.OBEY: JobState.SUCCEEDED,
    Mode.IGNORE: JobState.SUCCEEDED,
    Mode.FAIL: JobState.FAILED,
}
_RANK = {JobState.QUEUED: 0, JobState.RUNNING: 1}


@dataclass(eq=False)
class Model:
    """What the machine knows about one job."""

    index: int
    mode: Mode
    job: Job
    blocker: Blocker
    expected: set[JobState]
    released: bool = False
    cancel_ran: bool = False  # a cancel found it running and the worker will see it
    destroyed: bool = False
    last: JobInfo | None = None
    callbacks: list[JobState | None] = field(default_factory=list)

    @property
    def honours_cancel(self) -> bool:
        return self.mode is not Mode.IGNORE

    @property
    def terminal(self) -> bool:
        return self.destroyed or (self.last is not None and self.last.state.terminal)

    def can_end_by_itself(self) -> bool:
        """True if, given a thread, the worker will end without further help from the test."""
        return self.terminal or self.released or (self.cancel_ran and self.honours_cancel)


class JobMachine(RuleBasedStateMachine):
    """Random operations on many jobs of one `LocalJobDriver`."""

    jobs = Bundle("jobs")

    def __init__(self) -> None:
        super().__init__()
        self.threads_before = job_threads()
        self.driver: LocalJobDriver | None = None
        self.max_jobs = 1
        self.models: list[Model] = []
        self.lock = threading.Lock()

    @initialize(
        target=jobs,
        max_jobs=st.integers(min_value=1, max_value=3),
        mode=st.sampled_from(Mode),
        kind=st.sampled_from(JobKind),
    )
    def open_driver(self, max_jobs: int, mode: Mode, kind: JobKind) -> Model:
        """Open a driver of 1-3 threads and start a first job, so every rule has a target."""
        self.max_jobs = max_jobs
        self.driver = LocalJobDriver(max_jobs)
        return self._start(mode, kind)

    # -- model -------------------------------------------------------------------------------

    def observe(self, model: Model, info: JobInfo) -> None:
        """Check `info` against everything seen before for this job, then remember it."""
        last = model.last
        if model.cancel_ran or (last is not None and last.cancel_requested):
            assert info.state is not JobState.QUEUED
        if info.state is JobState.QUEUED:
            assert (info.elapsed, info.remaining, info.percent) == (0.0, None, None)
        if last is not None:
            if last.state.terminal:
                assert info == last, f"job {model.index} changed after its end: {last} -> {info}"
            assert _RANK.get(info.state, 2) >= _RANK.get(last.state, 2)
            assert info.elapsed >= last.elapsed
            if last.percent is not None:
                assert info.percent is not None
                assert info.percent >= last.percent
            if last.cancel_requested:
                assert info.cancel_requested
        if info.state.terminal:
            assert info.state in model.expected, (
                f"job {model.index} ({model.mode}) ended {info.state}, expected {model.expected}"
            )
            model.expected = {info.state}
            assert info.remaining == 0.0
            if info.state is JobState.SUCCEEDED:
                assert info.percent == 100.0
        model.last = info

    def finishable(self, target: Model) -> bool:
        """True if `target` is sure to end without the test releasing anything more.

        Jobs ahead of it (FIFO) that cannot end hold threads; if `max_jobs` of them do, the
        target may never get one.
        """
        stuck_ahead = 0
        for model in self.models:
            ok = model.terminal or (model.can_end_by_itself() and stuck_ahead < self.max_jobs)
            if model is target:
                return ok
            if not ok:
                stuck_ahead += 1
        raise AssertionError("unknown job")

    # -- rules -------------------------------------------------------------------------------

    @rule(target=jobs, mode=st.sampled_from(Mode), kind=st.sampled_from(JobKind))
    def start_job(self, mode: Mode, kind: JobKind) -> Model:
        return self._start(mode, kind)

    def _start(self, mode: Mode, kind: JobKind) -> Model:
        """Start a job of `mode`, with a done callback, and record it in the model."""
        assert self.driver is not None
        blocker = Blocker(
            honour_cancel=mode is not Mode.IGNORE,
            result=len(self.models),
            error=OperationFailedError("failed on purpose") if mode is Mode.FAIL else None,
        )
        job = start(self.driver, blocker, kind=kind, subject=f"s{len(self.models)}")
        model = Model(len(self.models), mode, job, blocker, {_NORMAL[mode]})

        def done(j: Job) -> None:
            try:
                state: JobState | None = j.info().state
            except NoJobError:  # destroyed between its end and this callback
                state = None
            with self.lock:
                model.callbacks.append(state)

        job.add_done_callback(done)
        self.models.append(model)
        self.observe(model, job.info())
        return model

    @rule(model=jobs)
    def info(self, model: Model) -> None:
        if model.destroyed:
            try:
                model.job.info()
            except NoJobError:
                return
            raise AssertionError("info() of a destroyed job did not raise NoJobError")
        self.observe(model, model.job.info())

    @rule(model=jobs)
    def cancel(self, model: Model) -> None:
        if model.destroyed:
            try:
                model.job.cancel()
            except NoJobError:
                return
            raise AssertionError("cancel() of a destroyed job did not raise NoJobError")
        model.job.cancel()
        info = model.job.info()
        assert info.state is not JobState.QUEUED, "a queued job must be CANCELLED at once"
        if not info.state.terminal:
            # it was running when asked: a cooperative worker that has not been released
            # will end CANCELLED; a released one may go either way
            model.cancel_ran = True
            if model.honours_cancel:
                if model.released:
                    model.expected = model.expected | {JobState.CANCELLED}
                else:
                    model.expected = {JobState.CANCELLED}
        elif model.last is None or not model.last.state.terminal:
            model.expected = model.expected | {JobState.CANCELLED}
        self.observe(model, info)

    @rule(model=jobs)
    def release(self, model: Model) -> None:
        model.released = True
        model.blocker.release()

    @rule(model=jobs)
    def wait(self, model: Model) -> None:
        if model.destroyed:
            try:
                model.job.wait(SAFETY)
            except NoJobError:
                return
            raise AssertionError("wait() of a destroyed job did not raise NoJobError")
        if self.finishable(model):
            info = model.job.wait(SAFETY)  # must not time out: that would be a deadlock
            assert info.state.terminal
        else:
            try:
                info = model.job.wait(timeout=0)
            except JobTimeoutError:
                info = model.job.info()
                assert not info.state.terminal
        self.observe(model, info)

    @rule(model=jobs)
    def watch_finished(self, model: Model) -> None:
        if not model.terminal or model.destroyed:
            return
        infos = list(model.job.watch())
        assert len(infos) == 1
        self.observe(model, infos[0])

    @rule(model=jobs)
    def destroy(self, model: Model) -> None:
        if model.destroyed:
            try:
                model.job.destroy()
            except NoJobError:
                return
            raise AssertionError("destroy() of a destroyed job did not raise NoJobError")
        before = model.job.info()
        self.observe(model, before)
        try:
            model.job.destroy()
        except OperationInvalidError:
            assert not before.state.terminal
            return
        model.destroyed = True
        try:
            model.job.info()
        except NoJobError:
            return
        raise AssertionError("info() after destroy() did not raise NoJobError")

    # -- teardown ----------------------------------------------------------------------------

    def teardown(self) -> None:
        driver = self.driver
        if driver is None:
            return
        try:
            for model in self.models:
                model.released = True
                model.blocker.release()
            for model in self.models:  # all released: every job can end, in FIFO order
                if not model.destroyed:
                    self.observe(model, model.job.wait(SAFETY))
        finally:
            closed = driver.close(timeout=SAFETY)
        assert closed, "the driver did not close"
        leaked = job_threads() - self.threads_before
        assert not leaked, f"job threads left after close: {sorted(t.name for t in leaked)}"
        for model in self.models:
            assert len(model.callbacks) == 1, f"job {model.index}: callbacks {model.callbacks}"
            if not model.destroyed:
                final = model.job.info()
                self.observe(model, final)
                assert model.callbacks == [final.state]
            else:
                assert model.callbacks[0] in {None, *model.expected}


JobMachine.TestCase.settings = settings(
    max_examples=50,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_job_machine = JobMachine.TestCase
