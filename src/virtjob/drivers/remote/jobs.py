"""`RemoteJobDriver`: the `JobDriver` protocol over virtjobd's job routes.

The same `virtjob.jobs.Job` class serves remote jobs: each of its calls becomes one request,
the route `virtjob.api.routes.JOB_ROUTES` lists under the method's name:

- `job_document`, `job_info`, `job_outcome`: ``GET /v1/jobs/{id}``, a `JobDocument`;
- `job_wait`: long polls (``GET /v1/jobs/{id}/wait?timeout=``) of at most `POLL` seconds each;
  one that comes back early with the job not final (a daemon or a proxy that does not hold
  it) is followed by a pause, doubled each time it happens again (`PAUSE_FIRST` to
  `PAUSE_MOST`), so the client never spins;
- `job_watch`: the server-sent-event stream ``GET /v1/jobs/{id}/events``, not a polling loop;
- `job_add_done_callback`: at once if the job is final, else a background thread long-polls
  and calls the callbacks once it is (one thread per job, whatever the number of callbacks);
- `job_cancel`, `job_destroy`: ``POST .../cancel``, ``DELETE``.

Results come back as `DomainRef`/`NetworkRef` (the public layer, `virtjob.job`, makes
Domain/Network objects of them); errors are rebuilt as the `VirtError` subclass their code names.
A document must be the one asked for: one with another job's id is an `InternalError` (never
kept, nor taken for the job's). A job id no job can have (see `keys`) is a `NoJobError` at once.

The end of a job, once this client has been handed it (by a long poll or a lookup), is kept
(the last `ENDS_KEPT` of them) and answers for the job if the daemon has since let it go
(``--retain-jobs``: the daemon keeps a job until a long poll has handed out its end, so
``dom.save()`` — a wait, then a look at the outcome — always finds it). A job this client
destroys is forgotten at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator

from virtjob.api.document import JobDocument, decode_info, decode_job
from virtjob.api.routes import API_PREFIX, JOB_ROUTES
from virtjob.errors import ConnectError, InternalError, JobTimeoutError, NoJobError, VirtError
from virtjob.jobs import Job, JobInfo, JobOutcome

from .keys import key_problem, shown
from .transport import EventStream, Transport

log = logging.getLogger("virtjob.remote")

POLL = 30.0
"""Longest single long poll, in seconds (the daemon allows up to 60)."""
PAUSE_FIRST = 0.05
"""Seconds `job_wait` pauses after a long poll that came back early, the job not final."""
PAUSE_MOST = 1.0
"""Longest such pause (each one after another early poll doubles, up to this)."""
RETRY = 1.0
"""Seconds a done-callback waiter pauses before retrying after a connection failure."""
ENDS_KEPT = 1024
"""Final job documents a driver remembers (see the module docs)."""
PATHS_KEPT = 1024
"""Request paths of jobs a driver keeps (all are dropped when that many are)."""


class RemoteJobDriver:
    """Forwards the `JobDriver` calls for jobs of one daemon host. Thread-safe."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        self._lock = threading.Lock()
        self._callbacks: dict[str, list[Callable[[], None]]] = {}
        self._ends: OrderedDict[str, JobDocument] = OrderedDict()
        self._paths: dict[tuple[str, str], str] = {}
        self._closed = threading.Event()

    def close(self) -> None:
        """Stop the background waiters (callbacks still pending are not called)."""
        self._closed.set()

    def _path(self, operation: str, job_id: str) -> str:
        """The path of `operation`'s route (a `JobDriver` method name) for job `job_id`;
        `NoJobError` if no job can have that id. Kept per operation and id: checking and
        escaping the id on every call took ~1 µs of the ~36 µs of client CPU a remote
        ``Job.info()`` takes."""
        key = (operation, job_id)
        path = self._paths.get(key)
        if path is None:
            problem = key_problem(job_id, "job id")
            if problem is not None:
                raise NoJobError(f"no job with id {shown(job_id)}: {problem}")
            path = API_PREFIX + JOB_ROUTES[operation].path_for(job_id=job_id)
            if len(self._paths) >= PATHS_KEPT:
                self._paths.clear()
            self._paths[key] = path
        return path

    def _checked(self, job_id: str, document: JobDocument, method: str, path: str) -> JobDocument:
        """`document`, if it is job `job_id`'s; else `InternalError` (the answer to `method`
        `path` was another job's: a confused daemon, or a stray answer)."""
        if document.id != job_id:
            raise self._wrong_job(job_id, document.id, method, path)
        return document

    def _wrong_job(self, job_id: str, other: object, method: str, path: str) -> InternalError:
        return InternalError(
            f"virtjobd at {self._transport.where} answered {method} {path} with the document"
            f" of job {shown(str(other))}, not of job {shown(job_id)}; the daemon is confused"
            f" or something else answers there: try again, and check its log"
        )

    def remember(self, document: JobDocument) -> JobDocument:
        """Keep `document` if it shows the job's end (a final document never changes)."""
        if document.info.state.terminal:
            with self._lock:
                self._ends[document.id] = document
                self._ends.move_to_end(document.id)
                while len(self._ends) > ENDS_KEPT:
                    self._ends.popitem(last=False)
        return document

    def _seen_end(self, job_id: str, missing: NoJobError) -> JobDocument:
        """The kept end of job `job_id`; raises `missing` (the daemon's answer) if none."""
        with self._lock:
            document = self._ends.get(job_id)
        if document is None:
            raise missing
        return document

    def handle(self, document: JobDocument) -> Job:
        """A `Job` handle, driven by this driver, on the job `document` describes."""
        return Job(self, document.id, document.kind, document.subject)

    # -- the JobDriver protocol ---------------------------------------------------------------

    def job_document(self, job_id: str) -> JobDocument:
        """The daemon's document of the job. `NoJobError` if unknown.

        A job the daemon has let go after this client saw its end answers with that end.
        """
        path = self._path("job_document", job_id)
        try:
            answer = self._transport.call("GET", path)
        except NoJobError as exc:
            return self._seen_end(job_id, exc)
        return self.remember(self._checked(job_id, decode_job(answer), "GET", path))

    def job_info(self, job_id: str) -> JobInfo:
        """A snapshot of the job's progress (the ``info`` of its document, decoded alone: this
        is the hot path of ``Job.info()``)."""
        path = self._path("job_info", job_id)
        try:
            answer = self._transport.call("GET", path)
        except NoJobError as exc:
            return self._seen_end(job_id, exc).info
        try:
            info = answer["info"]
            ident = answer["id"]
        except (KeyError, TypeError):
            return decode_job(answer).info  # raises the right malformed-document error
        if ident != job_id:
            raise self._wrong_job(job_id, ident, "GET", path)
        return decode_info(info)

    def job_cancel(self, job_id: str) -> None:
        """Ask the job to stop; returns at once."""
        path = self._path("job_cancel", job_id)
        answer = self._transport.call("POST", path)
        self.remember(self._checked(job_id, decode_job(answer), "POST", path))

    def job_wait(self, job_id: str, timeout: float | None) -> JobInfo:
        """Long-poll until the job is final; `JobTimeoutError` once `timeout` passes.

        A poll that comes back early with the job not final is followed by a pause (see the
        module docs); closing the driver cuts a pause short."""
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        path = self._path("job_wait", job_id)
        pause = 0.0
        while True:
            sent = time.monotonic()
            left = POLL if deadline is None else min(POLL, max(0.0, deadline - sent))
            try:
                answer = self._transport.call(
                    "GET", path, params={"timeout": round(left, 3)}, timeout=left + 10.0
                )
            except NoJobError as exc:
                return self._seen_end(job_id, exc).info
            document = self.remember(self._checked(job_id, decode_job(answer), "GET", path))
            if document.info.state.terminal:
                return document.info
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise JobTimeoutError(
                    f"job {job_id} ({document.kind} of {document.subject!r}) is still"
                    f" {document.info.state} after {timeout} s; it goes on: wait again or"
                    f" cancel it"
                )
            if now - sent >= left / 2:  # the daemon held the poll: ask again at once
                pause = 0.0
                continue
            pause = min(PAUSE_MOST, pause * 2 or PAUSE_FIRST)
            log.debug("the long poll of job %s came back early; pausing %.2f s", job_id, pause)
            self._closed.wait(pause if deadline is None else min(pause, deadline - now))

    def job_watch(self, job_id: str, interval: float) -> Iterator[JobInfo]:
        """Follow the job's event stream; `NoJobError` at once if it is unknown."""
        try:
            stream = self._transport.events(self._path("job_watch", job_id), {"interval": interval})
        except NoJobError as exc:
            return iter([self._seen_end(job_id, exc).info])
        return _Watch(job_id, stream)

    def job_outcome(self, job_id: str) -> JobOutcome | None:
        """How the job ended, or None while it runs."""
        return self.job_document(job_id).outcome

    def job_add_done_callback(self, job_id: str, fn: Callable[[], None]) -> None:
        """Call `fn()` once the job is final: now, in this thread, if it already is."""
        if self.job_document(job_id).info.state.terminal:
            fn()
            return
        with self._lock:
            pending = self._callbacks.get(job_id)
            if pending is not None:
                pending.append(fn)
                return
            self._callbacks[job_id] = [fn]
        threading.Thread(
            target=self._wait_then_call,
            args=(job_id,),
            name=f"virtjob-remote-wait-{job_id}",
            daemon=True,
        ).start()

    def _wait_then_call(self, job_id: str) -> None:
        while not self._closed.is_set():
            try:
                self.job_wait(job_id, None)
                break
            except NoJobError:
                break  # destroyed, so it had ended
            except VirtError as exc:
                if self._closed.is_set():
                    return  # the connection was closed under the long poll: nothing failed
                if isinstance(exc, ConnectError):
                    log.warning("waiting for job %s: %s; retrying", job_id, exc)
                    self._closed.wait(RETRY)
                    continue
                log.exception("waiting for job %s failed; its done callbacks are dropped", job_id)
                with self._lock:
                    self._callbacks.pop(job_id, None)
                return
        else:
            return
        with self._lock:
            callbacks = self._callbacks.pop(job_id, [])
        for fn in callbacks:
            try:
                fn()
            except Exception:
                log.exception("done callback of job %s raised", job_id)

    def job_destroy(self, job_id: str) -> None:
        """Forget a final job; `OperationInvalidError` while it runs.

        Raises `NoJobError` if the daemon no longer has it, even when this client saw its end.
        """
        with self._lock:
            self._ends.pop(job_id, None)
        self._transport.call("DELETE", self._path("job_destroy", job_id))


class _Watch:
    """The iterator `job_watch` returns: `JobInfo`s from the event stream, final one last."""

    def __init__(self, job_id: str, stream: EventStream) -> None:
        self._job_id = job_id
        self._stream: EventStream | None = stream

    def __iter__(self) -> _Watch:
        return self

    def __next__(self) -> JobInfo:
        stream = self._stream
        if stream is None:
            raise StopIteration
        try:
            data = next(stream)
        except StopIteration:
            if self._stream is None:  # closed by close(), from another thread
                raise
            self.close()
            raise ConnectError(
                f"the event stream of job {self._job_id} ended before the job did; the daemon"
                f" may have restarted: look the job up again"
            ) from None
        except BaseException:
            self.close()
            raise
        info = decode_info(data)
        if info.state.terminal:
            self.close()
        return info

    def close(self) -> None:
        """Stop following the job (closes the stream)."""
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()
