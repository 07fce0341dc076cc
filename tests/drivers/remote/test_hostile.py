"""What a hostile (or broken) server can do to the remote driver, on scripted servers.

Each answer is bounded before it costs memory or time: the head (size, header count), a JSON
body, each event of a stream, the whole answer's time; what cannot be decoded (nested too
deep, a redirect, malformed HTTP) is a virtjob error saying so, never a raw Python one; an
answer about another job than the one asked for is refused; a daemon that answers long polls
at once is not polled in a spin.
"""

from __future__ import annotations

import contextlib
import json
import threading

import pytest

from tests.daemon.conftest import SAFETY
from tests.drivers.remote.conftest import Serve, open_transport
from tests.drivers.remote.rawserver import Handler, Peer
from virtjob.api.document import JobDocument, encode_job
from virtjob.drivers.remote import transport as transport_module
from virtjob.drivers.remote.driver import RemoteDriver
from virtjob.drivers.remote.http11 import MAX_HEAD, MAX_HEADERS
from virtjob.drivers.remote.jobs import RemoteJobDriver
from virtjob.drivers.remote.transport import MAX_ANSWER, MAX_EVENT, Transport
from virtjob.errors import (
    ConnectError,
    InternalError,
    JobTimeoutError,
    NoJobError,
)
from virtjob.jobs import JobInfo, JobKind, JobState
from virtjob.uri import parse_uri

JOB_ID = "0123456789ab"


def document(job_id: str = JOB_ID, state: JobState = JobState.RUNNING) -> bytes:
    """A job document as virtjobd sends it."""
    final = state.terminal
    info = JobInfo(state, True, 1.0, 0.0 if final else 1.0, 50.0, 1, 2, False)
    built = JobDocument(job_id, "test:///default", JobKind.DOMAIN_DUMP_CORE, "test", info)
    return json.dumps(encode_job(built)).encode()


def info_event(state: JobState) -> bytes:
    """One server-sent event carrying a job's info."""
    info = json.loads(document(state=state))["info"]
    return b"data: " + json.dumps(info).encode() + b"\n\n"


def answering(answer: bytes) -> Handler:
    """A handler sending `answer` to every request, until the client closes."""

    def handler(peer: Peer) -> None:
        while peer.read_request() is not None:
            peer.send(answer)

    return handler


def chunk(data: bytes) -> bytes:
    """`data` as one chunk of a chunked body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


# -- the head ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\n" + (b"x-junk: " + b"a" * 1000 + b"\r\n") * (MAX_HEADERS - 1),
        b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * (4 * MAX_HEAD) + b"\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\n" * (MAX_HEAD // 10) + b"HTTP/1.1 200 OK\r\n",
        b"HTTP/1.1 200 OK\r\n" + b"x: 1\r\n" * (MAX_HEADERS + 1),
    ],
    ids=["many-lines", "one-long-line", "interim-answers", "too-many-headers"],
)
def test_an_answer_head_is_bounded(serve: Serve, transports: list[Transport], head: bytes) -> None:
    """A head over 64 KiB (header lines, one endless line, interim answers) or with more than
    100 headers is refused once the limit is reached, as malformed HTTP (sent once)."""
    closed: list[bool] = []

    def handler(peer: Peer) -> None:
        if peer.read_request() is not None:
            try:
                peer.send(head + b"content-length: 2\r\n\r\n{}")
                closed.append(peer.wait_closed())
            except ConnectionError:  # the client closed without reading it all
                closed.append(True)

    server = serve(handler)
    transport = open_transport(transports, server.uri())
    with pytest.raises(ConnectError, match="malformed HTTP") as caught:
        transport.call("GET", "/v1/x")
    assert "the most accepted" in caught.value.message
    assert "is virtjobd running" not in caught.value.message
    server.close()
    assert server.lines() == [b"GET /v1/x HTTP/1.1"], "not sent again"
    assert closed == [True]


# -- the body ------------------------------------------------------------------------------


def too_big(framing: str) -> bytes:
    """An answer whose body, a JSON string, is one byte longer than MAX_ANSWER."""
    body = b'"' + b"a" * (MAX_ANSWER - 1) + b'"'
    if framing == "length":
        return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
    if framing == "chunked":
        chunks = b"".join(chunk(body[i : i + 65536]) for i in range(0, len(body), 65536))
        return b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
    return b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n" + body


@pytest.mark.parametrize("framing", ["length", "chunked", "until-close"])
def test_a_json_answer_is_bounded(serve: Serve, transports: list[Transport], framing: str) -> None:
    """A body over MAX_ANSWER (16 MiB) is an InternalError naming the daemon and the limit,
    whatever its framing (a length is believed: the body is not read)."""
    answer = too_big(framing)

    def handler(peer: Peer) -> None:
        if peer.read_request() is not None:
            with contextlib.suppress(OSError):  # the client stopped reading: as it should
                peer.send(answer)
                peer.wait_closed()

    server = serve(handler)
    transport = open_transport(transports, server.uri())
    with pytest.raises(InternalError, match="with more than 16 MiB") as caught:
        transport.call("GET", "/v1/hosts/test/default/jobs")
    assert server.path in caught.value.message


def test_a_too_long_content_length_is_refused_before_the_body_is_read(
    serve: Serve, transports: list[Transport]
) -> None:
    """Waiting for the body would end in a ConnectError once this server gives up."""

    def handler(peer: Peer) -> None:
        if peer.read_request() is not None:
            peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n[" % (400 << 20))
            peer.wait_closed()  # the rest never comes: the client must not wait for it

    server = serve(handler)
    transport = open_transport(transports, server.uri())
    with pytest.raises(InternalError, match=f"is {400 << 20} bytes, more than"):
        transport.call("GET", "/v1/x")


def test_a_job_list_the_daemon_may_send_fits(serve: Serve, transports: list[Transport]) -> None:
    """The default --retain-jobs (1000) ended jobs, each with the longest target path, are
    far below the cap."""
    jobs = [json.loads(document(f"{n:012x}", JobState.SUCCEEDED)) for n in range(1000)]
    for job in jobs:
        job["subject"] = "s" * 64
        job["target"] = "/" + "t" * 4000
    body = json.dumps(jobs).encode()
    assert len(body) < MAX_ANSWER // 2
    server = serve(
        answering(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
    )
    transport = open_transport(transports, server.uri())
    assert len(transport.call("GET", "/v1/hosts/test/default/jobs")) == 1000


# -- what cannot be decoded ----------------------------------------------------------------

DEEP = b"[" * 100000 + b"]" * 100000


@pytest.mark.parametrize("status", ["200 OK", "404 Not Found", "500 Internal Server Error"])
def test_json_nested_too_deep_is_an_internal_error(
    serve: Serve, transports: list[Transport], status: str
) -> None:
    def handler(peer: Peer) -> None:
        while peer.read_request() is not None:
            peer.answer(status, DEEP, "content-type: application/json")

    server = serve(handler)
    transport = open_transport(transports, server.uri())
    with pytest.raises(InternalError, match=server.path):
        transport.call("GET", "/v1/x")


def test_a_redirect_is_an_internal_error(serve: Serve, transports: list[Transport]) -> None:
    def handler(peer: Peer) -> None:
        while peer.read_request() is not None:
            peer.answer("302 Found", b'{"id": "x"}', "location: /v1/y")

    server = serve(handler)
    transport = open_transport(transports, server.uri())
    with pytest.raises(InternalError, match="unexpected redirect") as caught:
        transport.call("GET", "/v1/x")
    assert server.path in caught.value.message
    assert "302" in caught.value.message
    assert server.lines() == [b"GET /v1/x HTTP/1.1"], "not followed"


# -- time ----------------------------------------------------------------------------------


def test_the_read_timeout_bounds_the_whole_answer(
    serve: Serve, transports: list[Transport]
) -> None:
    """An answer trickled byte by byte never lets one read time out: the timeout is a
    deadline for the whole answer."""
    stop = threading.Event()
    answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"

    def handler(peer: Peer) -> None:
        if peer.read_request() is None:
            return
        for byte in answer[:-1]:
            peer.send(bytes([byte]))
            if stop.wait(0.05):  # pacing the trickle, not synchronising
                return
        peer.send(answer[-1:])  # SAFETY is far off: the client gave up long before

    server = serve(handler)
    transport = open_transport(transports, server.uri())
    try:
        with pytest.raises(ConnectError, match="did not answer in time"):
            transport.call("GET", "/v1/x", timeout=0.3)
    finally:
        stop.set()


# -- event streams -------------------------------------------------------------------------

STREAM = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


def streaming(*pieces: bytes) -> Handler:
    """A handler answering an event stream made of `pieces` (each a chunk), then waiting
    (without a time limit) for the client to close."""

    def handler(peer: Peer) -> None:
        if peer.read_request() is None:
            return
        peer.send(STREAM)
        try:
            for piece in pieces:
                peer.send(chunk(piece))
        except OSError:
            return  # the client stopped reading
        peer.sock.settimeout(None)  # the server's close() at the end of the test wakes it
        peer.wait_closed()

    return handler


@pytest.mark.parametrize(
    "pieces",
    [
        [b"data: " + b'"' + b"a" * (2 * MAX_EVENT) + b'"\n\n'],
        [b"data: " + b"a" * 65536] * (2 * MAX_EVENT // 65536),
        [(b"data: " + b"1" * 1000 + b"\n") * 60] * 40,
        [b"data: " + DEEP + b"\n\n"],
    ],
    ids=["big-event", "endless-line", "endless-data-lines", "nested-too-deep"],
)
def test_an_event_is_bounded_and_decoded_safely(
    serve: Serve, transports: list[Transport], pieces: list[bytes]
) -> None:
    server = serve(streaming(*pieces))
    transport = open_transport(transports, server.uri())
    stream = transport.events("/v1/jobs/x/events", {"interval": 0.1})
    with pytest.raises(InternalError, match=server.path):
        next(stream)


def test_lines_end_with_lf_crlf_or_cr_across_pieces(
    serve: Serve, transports: list[Transport]
) -> None:
    pieces = [b": keep-alive\r", b'\n\r\ndata: {"n"', b": 1}\r", b"\r", b'data: {"n": 2}\n\n']
    server = serve(streaming(*pieces))
    transport = open_transport(transports, server.uri())
    stream = transport.events("/v1/jobs/x/events", {"interval": 0.1})
    assert [next(stream), next(stream)] == [{"n": 1}, {"n": 2}]


def test_an_answer_that_is_not_an_event_stream(serve: Serve, transports: list[Transport]) -> None:
    server = serve(answering(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"))
    transport = open_transport(transports, server.uri())
    with pytest.raises(InternalError, match="not an event stream"):
        transport.events("/v1/jobs/x/events", {"interval": 0.1})


@pytest.mark.parametrize("trickle", [False, True], ids=["silent", "trickling"])
def test_a_stream_without_events_or_keep_alives_times_out(
    serve: Serve, transports: list[Transport], monkeypatch: pytest.MonkeyPatch, trickle: bool
) -> None:
    """No event nor keep-alive for EVENT_TIMEOUT (45 s; 0.3 here): ConnectError saying so,
    even while bytes of an event that never ends keep coming."""
    monkeypatch.setattr(transport_module, "EVENT_TIMEOUT", 0.3)
    stop = threading.Event()

    def handler(peer: Peer) -> None:
        if peer.read_request() is None:
            return
        peer.send(STREAM + chunk(b": keep-alive\n\n") + chunk(b"data: "))
        while trickle and not stop.wait(0.05):  # pacing the trickle, not synchronising
            peer.send(chunk(b"1"))
        peer.wait_closed()

    server = serve(handler)
    transport = open_transport(transports, server.uri())
    stream = transport.events("/v1/jobs/x/events", {"interval": 0.1})
    try:
        with pytest.raises(ConnectError, match="no complete event and no keep-alive came"):
            next(stream)
    finally:
        stop.set()


def test_closing_a_watch_from_another_thread_wakes_its_reader(
    serve: Serve, transports: list[Transport]
) -> None:
    server = serve(streaming(info_event(JobState.RUNNING)))
    transport = open_transport(transports, server.uri())
    watch = RemoteJobDriver(transport).job_watch(JOB_ID, 0.1)
    first = threading.Event()
    seen: list[object] = []

    def reader() -> None:
        try:
            for info in watch:
                seen.append(info.state)
                first.set()
        except BaseException as exc:
            seen.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    assert first.wait(SAFETY)
    watch.close()  # type: ignore[attr-defined]
    thread.join(SAFETY)
    assert not thread.is_alive(), "the reader still sleeps on the closed stream"
    assert seen == [JobState.RUNNING], "the watch just ends"


# -- answers about another job -------------------------------------------------------------


def test_an_answer_about_another_job_is_refused_and_not_kept(
    serve: Serve, transports: list[Transport]
) -> None:
    other = document("ba9876543210", JobState.SUCCEEDED)
    missing = b'{"code": "no-job", "message": "no job"}'

    def handler(peer: Peer) -> None:
        while (request := peer.read_request()) is not None:
            if request.line.startswith(b"GET /v1/jobs/") and len(peer.server.requests) > 4:
                peer.answer("404 Not Found", missing)
            else:
                peer.answer("200 OK", other)

    server = serve(handler)
    transport = open_transport(transports, server.uri())
    jobs = RemoteJobDriver(transport)
    for call in (
        lambda: jobs.job_info(JOB_ID),
        lambda: jobs.job_document(JOB_ID),
        lambda: jobs.job_wait(JOB_ID, 1.0),
        lambda: jobs.job_cancel(JOB_ID),
    ):
        with pytest.raises(InternalError, match="'ba9876543210', not of job '0123456789ab'"):
            call()
    with pytest.raises(NoJobError):  # the other job's end was not kept as this one's
        jobs.job_document(JOB_ID)
    assert len(server.requests) == 5


# -- long polls ----------------------------------------------------------------------------


def test_long_polls_answered_at_once_are_paced(serve: Serve, transports: list[Transport]) -> None:
    """A daemon (or a proxy) that answers every long poll at once with the job running:
    Job.wait does not spin (at 50 ms, then doubling to 1 s, 1 s holds at most 6 polls)."""
    server = serve(answering(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (
        len(document()), document())))  # fmt: skip
    transport = open_transport(transports, server.uri())
    with pytest.raises(JobTimeoutError):
        RemoteJobDriver(transport).job_wait(JOB_ID, 1.0)
    polls = [line for line in server.lines() if b"/wait?" in line]
    assert 1 <= len(polls) <= 8


# -- listings --------------------------------------------------------------------------------


def test_a_job_this_client_cannot_read_is_left_out_of_the_list(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    """A newer daemon's job (a kind this version lacks) costs that job, not the whole list."""
    newer = json.loads(document("ba9876543210"))
    newer["kind"] = "domain-migrate"
    listing = json.dumps([json.loads(document()), newer]).encode()
    caps = {"driver": "test", "job_kinds": [], "networks": True, "hypervisor": "test"}
    host = json.dumps({"uri": "test:///default", "capabilities": caps}).encode()

    def handler(peer: Peer) -> None:
        while (request := peer.read_request()) is not None:
            peer.answer("200 OK", listing if b"/jobs" in request.line else host)

    server = serve(handler)
    driver = RemoteDriver(parse_uri(server.uri()))
    try:
        assert [job.id for job in driver.list_jobs()] == [JOB_ID]
    finally:
        driver.close()
    assert "a job left out" in caplog.text
    assert "domain-migrate" in caplog.text
