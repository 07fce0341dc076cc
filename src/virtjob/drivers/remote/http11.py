"""`HTTP11Transport`: keep-alive HTTP/1.1 to one server over plain sockets, as an httpx transport.

Why it exists: a remote ``Job.info()`` is one small GET, and with httpx's stock transport the
client spent three times the daemon's own time on it. Measured on a 2-core machine against
virtjobd on a unix socket (µs per GET /v1/jobs/{id}, the daemon's work included): a raw socket
59; httpcore's ``ConnectionPool`` alone 175; ``httpx.HTTPTransport.handle_request`` 214;
``httpx.Client.get`` 283. Most of the difference is h11, httpcore's pure-Python HTTP/1.1
parser, which no tuning of the stock transport removes. This one parses answers with httptools
(the C llhttp parser uvicorn uses): a whole remote ``Job.info()`` now costs the client ~40 µs
of CPU, ~10 of them here (see ``daemon.info_1`` and ``daemon.info_8`` in bench/daemon.py, and
docs/daemon.md, Performance).

It implements `httpx.BaseTransport`, so its user sees only httpx's `Request`, `Response` and
exception classes (`httpx.ConnectError`, `ConnectTimeout`, `ReadTimeout`, `WriteTimeout`,
`ReadError`, `WriteError`, `RemoteProtocolError`); it could be handed to `httpx.Client` as
well. What it supports is what virtjobd needs, and no more:

- one server per transport, over a unix socket, TCP or TLS (an `ssl.SSLContext`): the
  request's path and query are sent, its scheme, host and port are not looked at;
- HTTP/1.1 only, keep-alive; answers with a Content-Length, chunked, or ending with the
  connection; interim 1xx answers are skipped; no HEAD requests (the parser would wait for a
  body), no upgrades;
- no proxies, redirects, cookies, authentication or compression (the daemon never uses them;
  the caller sends its own headers, ``authorization`` included);
- the timeouts of the request's ``timeout`` extension (``connect``, ``read``, ``write``; as
  httpx sets it; None means wait forever), else those the transport was made with. The read
  timeout bounds the whole answer, head and body, from the moment the request is sent (not
  each read: a server trickling bytes cannot stretch it); the reader of a streamed body may
  move that deadline (`Body.deadline`: an event stream gives each event its own);
- streamed answers (server-sent events): the body is read as the caller iterates it; an
  answer already complete when its head arrives (the common case) gives its connection back
  to the pool at once; closing an answer not read to its end shuts its connection down (a
  thread blocked reading it wakes) and closes it; `Body.read` reads a body whole, up to a
  limit (`BodyTooLarge` beyond it, before the rest is read);
- answers are checked before they cost memory: a head (status line, headers and any interim
  1xx answers before it) of at most `MAX_HEAD` bytes and `MAX_HEADERS` headers, else
  `MalformedAnswerError` (a `httpx.RemoteProtocolError`), as for anything llhttp cannot parse;
- the request's head is checked as it is written: a header name or value holding CR, LF or
  NUL (which would inject header lines) raises `httpx.LocalProtocolError`, and nothing is sent;
- a pool of idle connections, at most `max_idle` (one per client thread is what matters) and
  each for at most `keepalive_expiry` seconds; an idle connection the server has closed (it
  is readable) is dropped before use. Connections in use are not limited: a long poll or an
  event stream holds its own. `close()` also shuts down the connections in use, so a thread
  blocked on one wakes with an error.

The transport never sends a request twice: the caller decides. For that it may pass an
`Attempt` as the request's ``virtjob.attempt`` extension, which the transport fills in: did the
request go out on a connection that had carried an earlier exchange (``reused``), did any
byte of the answer come back (``answered``). A connection that closes before or in the middle
of an answer raises `httpx.RemoteProtocolError` (worth a retry); an answer that is not HTTP,
or too big to be a sane one, raises its subclass `MalformedAnswerError` (the same server
would answer the same way again: not worth one).

Each request is logged at DEBUG on ``virtjob.remote.http`` (method, target, status, time,
new or reused connection), checked once per request so that it costs nothing when disabled.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import ssl
import threading
import time
from collections.abc import Iterator

import httptools
import httpx

log = logging.getLogger("virtjob.remote.http")

ATTEMPT = "virtjob.attempt"
"""The request extension that carries an `Attempt` for the transport to fill in."""
RECV_SIZE = 65536
"""Bytes asked of the socket per read."""
MAX_HEAD = 65536
"""Most bytes an answer's head may take (with the interim 1xx answers before it)."""
MAX_HEADERS = 100
"""Most header lines an answer may have."""
_READABLE = select.POLLIN | select.POLLHUP | select.POLLERR


class MalformedAnswerError(httpx.RemoteProtocolError):
    """The server's answer is not HTTP/1.1 as this transport reads it: unparsable, a
    protocol switch, or a head over `MAX_HEAD` bytes or `MAX_HEADERS` headers. The
    connection is closed; sending the request again would get the same answer."""


class BodyTooLarge(Exception):
    """`Body.read` met a body longer than its limit (the connection is closed)."""

    def __init__(self, limit: int, length: int | None) -> None:
        super().__init__(
            f"the answer's body is {'longer' if length is None else f'{length} bytes'},"
            f" more than the {limit} bytes allowed"
        )
        self.limit = limit
        self.length = length


class Attempt:
    """What became of one request, filled in by the transport as it goes.

    ``reused``: it went out on a kept-alive connection that had carried an earlier exchange;
    ``answered``: at least one byte of an answer came back.
    """

    __slots__ = ("answered", "reused")

    def __init__(self) -> None:
        self.reused = False
        self.answered = False

    @property
    def stale(self) -> bool:
        """True if it went out on a reused connection that broke before any answer (one the
        server had closed while it was idle in the pool)."""
        return self.reused and not self.answered


class _Connection:
    """One socket, its llhttp parser, and the state of the answer being read.

    The parser calls the ``on_*`` methods; the state is reset by `begin` for each exchange.
    """

    __slots__ = (
        "answered",
        "chunks",
        "complete",
        "head_size",
        "headers",
        "headers_done",
        "idle_since",
        "keep_alive",
        "parser",
        "poller",
        "reads",
        "reused",
        "sock",
        "status",
        "timeout",
        "too_many_headers",
    )

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.parser = httptools.HttpResponseParser(self)
        self.poller = select.poll()
        self.poller.register(sock, _READABLE)
        self.timeout: float | None = sock.gettimeout()
        self.reused = False
        self.idle_since = 0.0
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.answered = False
        self.headers_done = False
        self.complete = False
        self.keep_alive = False
        self.reads = 0
        self.head_size = 0
        self.too_many_headers = False

    def begin(self) -> None:
        """Get ready to read the answer of a new request."""
        self.headers = []
        self.chunks = []
        self.answered = False
        self.headers_done = False
        self.complete = False
        self.keep_alive = False
        self.reads = 0
        self.head_size = 0
        self.too_many_headers = False

    def set_timeout(self, timeout: float | None) -> None:
        """The socket's timeout, changed only if it differs (each change is a system call)."""
        if timeout != self.timeout:
            self.sock.settimeout(timeout)
            self.timeout = timeout

    def closed_by_peer(self) -> bool:
        """True if the idle connection is readable: the server closed it (or sent junk)."""
        return bool(self.poller.poll(0))

    def close(self) -> None:
        """Shut the socket down, then close it (never raises). The shutdown wakes a thread
        blocked reading it (closing alone would leave it asleep until data came)."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.sock.close()

    def until_close(self) -> bool:
        """True if the answer has neither a length nor chunks: it ends with the connection."""
        return not any(
            name.lower() in (b"content-length", b"transfer-encoding") for name, _ in self.headers
        )

    def content_length(self) -> int | None:
        """The answer's Content-Length, None if it has none (or an unreadable one: the parser
        refuses that)."""
        for name, value in self.headers:
            if name.lower() == b"content-length":
                return int(value) if value.strip().isdigit() else None
        return None

    # -- httptools callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.complete:  # more bytes after the answer: the connection is not reused
            self.keep_alive = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.complete:
            return
        if len(self.headers) < MAX_HEADERS:
            self.headers.append((name, value))
        else:
            self.too_many_headers = True

    def on_headers_complete(self) -> None:
        if self.complete:
            return
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        if self.status >= 200 or self.status == 101:
            self.headers_done = True

    def on_body(self, body: bytes) -> None:
        if not self.complete:
            self.chunks.append(body)

    def on_message_complete(self) -> None:
        if self.complete:
            return
        if self.headers_done:
            self.complete = True
        else:  # an interim 1xx answer: the real one follows
            self.headers = []


class HTTP11Transport(httpx.BaseTransport):
    """Keep-alive HTTP/1.1 to one server (see the module docs). Thread-safe.

    Give `uds` (a unix socket path) or `host` and `port`, and `ssl_context` for TLS (the
    certificate is checked against `host`). `timeout` holds the default timeouts. Requests
    raise httpx's exceptions; after `close()` they raise `RuntimeError`.
    """

    def __init__(
        self,
        *,
        uds: str | None = None,
        host: str | None = None,
        port: int | None = None,
        ssl_context: ssl.SSLContext | None = None,
        timeout: httpx.Timeout | None = None,
        max_idle: int = 16,
        keepalive_expiry: float = 5.0,
    ) -> None:
        if (uds is None) == (host is None or port is None):
            raise ValueError("give either uds or host and port")
        self._uds = uds
        self._address = (host or "", port or 0)
        self._ssl_context = ssl_context
        self._timeouts: dict[str, float | None] = (timeout or httpx.Timeout(5.0)).as_dict()
        self._max_idle = max_idle
        self._expiry = keepalive_expiry
        self._lock = threading.Lock()
        self._idle: list[_Connection] = []
        self._busy: set[_Connection] = set()
        self._closed = False

    # -- the pool -----------------------------------------------------------------------------

    def _checkout(self, connect_timeout: float | None) -> _Connection:
        """An idle connection that still looks usable, else a new one (not yet counted busy)."""
        while True:
            with self._lock:
                if self._closed:
                    raise RuntimeError("the HTTP transport is closed")
                if not self._idle:
                    break
                conn = self._idle.pop()
                self._busy.add(conn)
            if time.monotonic() - conn.idle_since < self._expiry and not conn.closed_by_peer():
                return conn
            self._discard(conn)
        conn = self._connect(connect_timeout)
        with self._lock:
            if self._closed:
                conn.close()
                raise RuntimeError("the HTTP transport is closed")
            self._busy.add(conn)
        return conn

    def _release(self, conn: _Connection) -> None:
        """Give back a connection whose exchange is complete: kept idle, or closed."""
        if conn.keep_alive:
            conn.reused = True
            conn.idle_since = time.monotonic()
            with self._lock:
                self._busy.discard(conn)
                if not self._closed and len(self._idle) < self._max_idle:
                    self._idle.append(conn)
                    return
        else:
            with self._lock:
                self._busy.discard(conn)
        conn.close()

    def _discard(self, conn: _Connection) -> None:
        """Shut down and close a connection that is not to be used again."""
        with self._lock:
            self._busy.discard(conn)
        conn.close()

    def _connect(self, timeout: float | None) -> _Connection:
        """A new connection to the server; `httpx.ConnectError` or `ConnectTimeout` if none."""
        sock: socket.socket | None = None
        try:
            if self._uds is not None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(timeout)
                sock.connect(self._uds)
            else:
                sock = socket.create_connection(self._address, timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self._ssl_context is not None:
                    sock = self._ssl_context.wrap_socket(sock, server_hostname=self._address[0])
        except TimeoutError as exc:
            if sock is not None:
                sock.close()
            raise httpx.ConnectTimeout(f"timed out connecting ({exc})") from exc
        except OSError as exc:  # ssl.SSLError included
            if sock is not None:
                sock.close()
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        return _Connection(sock)

    def close(self) -> None:
        """Close the idle connections and shut down those in use (their readers get an error);
        later requests raise `RuntimeError`."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            busy = list(self._busy)
        for conn in idle:
            conn.close()
        for conn in busy:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)

    @property
    def idle_connections(self) -> int:
        """How many idle connections the pool holds (for tests and debugging)."""
        with self._lock:
            return len(self._idle)

    # -- one exchange -------------------------------------------------------------------------

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request` and return the answer once its head has arrived (see the module
        docs); its stream is a `Body`. Raises httpx's exceptions: `LocalProtocolError` for a
        header that would break the request's head (nothing is sent), `ConnectError`/
        `ConnectTimeout` when no connection could be made, `WriteError`/`WriteTimeout` while
        sending, `ReadError`/`ReadTimeout`/`RemoteProtocolError` (`MalformedAnswerError`
        included) while reading the head; `RuntimeError` after `close()`."""
        extensions = request.extensions
        timeouts = extensions.get("timeout") or self._timeouts
        attempt: Attempt | None = extensions.get(ATTEMPT)
        debug = log.isEnabledFor(logging.DEBUG)
        started = time.perf_counter() if debug else 0.0
        conn: _Connection | None = None
        try:
            head, body = _serialize(request)
            conn = self._checkout(timeouts.get("connect"))
            if attempt is not None:
                attempt.reused = conn.reused
            conn.begin()
            conn.set_timeout(timeouts.get("write"))
            try:
                conn.sock.sendall(head + body)
            except TimeoutError as exc:
                raise httpx.WriteTimeout(f"timed out sending the request ({exc})") from exc
            except OSError as exc:
                raise httpx.WriteError(_reason(exc)) from exc
            read = timeouts.get("read")
            deadline = None if read is None else time.monotonic() + read
            conn.set_timeout(read)
            while not conn.headers_done:
                _read_more(conn, attempt, deadline)
        except BaseException as exc:
            if debug:
                log.debug(
                    "%s %s failed after %.2f ms on %s: %r",
                    request.method,
                    request.url.raw_path.decode("ascii", "replace"),
                    (time.perf_counter() - started) * 1000,
                    _which(conn),
                    exc,
                )
            if conn is not None:
                self._discard(conn)
            if isinstance(exc, httpx.HTTPError):
                exc.request = request
            raise
        if debug:
            log.debug(
                "%s %s -> %d in %.2f ms on %s",
                request.method,
                request.url.raw_path.decode("ascii", "replace"),
                conn.status,
                (time.perf_counter() - started) * 1000,
                _which(conn),
            )
        status, headers, chunks = conn.status, conn.headers, conn.chunks
        if conn.complete:
            self._release(conn)
            stream = Body(chunks, None, None, None)
        else:
            conn.chunks = []
            stream = Body(chunks, self, conn, deadline)
        return httpx.Response(status, headers=headers, stream=stream, request=request)


class Body(httpx.SyncByteStream):
    """The body of an answer: what has arrived, then what the socket brings as it is iterated.

    Reading it to its end gives the connection back to the pool; `close()` before that shuts
    the connection down and closes it (an unread rest cannot be skipped cheaply), from any
    thread: one blocked reading it wakes with an error. Reading raises `ReadError`,
    `ReadTimeout` or `RemoteProtocolError`.
    """

    __slots__ = ("_chunks", "_conn", "_transport", "deadline")

    def __init__(
        self,
        chunks: list[bytes],
        transport: HTTP11Transport | None,
        conn: _Connection | None,
        deadline: float | None,
    ) -> None:
        self._chunks = chunks
        self._transport = transport
        self._conn = conn
        self.deadline = deadline
        """When (`time.monotonic()`) the rest of the body must have come, else `ReadTimeout`;
        None: no limit. The request's read timeout set it; a streamed body's reader may move
        it as it goes (an event stream gives each event its own)."""

    def __iter__(self) -> Iterator[bytes]:
        yield from self._chunks
        self._chunks = []
        conn = self._conn
        if conn is None:
            return
        while True:
            try:
                _read_more(conn, None, self.deadline)
            except BaseException:
                self.close()
                raise
            chunks, conn.chunks = conn.chunks, []
            yield from chunks
            if conn.complete:
                break
        transport, self._conn = self._transport, None
        assert transport is not None
        transport._release(conn)

    def read(self, limit: int) -> bytes:
        """The whole body, at most `limit` bytes; `BodyTooLarge` (the connection closed) if it
        is longer: at once when its Content-Length says so, else once `limit` bytes came.
        Raises what iterating raises."""
        conn = self._conn
        if conn is None:  # all of it came with the head (the common case)
            body = b"".join(self._chunks)
            self._chunks = []
            if len(body) > limit:
                raise BodyTooLarge(limit, len(body))
            return body
        length = conn.content_length()  # the body is still coming: is it said to be too long?
        if length is not None and length > limit:
            self.close()
            raise BodyTooLarge(limit, length)
        pieces = []
        size = 0
        try:
            for piece in self:
                size += len(piece)
                if size > limit:
                    raise BodyTooLarge(limit, None)
                pieces.append(piece)
        finally:
            self.close()
        return b"".join(pieces)

    def close(self) -> None:
        """Close the connection unless the body was read to its end (then this is a no-op)."""
        conn, self._conn = self._conn, None
        if conn is not None and self._transport is not None:
            self._transport._discard(conn)


def _serialize(request: httpx.Request) -> tuple[bytes, bytes]:
    """The head and the body of `request` as they go on the wire; `httpx.LocalProtocolError`
    if a header name or value holds CR, LF or NUL."""
    stream = request.stream
    body = b"".join(stream) if isinstance(stream, httpx.SyncByteStream) else b""
    headers = request.headers.raw
    lines = [b"%s %s HTTP/1.1\r\n" % (request.method.encode("ascii"), request.url.raw_path)]
    has_host = has_length = False
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"host":
            has_host = True
        elif lowered == b"content-length":
            has_length = True
        elif lowered == b"transfer-encoding":
            continue  # the body is sent whole, with its length
        lines.append(b"%s: %s\r\n" % (name, value))
    if not has_host:
        lines.append(b"host: %s\r\n" % request.url.netloc)
    if not has_length and (body or request.method not in ("GET", "HEAD", "OPTIONS")):
        lines.append(b"content-length: %d\r\n" % len(body))
    lines.append(b"\r\n")
    head = b"".join(lines)
    # One CR and one LF per line, no NUL: three scans of the whole head (cheaper than one per
    # header); only when they fail is the culprit looked for.
    if head.count(b"\n") != len(lines) or head.count(b"\r") != len(lines) or b"\0" in head:
        raise httpx.LocalProtocolError(_unsafe(request))
    return head, body


def _unsafe(request: httpx.Request) -> str:
    """What makes `request`'s head unsafe to send (its values are not shown: one may be a
    token)."""
    for name, value in request.headers.raw:
        if any(char in name or char in value for char in (b"\r", b"\n", b"\0")):
            shown = name.decode("ascii", "replace")
            return f"the request header {shown!r} holds a CR, LF or NUL character"
    return "the request line holds a CR, LF or NUL character"


def _read_more(conn: _Connection, attempt: Attempt | None, deadline: float | None) -> None:
    """Read once from the socket (by `deadline`) and feed the parser; raise httpx's error if
    that fails. The head is fed at most `MAX_HEAD` bytes: beyond, `MalformedAnswerError`."""
    if conn.reads and deadline is not None:  # the first read has the whole read timeout
        left = deadline - time.monotonic()
        if left <= 0:
            raise httpx.ReadTimeout("timed out waiting for the rest of the answer")
    else:
        left = None
    conn.reads += 1
    try:
        if left is not None:
            conn.set_timeout(left)  # (fails like recv on a socket closed by another thread)
        data = conn.sock.recv(RECV_SIZE)
    except TimeoutError as exc:
        raise httpx.ReadTimeout(f"timed out waiting for the answer ({exc})") from exc
    except OSError as exc:
        raise httpx.ReadError(_reason(exc)) from exc
    if not data:
        if conn.headers_done and conn.until_close():
            conn.complete = True
            conn.keep_alive = False
            return
        if conn.answered:
            raise httpx.RemoteProtocolError("the server closed the connection in mid-answer")
        raise httpx.RemoteProtocolError("the server closed the connection without answering")
    conn.answered = True
    if attempt is not None:
        attempt.answered = True
    if conn.headers_done:
        _feed(conn, data)
        return
    room = MAX_HEAD - conn.head_size
    if len(data) <= room:
        conn.head_size += len(data)
        _feed(conn, data)
    else:  # the parser gets no more of a head than the limit allows
        conn.head_size = MAX_HEAD
        _feed(conn, data[:room])
        if not conn.headers_done:
            conn.keep_alive = False
            raise MalformedAnswerError(
                f"the answer's head is longer than {MAX_HEAD // 1024} KiB, the most accepted"
            )
        _feed(conn, data[room:])
    if conn.too_many_headers:
        conn.keep_alive = False
        raise MalformedAnswerError(
            f"the answer has more than {MAX_HEADERS} headers, the most accepted"
        )


def _feed(conn: _Connection, data: bytes) -> None:
    """Give `data` to the parser; `MalformedAnswerError` if it is not HTTP."""
    try:
        conn.parser.feed_data(data)
    except httptools.HttpParserUpgrade as exc:
        conn.keep_alive = False
        raise MalformedAnswerError("the server switched protocols, unasked") from exc
    except httptools.HttpParserError as exc:
        if conn.complete:  # junk after a complete answer: only the connection is lost
            conn.keep_alive = False
            return
        raise MalformedAnswerError(f"llhttp cannot parse it: {exc}") from exc


def _which(conn: _Connection | None) -> str:
    """Which connection a request went out on, for the debug log."""
    if conn is None:
        return "no connection"
    return f"{'a reused' if conn.reused else 'a new'} connection (fd {conn.sock.fileno()})"


def _reason(exc: OSError) -> str:
    """A short text for a socket error."""
    return str(exc) or type(exc).__name__
