"""`Transport`: requests to one virtjobd, over a unix socket, TCP or TLS, with errors mapped.

Everything the remote driver sends goes through one path: `Transport.call` (one request and
its JSON answer, the hot GET of ``Job.info()`` included) and `Transport.events` (a server-sent
event stream) both build an `httpx.Request` and hand it to one `HTTP11Transport` (a keep-alive
HTTP/1.1 transport over plain sockets, shared by every thread of the connection; http11.py says
why it is not httpx's own). Requests are built directly, with prebuilt headers: httpx.Client's
URL merging, cookies and auth would cost more than the daemon takes to answer. Failures come
back as virtjob errors, from one mapping:

- the daemon cannot be reached, does not answer in time, or breaks the connection:
  `ConnectError`, naming the socket or host and saying what to check;
- something answers, but not in HTTP (or with a head too big to be virtjobd's):
  `ConnectError` saying so (sent once: it would answer the same way again);
- 401: `AuthError`; any other error answer: the `VirtError` its ``code`` names
  (`virtjob.api.decode_error`), message included; an answer that is not what the API
  promises (not JSON, nested beyond what Python decodes, a redirect, a body over
  `MAX_ANSWER` bytes or an event over `MAX_EVENT`): `InternalError`.

What the daemon sends is bounded before it is kept: an answer's head by the HTTP transport
(`http11.MAX_HEAD`), its body by `MAX_ANSWER`, each event of a stream by `MAX_EVENT`. The read
timeout bounds a whole answer, not each read of it; an event stream has no end, so each of its
events (or the daemon's keep-alive comments, every 15 s) must come within `EVENT_TIMEOUT`.

**A keep-alive connection the daemon has closed is not an error.** The daemon may close a
connection right after an answer (uvicorn does after a 500) or when it has been idle, and a
request sent on it at that moment fails with a reset or an empty read (the pool drops an idle
connection it sees closed, but the close can come just after that check). Such a request is
sent again, on another connection:

- a GET (safe to repeat) that failed because its connection broke is tried once more; further
  tries only while each fails on yet another reused connection that had been closed;
- any other request (a POST may start a job) is sent again only when the transport's
  `Attempt` shows it went out on a *reused* connection that broke *before any answer*:
  virtjobd closes a connection only when idle or right after an answer (never while it handles
  a request), so that request was not read; a daemon that read it and died cannot take the
  retry either;
- a timeout, a refused connection, or a connection that breaks after the answer began is
  never retried (for anything but a GET), and is reported as before.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import httpx

from virtjob.api.errors import decode_error
from virtjob.defaults import daemon_socket
from virtjob.errors import (
    AuthError,
    ConnectError,
    InternalError,
    InvalidArgError,
    OperationInvalidError,
    VirtError,
)
from virtjob.uri import ConnectURI

from .http11 import ATTEMPT, Attempt, Body, BodyTooLarge, HTTP11Transport, MalformedAnswerError

log = logging.getLogger("virtjob.remote")

Json = dict[str, Any]
TOKEN_ENV = "VIRTJOB_TOKEN"
DEFAULT_PORTS = {"tcp": 16509, "tls": 16514}
TRANSPORT_PARAMS = frozenset({"socket", "token_file", "ca_file"})
"""URI parameters the remote driver uses itself; the others go to the hosted driver."""
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0
"""Seconds a whole answer (head and body) may take once the request is sent."""
EVENT_TIMEOUT = 45.0
"""Seconds an event stream may stay silent: three of the daemon's keep-alive intervals (15 s)."""
MAX_ANSWER = 16 * 1024 * 1024
"""Most bytes of a JSON answer. The biggest the daemon sends is a job list: about 600 bytes a
job, and it keeps 1000 ended jobs by default (``--retain-jobs``) besides those running: 16 MiB
leaves room for some 28000."""
MAX_EVENT = 1024 * 1024
"""Most bytes of one server-sent event (a job's ``info`` is about 200)."""
MAX_IDLE = 16
"""Idle keep-alive connections kept (one per client thread is what matters)."""
KEEPALIVE_EXPIRY = 5.0
"""Seconds an idle keep-alive connection is kept (httpx's default; the daemon keeps 30)."""
STALE_RETRIES = MAX_IDLE
"""Most retries of one request: every idle pooled connection may have been closed at once."""
URLS_KEPT = 256
"""Parsed request URLs a transport keeps (parsing one costs more than the rest of a request)."""
_DROPPED = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)
"""How a request fails when the daemon closed or reset its connection (not a timeout)."""
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_EMPTY = httpx.ByteStream(b"")


def _may_retry(method: str, exc: httpx.HTTPError, attempt: Attempt, tries: int) -> bool:
    """True if a request that failed with `exc` after `tries` tries is to be sent again (see
    the module docs); `attempt` is what the transport saw of the failed try."""
    if tries > STALE_RETRIES or not isinstance(exc, _DROPPED):
        return False  # (a timeout is never one of _DROPPED)
    if isinstance(exc, MalformedAnswerError):
        return False  # it would answer the same way again
    return attempt.stale or (tries == 1 and method in _SAFE_METHODS)


def _read_token(uri: ConnectURI) -> str | None:
    """The bearer token of `uri`: its ``token_file``'s content, else ``$VIRTJOB_TOKEN``, else
    None. `InvalidArgError` if the file cannot be read or is empty, or if the token is not one
    line of text (a control character would end the header it goes in and start another)."""
    path = uri.params.get("token_file")
    if path is None:
        token = os.environ.get(TOKEN_ENV) or None
        source = f"${TOKEN_ENV}"
    else:
        source = f"token_file {path} of {uri}"
        try:
            with open(os.path.expanduser(path), encoding="utf-8") as handle:
                token = handle.read().strip()
        except OSError as exc:
            raise InvalidArgError(f"cannot read {source}: {exc.strerror}") from exc
        except ValueError as exc:  # not UTF-8
            raise InvalidArgError(f"{source} is not UTF-8 text: {exc}") from exc
        if not token:
            raise InvalidArgError(f"{source} is empty")
    if token is not None and not _one_line(token):
        raise InvalidArgError(
            f"the token in {source} holds a line break or another control character; a token"
            f" must be one line of text: write it alone on the first line"
        )
    return token


def _one_line(text: str) -> bool:
    """True if `text` has no control character (C0, DEL, C1) and can be encoded in UTF-8."""
    if any(ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0 for char in text):
        return False
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate ($VIRTJOB_TOKEN with undecodable bytes)
        return False
    return True


class Transport:
    """Requests to one virtjobd. Thread-safe; `close()` releases its connections.

    Raises `InvalidArgError` for unusable URI parameters (unreadable token or CA file).
    """

    def __init__(self, uri: ConnectURI) -> None:
        self.uri = uri
        token = _read_token(uri)
        timeout = httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT)
        if uri.transport == "unix":
            self.socket: str | None = os.path.abspath(
                os.path.expanduser(uri.params.get("socket") or daemon_socket())
            )
            self.where = f"unix socket {self.socket}"
            authority = "virtjobd"
            self._http = HTTP11Transport(
                uds=self.socket,
                timeout=timeout,
                max_idle=MAX_IDLE,
                keepalive_expiry=KEEPALIVE_EXPIRY,
            )
        else:
            self.socket = None
            host = uri.host or "127.0.0.1"
            port = uri.port or DEFAULT_PORTS[uri.transport or "tcp"]
            authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            self.where = f"{'https' if uri.transport == 'tls' else 'http'}://{authority}"
            context: ssl.SSLContext | None = None
            if uri.transport == "tls":
                ca_file = uri.params.get("ca_file")
                try:
                    context = ssl.create_default_context(
                        cafile=os.path.expanduser(ca_file) if ca_file else None
                    )
                except (OSError, ssl.SSLError) as exc:
                    raise InvalidArgError(f"cannot load ca_file {ca_file} of {uri}: {exc}") from exc
            self._http = HTTP11Transport(
                host=host,
                port=port,
                ssl_context=context,
                timeout=timeout,
                max_idle=MAX_IDLE,
                keepalive_expiry=KEEPALIVE_EXPIRY,
            )
        self._origin = f"{'https' if uri.transport == 'tls' else 'http'}://{authority}"
        common = [(b"host", authority.encode())]
        if token is not None:
            common.append((b"authorization", f"Bearer {token}".encode()))
        json_answer = [*common, (b"accept", b"application/json")]
        self._json_answer = json_answer
        self._get_headers = httpx.Headers(json_answer)
        self._empty_headers = httpx.Headers([*json_answer, (b"content-length", b"0")])
        self._event_headers = httpx.Headers([*common, (b"accept", b"text/event-stream")])
        self._timeouts = timeout.as_dict()
        self._urls: dict[str, httpx.URL] = {}
        self._closed = False

    def close(self) -> None:
        """Close the connections to the daemon (a request under way fails)."""
        self._closed = True
        self._http.close()

    def _closed_error(self) -> OperationInvalidError:
        """What every call raises once the connection is closed (as `Connection.driver` does)."""
        return OperationInvalidError(
            f"the connection to {self.uri} is closed; open a new one with virtjob.open()"
        )

    # -- requests -----------------------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Json | None = None,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Send one request and return its decoded JSON answer (None for 204).

        `path` must be ASCII and already quoted (`virtjob.api.routes.quote_segment`);
        `timeout` replaces the read timeout. Raises the `VirtError` the daemon answered with,
        `AuthError` on 401, `ConnectError` when the daemon cannot be reached, does not answer
        in time or breaks the connection, `OperationInvalidError` once closed.
        """
        target = path if not params else f"{path}?{urlencode(params)}"
        if body is None:
            headers = self._get_headers if method in _SAFE_METHODS else self._empty_headers
            stream = _EMPTY
        else:
            content = json.dumps(body).encode()
            headers = httpx.Headers(
                [
                    *self._json_answer,
                    (b"content-type", b"application/json"),
                    (b"content-length", b"%d" % len(content)),
                ]
            )
            stream = httpx.ByteStream(content)
        timeouts = self._timeouts if timeout is None else {**self._timeouts, "read": timeout}
        response, content = self._send(method, target, headers, stream, timeouts, read=True)
        return self._decode(method, target, response.status_code, content)

    def events(self, path: str, params: dict[str, Any]) -> EventStream:
        """Open a server-sent-event stream (each event must come within `EVENT_TIMEOUT`, see
        `EventStream`); raises like `call` if it cannot be opened."""
        target = f"{path}?{urlencode(params)}"
        timeouts = {**self._timeouts, "read": EVENT_TIMEOUT}
        response, _ = self._send("GET", target, self._event_headers, _EMPTY, timeouts, read=False)
        status = response.status_code
        if status >= 300:
            try:
                content = self._body("GET", target, response)
            except httpx.HTTPError as exc:
                raise self._connect_error(exc) from exc
            raise self._answer_error(status, content, "GET", target)
        kind = response.headers.get("content-type", "")
        if not kind.startswith("text/event-stream"):
            response.close()
            raise InternalError(
                f"virtjobd at {self.where} answered GET {target} with {kind or 'no type'}, not"
                f" an event stream (text/event-stream); check what listens there"
            )
        return EventStream(self, response, target)

    def _send(
        self,
        method: str,
        target: str,
        headers: httpx.Headers,
        stream: httpx.ByteStream,
        timeouts: dict[str, float | None],
        *,
        read: bool,
    ) -> tuple[httpx.Response, bytes]:
        """The one way a request goes out: sent (again, as the module docs say) until it is
        answered, then its answer and, if `read`, its whole body (else b"", to be streamed)."""
        if self._closed:
            raise self._closed_error()
        url = self._urls.get(target)
        if url is None:
            try:
                url = httpx.URL(self._origin + target)
            except httpx.InvalidURL as exc:  # a control character in the host, 64 KiB of query
                raise InvalidArgError(
                    f"cannot make the URL of {method} {target[:100]} to virtjobd at"
                    f" {self.where}: {exc}; check the host and the parameters of {self.uri}"
                ) from exc
            if len(self._urls) >= URLS_KEPT:
                self._urls.clear()
            self._urls[target] = url
        tries = 1
        while True:
            attempt = Attempt()
            request = httpx.Request(
                method,
                url,
                headers=headers,
                stream=stream,
                extensions={"timeout": timeouts, ATTEMPT: attempt},
            )
            try:
                response = self._http.handle_request(request)
                return response, self._body(method, target, response) if read else b""
            except httpx.LocalProtocolError as exc:  # nothing was sent
                raise InternalError(
                    f"virtjob built a request it cannot send ({method} {target} to virtjobd at"
                    f" {self.where}): {exc}"
                ) from exc
            except httpx.HTTPError as exc:
                if self._closed:
                    raise self._closed_error() from exc
                if not _may_retry(method, exc, attempt, tries):
                    raise self._connect_error(exc) from exc
                log.debug(
                    "%s %s: %s on a %s connection; sending it again",
                    method,
                    target,
                    exc,
                    "reused" if attempt.reused else "new",
                )
                tries += 1
            except RuntimeError as exc:  # the transport was closed
                raise self._closed_error() from exc

    def _body(self, method: str, target: str, response: httpx.Response) -> bytes:
        """All of `response`'s body (at most `MAX_ANSWER` bytes, else `InternalError`); its
        connection goes back to the pool, or is closed if the body was not read whole."""
        stream = response.stream
        assert isinstance(stream, Body)
        try:
            return stream.read(MAX_ANSWER)
        except BodyTooLarge as exc:
            raise InternalError(
                f"virtjobd at {self.where} answered {method} {target} with more than"
                f" {MAX_ANSWER // (1024 * 1024)} MiB ({exc}); that is not an answer of"
                f" virtjobd's: check what listens there"
            ) from exc

    def _decode(self, method: str, target: str, status: int, content: bytes) -> Any:
        if status == 204:
            return None
        if status >= 300:
            raise self._answer_error(status, content, method, target)
        try:
            return json.loads(content)
        except (ValueError, RecursionError) as exc:
            raise InternalError(
                f"virtjobd at {self.where} answered {method} {target} with something that is"
                f" not JSON{_nested(exc)}: {content[:200]!r}"
            ) from exc

    # -- errors -------------------------------------------------------------------------------

    def _connect_error(self, exc: httpx.HTTPError) -> ConnectError:
        """The `ConnectError` for a request that failed with `exc` (one of httpx's)."""
        reason = str(exc) or type(exc).__name__
        if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
            return ConnectError(
                f"virtjobd at {self.where} did not answer in time ({reason}); check that it is"
                f" not overloaded or stuck (its log says more)"
            )
        if "CERTIFICATE_VERIFY_FAILED" in reason or "certificate" in reason.lower():
            return ConnectError(
                f"cannot verify the TLS certificate of virtjobd at {self.where}: {reason};"
                f" for a self-signed certificate pass ?ca_file=/path/to/cert.pem in the URI"
            )
        if self.socket is not None:
            hint = (
                f"is virtjobd running? start it with: virtjobd --listen unix:{self.socket}"
                f" (or give the right path with ?socket=)"
            )
        else:
            hint = "is virtjobd running and listening there (virtjobd --listen tcp:HOST:PORT)?"
        if isinstance(exc, MalformedAnswerError):
            return ConnectError(
                f"what answers at {self.where} is not virtjobd, or not one this client can talk"
                f" to: it answered with malformed HTTP ({reason}); check that the URI"
                f" {self.uri} names virtjobd's {'socket' if self.socket else 'address'}"
            )
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            return ConnectError(f"cannot reach virtjobd at {self.where}: {reason}; {hint}")
        return ConnectError(f"the connection to virtjobd at {self.where} broke: {reason}; {hint}")

    def _answer_error(self, status: int, content: bytes, method: str, target: str) -> VirtError:
        """The error an answer that is not a success (HTTP `status` 300 or more, body
        `content`) to `method` `target` stands for."""
        if 300 <= status < 400:
            return InternalError(
                f"virtjobd at {self.where} answered {method} {target} with an unexpected"
                f" redirect (HTTP {status}); virtjobd never redirects: check what listens there"
            )
        try:
            data = json.loads(content)
        except (ValueError, RecursionError):
            data = None
        is_error = isinstance(data, dict) and "code" in data and "message" in data
        if status == 401:
            return AuthError(str(data["message"]) if is_error else "authentication failed")
        if not is_error:
            return InternalError(
                f"virtjobd at {self.where} answered HTTP {status} without an error body:"
                f" {content[:200]!r}"
            )
        return decode_error(data)


def _nested(exc: Exception) -> str:
    """What to add to "not JSON" when `exc` is the decoder's RecursionError."""
    return " (nested deeper than Python decodes)" if isinstance(exc, RecursionError) else ""


class EventStream:
    """The decoded ``data`` of each event of an open SSE response; `close()` when done.

    Lines end with LF, CRLF or CR; ``data:`` lines make an event, a blank line ends it, other
    fields and ``:`` comments (the daemon's keep-alives) are skipped. Iterating raises
    `ConnectError` if the connection breaks or if neither an event nor a keep-alive comes for
    `EVENT_TIMEOUT` seconds, `InternalError` for an event that is not JSON or longer than
    `MAX_EVENT` bytes; it stops when the daemon ends the stream, or once `close()` was called
    (from any thread: one blocked reading wakes).
    """

    def __init__(self, transport: Transport, response: httpx.Response, target: str) -> None:
        self._transport = transport
        self._response = response
        self._target = target
        body = response.stream
        assert isinstance(body, Body)
        self._body = body
        self._lines = _lines(body)  # (no reference back to self: __del__ closes it at once)
        self._closed = False

    def __iter__(self) -> EventStream:
        return self

    def __next__(self) -> Json:
        where = self._transport.where
        data: list[bytes] = []
        size = 0
        try:
            for line in self._lines:
                if not line:  # an event, or a keep-alive comment, is complete
                    self._body.deadline = time.monotonic() + EVENT_TIMEOUT
                    if data:
                        decoded: Json = json.loads(b"\n".join(data).decode())
                        return decoded
                    continue
                if line.startswith(b"data:"):
                    value = line[6:] if line.startswith(b"data: ") else line[5:]
                    size += len(value) + 1
                    if size > MAX_EVENT:
                        raise _TooLong
                    data.append(value)
                # other fields ("event:", "id:") and ": comments" carry nothing we need
        except httpx.HTTPError as exc:
            closed_here = self._closed
            self.close()
            if self._transport._closed:
                raise self._transport._closed_error() from exc
            if closed_here:  # by close(), from another thread: the stream just ends
                raise StopIteration from exc
            if isinstance(exc, httpx.ReadTimeout):
                raise ConnectError(
                    f"no complete event and no keep-alive came from virtjobd at {where} on GET"
                    f" {self._target} for {EVENT_TIMEOUT:g} s (it sends one every 15 s); the"
                    f" daemon or the network to it is stuck: look the job up again"
                ) from exc
            raise self._transport._connect_error(exc) from exc
        except (ValueError, RecursionError) as exc:
            self.close()
            raise InternalError(
                f"virtjobd at {where} sent a malformed event on GET {self._target}"
                f"{_nested(exc)}: {exc}"
            ) from exc
        except _TooLong as exc:
            self.close()
            raise self._too_long() from exc
        self.close()
        raise StopIteration

    def _too_long(self) -> InternalError:
        """The error for an event (or a line) longer than `MAX_EVENT`."""
        return InternalError(
            f"virtjobd at {self._transport.where} sent an event longer than"
            f" {MAX_EVENT // 1024} KiB on GET {self._target}; that is not an event of"
            f" virtjobd's: check what listens there"
        )

    def close(self) -> None:
        """Close the stream's connection; a thread blocked reading it wakes, and iterating
        stops."""
        self._closed = True
        self._response.close()

    def __del__(self) -> None:
        self._response.close()


class _TooLong(Exception):
    """An event stream's line or event is longer than `MAX_EVENT`."""


def _lines(body: Body) -> Iterator[bytes]:
    """The lines of an event stream, without their ends (LF, CRLF or CR); `_TooLong` for one
    over `MAX_EVENT` bytes (what is kept of a line never grows beyond that)."""
    pending: list[bytes] = []
    size = 0
    after_cr = False  # the last line ended with CR: a LF first in the next piece is its end
    for received in body:
        piece = received[1:] if after_cr and received.startswith(b"\n") else received
        after_cr = False
        if b"\n" not in piece and b"\r" not in piece:
            size += len(piece)
            if size > MAX_EVENT:
                raise _TooLong
            pending.append(piece)
            continue
        if pending:
            pending.append(piece)
            lines = b"".join(pending).splitlines(keepends=True)
            pending.clear()
        else:
            lines = piece.splitlines(keepends=True)
        last = lines[-1]
        if last.endswith((b"\n", b"\r")):
            size = 0
            after_cr = last.endswith(b"\r")
        else:  # a line still coming
            lines.pop()
            pending.append(last)
            size = len(last)
            if size > MAX_EVENT:
                raise _TooLong
        for line in lines:
            yield line.rstrip(b"\r\n")
