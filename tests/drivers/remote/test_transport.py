"""`Transport` (requests to one daemon) against scripted servers: what goes out, how answers
are read whatever way they are cut, which failures are sent again, and how each maps to a
virtjob error. The same paths against a real virtjobd are in test_remote_jobs.py."""

from __future__ import annotations

import json
import logging
import os
import ssl
import threading
from pathlib import Path

import pytest

from tests.daemon.conftest import SAFETY
from tests.drivers.remote.conftest import Serve, open_transport
from tests.drivers.remote.rawserver import Peer
from virtjob.drivers.remote.transport import Transport
from virtjob.errors import (
    AuthError,
    ConnectError,
    InternalError,
    InvalidArgError,
    NoDomainError,
    OperationInvalidError,
    VirtError,
    XMLError,
)
from virtjob.uri import parse_uri

OK = b'{"ok": true}'


def keep_answering(peer: Peer) -> None:
    """Answer every request with 200 and ``{"ok": true}`` until the client closes."""
    while peer.read_request() is not None:
        peer.answer("200 OK", OK, "content-type: application/json")


# -- what goes out ---------------------------------------------------------------------------


def test_requests_share_one_keep_alive_connection(
    serve: Serve, transports: list[Transport]
) -> None:
    server = serve(keep_answering)
    transport = open_transport(transports, server.uri())
    for _ in range(5):
        assert transport.call("GET", "/v1/ok") == {"ok": True}
    assert transport.call("DELETE", "/v1/thing") == {"ok": True}
    assert server.accepted == 1
    get, *_, delete = server.requests
    assert get.line == b"GET /v1/ok HTTP/1.1"
    assert get.headers[b"host"] == b"virtjobd"
    assert get.headers[b"accept"] == b"application/json"
    assert b"authorization" not in get.headers
    assert delete.headers[b"content-length"] == b"0"


def test_a_body_goes_as_json_with_its_length_and_parameters_in_the_query(
    serve: Serve, transports: list[Transport]
) -> None:
    server = serve(keep_answering)
    transport = open_transport(transports, server.uri())
    body = {"xml": "<domain>é</domain>", "n": 1}
    transport.call("POST", "/v1/hosts/test/x/domains", body=body, params={"rate": 5, "a": "b c"})
    (request,) = server.requests
    assert request.line == b"POST /v1/hosts/test/x/domains?rate=5&a=b+c HTTP/1.1"
    assert request.headers[b"content-type"] == b"application/json"
    assert int(request.headers[b"content-length"]) == len(request.body)
    assert json.loads(request.body) == body


def test_the_token_goes_with_every_request(
    serve: Serve, transports: list[Transport], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = serve(keep_answering)
    token_file = tmp_path / "token"
    token_file.write_text("from-the-file\n")
    transport = open_transport(transports, server.uri(token_file=str(token_file)))
    transport.call("GET", "/v1/ok")
    transport.call("POST", "/v1/ok", body={})
    monkeypatch.setenv("VIRTJOB_TOKEN", "from-the-environment")
    open_transport(transports, server.uri()).call("GET", "/v1/ok")
    tokens = [request.headers[b"authorization"] for request in server.requests]
    assert tokens == [b"Bearer from-the-file"] * 2 + [b"Bearer from-the-environment"]


@pytest.mark.parametrize("token", ["first\nsecond", "a\r\nx-injected: 1", "esc\x1b[2J"])
def test_a_token_that_is_not_one_line_is_refused(
    serve: Serve, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, token: str
) -> None:
    """A token with a line break would end the authorization header and start others (header
    injection): refused when read, naming where it came from; nothing is sent."""
    server = serve(keep_answering)
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    with pytest.raises(InvalidArgError, match=f"token_file {token_file} .* must be one line"):
        Transport(parse_uri(server.uri(token_file=str(token_file))))
    monkeypatch.setenv("VIRTJOB_TOKEN", token)
    with pytest.raises(InvalidArgError, match=r"\$VIRTJOB_TOKEN .* must be one line"):
        Transport(parse_uri(server.uri()))
    assert server.requests == []


def test_a_host_no_url_can_hold_is_an_invalid_argument(transports: list[Transport]) -> None:
    transport = open_transport(transports, "test+tcp://bad\0host:1/default")
    with pytest.raises(InvalidArgError, match="check the host and the parameters of test"):
        transport.call("GET", "/v1/version")


# -- how answers are read --------------------------------------------------------------------


def _chunked(payload: bytes, size: int) -> bytes:
    """`payload` as a chunked answer with chunks of `size` bytes."""
    pieces = [payload[i : i + size] for i in range(0, len(payload), size)]
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces)
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked"
    return head + b"\r\n\r\n" + chunks + b"0\r\n\r\n"


@pytest.mark.parametrize("cut", [1, 3, 7, 50])
@pytest.mark.parametrize("framing", ["chunked", "length"])
def test_an_answer_cut_anywhere_across_reads_is_read_whole(
    serve: Serve, transports: list[Transport], cut: int, framing: str
) -> None:
    """Head, chunk sizes, chunk data and CRLFs each split over separate reads."""
    payload = json.dumps({"info": {"state": "running", "percent": 12.5}, "pad": "x" * 40})
    if framing == "chunked":
        answer = _chunked(payload.encode(), 16)
    else:
        head = f"HTTP/1.1 200 OK\r\ncontent-length: {len(payload)}\r\n\r\n"
        answer = (head + payload).encode()

    def handler(peer: Peer) -> None:
        while peer.read_request() is not None:
            for start in range(0, len(answer), cut):
                peer.send_drained(answer[start : start + cut])

    server = serve(handler)
    transport = open_transport(transports, server.uri())
    assert transport.call("GET", "/v1/jobs/x") == json.loads(payload)
    assert transport.call("GET", "/v1/jobs/x") == json.loads(payload)
    assert server.accepted == 1, "the connection is kept after a complete answer"


def test_an_answer_that_ends_with_the_connection(serve: Serve, transports: list[Transport]) -> None:
    def handler(peer: Peer) -> None:
        if peer.read_request() is not None:
            peer.send_drained(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n")
            peer.send(OK)  # then closes: no length, no chunks, the close ends the body

    server = serve(handler)
    transport = open_transport(transports, server.uri())
    assert transport.call("POST", "/v1/x") == {"ok": True}
    assert transport.call("POST", "/v1/x") == {"ok": True}
    assert server.accepted == 2
    assert server.lines() == [b"POST /v1/x HTTP/1.1"] * 2


def test_connection_close_junk_and_interim_answers(
    serve: Serve, transports: list[Transport]
) -> None:
    """An answer saying ``connection: close`` or followed by junk is read, and its connection
    closed by the client, not reused; an interim 100 answer is skipped."""
    closed_by_client: list[bool] = []

    def handler(peer: Peer) -> None:
        request = peer.read_request()
        assert request is not None
        if peer.number == 1:
            peer.answer("200 OK", OK, "connection: close")
        elif peer.number == 2:
            peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n" + OK + b"JUNK")
        else:
            peer.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            peer.answer("200 OK", OK)
            keep_answering(peer)
            return
        closed_by_client.append(peer.wait_closed())

    server = serve(handler)
    transport = open_transport(transports, server.uri())
    for _ in range(4):
        assert transport.call("POST", "/v1/x") == {"ok": True}
    assert server.accepted == 3
    assert len(server.requests) == 4, "nothing was sent twice"
    transport.close()
    server.close()
    assert closed_by_client == [True, True]


def test_the_event_stream_is_read_as_events_arrive(
    serve: Serve, transports: list[Transport]
) -> None:
    """Events come in chunks split anywhere; each is handed out when complete; closing the
    stream closes its connection."""
    next_event = threading.Event()
    closed: list[bool] = []

    def handler(peer: Peer) -> None:
        request = peer.read_request()
        assert request is not None
        assert request.headers[b"accept"] == b"text/event-stream"
        assert request.line == b"GET /v1/jobs/x/events?interval=0.5 HTTP/1.1"
        peer.send_drained(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        for number in range(3):
            event = f': comment\nevent: info\ndata: {{"n": {number}}}\n\n'.encode()
            wire = b"%x\r\n%s\r\n" % (len(event), event)
            for start in range(0, len(wire), 5):
                peer.send_drained(wire[start : start + 5])
            assert next_event.wait(SAFETY)
            next_event.clear()
        closed.append(peer.wait_closed())

    server = serve(handler)
    transport = open_transport(transports, server.uri())
    stream = transport.events("/v1/jobs/x/events", {"interval": 0.5})
    for number in range(3):
        assert next(stream) == {"n": number}
        next_event.set()
    stream.close()
    server.close()
    assert closed == [True]


# -- failures: sent again or not, and how they are reported ------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_keep_alive_connection_closed_between_requests(
    serve: Serve, transports: list[Transport], method: str
) -> None:
    """The server answers one request per connection and closes it (without saying so): each
    next request still gets through, once."""

    def handler(peer: Peer) -> None:
        if peer.read_request() is not None:
            peer.answer("200 OK", OK)

    server = serve(handler)
    transport = open_transport(transports, server.uri())
    for _ in range(5):
        assert transport.call(method, "/v1/x") == {"ok": True}
    assert server.lines() == [f"{method} /v1/x HTTP/1.1".encode()] * 5


def test_a_request_lost_on_a_reused_connection_before_any_answer_is_sent_again(
    serve: Serve, transports: list[Transport]
) -> None:
    """A POST that went out on a reused connection which broke before any byte of an answer
    is the race with a server closing an idle connection: it is sent again, on a new one."""

    def handler(peer: Peer) -> None:
        if peer.number == 1:
            assert peer.read_request() is not None
            peer.answer("200 OK", OK)
            assert peer.read_request() is not None  # and closed: as if it was idle
        else:
            keep_answering(peer)

    server = serve(handler)
    transport = open_transport(transports, server.uri())
    assert transport.call("GET", "/v1/x") == {"ok": True}
    assert transport.call("POST", "/v1/start") == {"ok": True}
    assert server.lines() == [b"GET /v1/x HTTP/1.1"] + [b"POST /v1/start HTTP/1.1"] * 2
    assert server.accepted == 2


@pytest.mark.parametrize(
    "partial",
    [b"HTTP/1.1 20", b'HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\n{"ok'],
    ids=["in-the-head", "in-the-body"],
)
def test_a_connection_closed_mid_answer(
    serve: Serve, transports: list[Transport], partial: bytes
) -> None:
    """Closed after the answer began: a POST (the server may have acted) is not sent again;
    a GET is tried once more; both end as ConnectError naming the daemon."""

    def handler(peer: Peer) -> None:
        if peer.read_request() is not None:
            peer.send_drained(partial)

    server = serve(handler)
    transport = open_transport(transports, server.uri())
    with pytest.raises(ConnectError, match=f"virtjobd at unix socket {server.path} broke"):
        transport.call("POST", "/v1/start", body={"xml": "x"})
    assert server.lines() == [b"POST /v1/start HTTP/1.1"]
    with pytest.raises(ConnectError, match="in mid-answer"):
        transport.call("GET", "/v1/x")
    assert server.lines()[1:] == [b"GET /v1/x HTTP/1.1"] * 2


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_server_that_never_answers(
    serve: Serve, transports: list[Transport], method: str
) -> None:
    def handler(peer: Peer) -> None:
        if peer.read_request() is not None:
            peer.wait_closed()

    server = serve(handler)
    transport = open_transport(transports, server.uri())
    with pytest.raises(ConnectError, match="did not answer in time") as caught:
        transport.call(method, "/v1/jobs/x/wait", timeout=0.2)
    assert server.path in caught.value.message
    assert server.lines() == [f"{method} /v1/jobs/x/wait HTTP/1.1".encode()], "not sent again"


@pytest.mark.parametrize(
    "answer",
    [
        b"garbage\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: many\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: x\r\n\r\n",
    ],
    ids=["not-http", "bad-length", "bad-chunk", "upgrade"],
)
def test_malformed_http_is_a_connect_error(
    serve: Serve, transports: list[Transport], answer: bytes
) -> None:
    def handler(peer: Peer) -> None:
        if peer.read_request() is not None:
            peer.send(answer)
            peer.wait_closed()

    server = serve(handler)
    transport = open_transport(transports, server.uri())
    for method in ("POST", "GET"):
        with pytest.raises(ConnectError, match=f"at unix socket {server.path} is not") as caught:
            transport.call(method, "/v1/x")
        assert "answered with malformed HTTP" in caught.value.message
        assert "is virtjobd running" not in caught.value.message
    assert server.lines() == [b"POST /v1/x HTTP/1.1", b"GET /v1/x HTTP/1.1"], "sent once each"


@pytest.mark.parametrize(
    ("status", "body", "error", "words"),
    [
        ("401 Unauthorized", b'{"code":"auth-failed","message":"wrong token"}', AuthError,
         "^wrong token$"),
        ("401 Unauthorized", b"", AuthError, "authentication failed"),
        ("404 Not Found", b'{"code":"no-domain","message":"no domain \'x\'"}', NoDomainError,
         "no domain 'x'"),
        ("400 Bad Request",
         b'{"code":"xml-error","message":"bad","line":3,"column":4}', XMLError, "bad"),
        ("500 Internal Server Error", b"oops", InternalError, "HTTP 500 without an error body"),
        ("409 Conflict", b'{"message":"no code"}', InternalError, "without an error body"),
        ("200 OK", b"<html>", InternalError, "not JSON"),
    ],
)  # fmt: skip
def test_error_answers_become_virtjob_errors(
    serve: Serve,
    transports: list[Transport],
    status: str,
    body: bytes,
    error: type[VirtError],
    words: str,
) -> None:
    def handler(peer: Peer) -> None:
        while peer.read_request() is not None:
            peer.answer(status, body, "content-type: application/json")

    server = serve(handler)
    transport = open_transport(transports, server.uri())
    with pytest.raises(error, match=words) as caught:
        transport.call("GET", "/v1/x")
    if isinstance(caught.value, XMLError):
        assert (caught.value.line, caught.value.column) == (3, 4)
    with pytest.raises(error, match=words):
        transport.call("POST", "/v1/x")
    assert server.accepted == 1, "an error answer leaves the connection usable"


def test_an_unreachable_socket_names_it(tmp_path: Path, transports: list[Transport]) -> None:
    missing = str(tmp_path / "none.sock")
    transport = open_transport(transports, f"test+unix:///default?socket={missing}")
    with pytest.raises(ConnectError, match=f"cannot reach virtjobd at unix socket {missing}"):
        transport.call("GET", "/v1/version")
    with pytest.raises(ConnectError, match="is virtjobd running"):
        transport.call("POST", "/v1/version")


def test_close_wakes_a_call_that_waits_for_its_answer(
    serve: Serve, transports: list[Transport]
) -> None:
    received = threading.Event()

    def handler(peer: Peer) -> None:
        if peer.read_request() is not None:
            received.set()
            peer.wait_closed()

    server = serve(handler)
    transport = open_transport(transports, server.uri())
    raised: list[BaseException] = []

    def waiting() -> None:
        try:
            transport.call("GET", "/v1/jobs/x/wait")
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=waiting)
    thread.start()
    assert received.wait(SAFETY)
    transport.close()
    thread.join(SAFETY)
    assert not thread.is_alive()
    assert len(raised) == 1
    assert isinstance(raised[0], OperationInvalidError)
    assert "is closed" in str(raised[0])
    with pytest.raises(OperationInvalidError, match="is closed"):
        transport.call("GET", "/v1/x")


def test_threads_keep_a_connection_each(serve: Serve, transports: list[Transport]) -> None:
    server = serve(keep_answering)
    transport = open_transport(transports, server.uri())
    failures: list[BaseException] = []

    def client() -> None:
        try:
            for _ in range(50):
                assert transport.call("GET", "/v1/ok") == {"ok": True}
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(SAFETY)
    assert failures == []
    assert len(server.requests) == 200
    assert server.accepted <= 4


def test_each_request_is_logged_at_debug(
    serve: Serve, transports: list[Transport], caplog: pytest.LogCaptureFixture
) -> None:
    server = serve(keep_answering)
    transport = open_transport(transports, server.uri())
    with caplog.at_level(logging.DEBUG, logger="virtjob.remote.http"):
        transport.call("GET", "/v1/ok")
        transport.call("POST", "/v1/ok", params={"rate": 1})
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2
    assert messages[0].startswith("GET /v1/ok -> 200 in ")
    assert "on a new connection" in messages[0]
    assert messages[1].startswith("POST /v1/ok?rate=1 -> 200 in ")
    assert "on a reused connection" in messages[1]


# -- TLS ---------------------------------------------------------------------------------------


def test_tls_with_a_self_signed_certificate(
    serve: Serve, transports: list[Transport], certificate: tuple[str, str]
) -> None:
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = serve(keep_answering, tls=context)
    transport = open_transport(transports, server.uri(ca_file=cert))
    assert transport.where == f"https://127.0.0.1:{server.port}"
    assert transport.call("GET", "/v1/ok") == {"ok": True}
    assert transport.call("POST", "/v1/ok", body={"a": 1}) == {"ok": True}
    assert server.accepted == 1
    assert server.requests[0].headers[b"host"] == f"127.0.0.1:{server.port}".encode()
    unverified = open_transport(transports, server.uri())
    with pytest.raises(ConnectError, match=r"ca_file=/path/to/cert\.pem"):
        unverified.call("GET", "/v1/ok")


def test_an_unreadable_ca_file_is_an_invalid_argument(tmp_path: Path) -> None:
    missing = os.path.join(tmp_path, "missing.pem")
    with pytest.raises(InvalidArgError, match=f"cannot load ca_file {missing}"):
        Transport(parse_uri(f"test+tls://127.0.0.1:1/default?ca_file={missing}"))
