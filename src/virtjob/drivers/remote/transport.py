"""`Transport`: HTTP to one virtjobd, over a unix socket, TCP or TLS, with errors mapped.

Everything the remote driver sends goes through `Transport.call` (one JSON request and answer),
`Transport.get` (the same for a plain GET, the hot path of ``Job.info()``) or
`Transport.events` (a server-sent-event stream). A keep-alive `httpx.Client` is shared by
every thread of the connection; `get` goes through a pool of httpcore, httpx's own transport
layer, directly: for a GET without parameters or body, httpx's request building, URL merging
and response model cost more than the daemon takes to answer (see docs/daemon.md,
Performance). Failures come back as virtjob errors, the same whichever path a request took:

- the daemon cannot be reached, or breaks the connection: `ConnectError`, naming the socket or
  host and saying what to check;
- 401: `AuthError`; any other error answer: the `VirtError` its ``code`` names
  (`virtjob.errors.error_from_code`), message included.

**A keep-alive connection the daemon has closed is not an error.** The daemon may close a
connection right after an answer (uvicorn does after a 500) or when it has been idle, and a
request sent on it at that moment fails with a reset or an empty read. Such a request is sent
again, on another connection, by both paths:

- a GET (safe to repeat) that failed because its connection broke is tried once more; further
  tries only while each fails on yet another reused connection that had been closed;
- any other request (a POST may start a job) is sent again only when httpcore's trace shows
  it went out on a *reused* connection that broke *before any answer*: virtjobd closes a
  connection only when idle or right after an answer (never while it handles a request), so
  that request was not read; a daemon that read it and died cannot take the retry either;
- a timeout, a refused connection, or a connection that breaks after the answer began is
  never retried (for anything but a GET), and is reported as before.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import ssl
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpcore
import httpx

from virtjob.errors import (
    AuthError,
    ConnectError,
    InternalError,
    InvalidArgError,
    OperationInvalidError,
    VirtError,
)
from virtjob.uri import ConnectURI

from . import wire

log = logging.getLogger("virtjob.remote")

TOKEN_ENV = "VIRTJOB_TOKEN"
SOCKET_NAME = "virtjobd.sock"
DEFAULT_PORTS = {"tcp": 16509, "tls": 16514}
TRANSPORT_PARAMS = frozenset({"socket", "token_file", "ca_file"})
"""URI parameters the remote driver uses itself; the others go to the hosted driver."""
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0
MAX_CONNECTIONS = 64
MAX_KEEPALIVE = 16
KEEPALIVE_EXPIRY = 5.0
"""Seconds an idle keep-alive connection is kept (httpx's default; the daemon keeps 30)."""
_HTTPCORE_ERRORS = (
    httpcore.TimeoutException,
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.UnsupportedProtocol,
    httpcore.ProxyError,
)
"""What a request through httpcore raises when it fails (httpx maps the same to HTTPError)."""
_TIMEOUTS = (httpx.TimeoutException, httpcore.TimeoutException)
_CONNECT_TIMEOUTS = (httpx.ConnectTimeout, httpcore.ConnectTimeout)
_DROPPED = (
    httpx.RemoteProtocolError,
    httpx.ReadError,
    httpx.WriteError,
    httpcore.RemoteProtocolError,
    httpcore.ReadError,
    httpcore.WriteError,
)
"""How a request fails when the daemon closed or reset its connection (not a timeout)."""
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
STALE_RETRIES = MAX_KEEPALIVE
"""Most retries of one request: every idle pooled connection may have been closed at once."""


class _Attempt:
    """What one try of a request did, from httpcore's ``trace`` extension events."""

    __slots__ = ("answered", "fresh", "sent")

    def __init__(self) -> None:
        self.fresh = False
        self.sent = False
        self.answered = False

    def __call__(self, event: str, _info: dict[str, Any]) -> None:
        if event.startswith("connection.connect_"):
            self.fresh = True
        elif event == "http11.send_request_headers.started":
            self.sent = True
        elif event == "http11.receive_response_headers.complete":
            self.answered = True

    @property
    def stale(self) -> bool:
        """True if it went out on a reused connection that broke before any answer."""
        return self.sent and not self.fresh and not self.answered


def _retry(method: str, exc: Exception, attempt: _Attempt | None, tries: int) -> _Attempt | None:
    """The trace for one more try of a request that failed with `exc`, or None to give up.

    `attempt` is the failed try's trace (None: it was not traced, a GET's first try), `tries`
    how many tries were made.
    """
    if tries > STALE_RETRIES or isinstance(exc, _TIMEOUTS) or not isinstance(exc, _DROPPED):
        return None
    if attempt is None:
        return _Attempt() if method in _SAFE_METHODS else None
    return _Attempt() if attempt.stale else None


def default_socket() -> str:
    """The socket virtjobd listens on by default: ``$VIRTJOB_STATE_DIR/virtjobd.sock``."""
    state = os.environ.get("VIRTJOB_STATE_DIR") or os.path.join(
        os.path.expanduser("~"), ".local", "share", "virtjob"
    )
    return os.path.join(state, SOCKET_NAME)


def quote_segment(text: str) -> str:
    """`text` escaped to be one path segment."""
    return quote(text, safe="")


def _read_token(uri: ConnectURI) -> str | None:
    path = uri.params.get("token_file")
    if path is None:
        return os.environ.get(TOKEN_ENV) or None
    try:
        with open(os.path.expanduser(path), encoding="utf-8") as handle:
            token = handle.read().strip()
    except OSError as exc:
        raise InvalidArgError(f"cannot read token_file {path} of {uri}: {exc.strerror}") from None
    if not token:
        raise InvalidArgError(f"token_file {path} of {uri} is empty")
    return token


class Transport:
    """An HTTP client of one virtjobd. Thread-safe; `close()` releases its connections.

    Raises `InvalidArgError` for unusable URI parameters (unreadable token or CA file).
    """

    def __init__(self, uri: ConnectURI) -> None:
        self.uri = uri
        headers = {"accept": "application/json"}
        token = _read_token(uri)
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        timeout = httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT)
        limits = httpx.Limits(
            max_connections=MAX_CONNECTIONS,
            max_keepalive_connections=MAX_KEEPALIVE,
            keepalive_expiry=KEEPALIVE_EXPIRY,
        )
        ssl_context: ssl.SSLContext | None = None
        if uri.transport == "unix":
            self.socket: str | None = os.path.abspath(
                os.path.expanduser(uri.params.get("socket") or default_socket())
            )
            self.where = f"unix socket {self.socket}"
            transport = httpx.HTTPTransport(uds=self.socket, limits=limits)
            base = "http://virtjobd"
        else:
            self.socket = None
            host = uri.host or "127.0.0.1"
            port = uri.port or DEFAULT_PORTS[uri.transport or "tcp"]
            netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            self.where = f"{'https' if uri.transport == 'tls' else 'http'}://{netloc}"
            verify: ssl.SSLContext | bool = True
            if uri.transport == "tls":
                ca_file = uri.params.get("ca_file")
                try:
                    verify = ssl.create_default_context(
                        cafile=os.path.expanduser(ca_file) if ca_file else None
                    )
                except (OSError, ssl.SSLError) as exc:
                    raise InvalidArgError(
                        f"cannot load ca_file {ca_file} of {uri}: {exc}"
                    ) from None
                ssl_context = verify
            transport = httpx.HTTPTransport(verify=verify, limits=limits)
            base = self.where
        self._client = httpx.Client(
            base_url=base, headers=headers, timeout=timeout, transport=transport
        )
        # The fast path of `get`: the same origin, headers, limits and timeouts in httpcore.
        origin = httpcore.URL(base)
        self._scheme, self._host, self._port = origin.scheme, origin.host, origin.port
        authority = base.partition("://")[2].encode()  # as httpx sends it, [v6]:port too
        self._get_headers = [(b"host", authority)] + [
            (name.encode(), value.encode()) for name, value in headers.items()
        ]
        self._get_extensions = {
            "timeout": {
                "connect": CONNECT_TIMEOUT,
                "read": READ_TIMEOUT,
                "write": READ_TIMEOUT,
                "pool": READ_TIMEOUT,
            }
        }
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=MAX_CONNECTIONS,
            max_keepalive_connections=MAX_KEEPALIVE,
            keepalive_expiry=KEEPALIVE_EXPIRY,
            uds=self.socket,
        )
        self._closed = False

    def probe(self) -> None:
        """Check that a unix socket accepts connections; `ConnectError` saying why if not.

        (A failed connect through httpcore leaks its socket; this one is always closed.)
        """
        if self.socket is None:
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(CONNECT_TIMEOUT)
            sock.connect(self.socket)
        except OSError as exc:
            raise self._connect_error(httpx.ConnectError(str(exc))) from None
        finally:
            sock.close()

    def close(self) -> None:
        """Close the connections to the daemon."""
        self._closed = True
        self._client.close()
        self._pool.close()

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
        body: wire.Json | None = None,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Send one request and return its decoded JSON answer (None for 204).

        Raises the `VirtError` the daemon answered with, `AuthError` on 401, `ConnectError`
        when the daemon cannot be reached or the connection breaks.
        """
        content = None
        headers = None
        if body is not None:
            content = json.dumps(body).encode()
            headers = {"content-type": "application/json"}
        # A GET is traced only when it is retried; anything else from its first try, to know
        # whether it may be sent again (see the module docs).
        attempt = None if method in _SAFE_METHODS else _Attempt()
        tries = 1
        while True:
            try:
                response = self._client.request(
                    method,
                    path,
                    content=content,
                    headers=headers,
                    params=params,
                    timeout=httpx.USE_CLIENT_DEFAULT
                    if timeout is None
                    else httpx.Timeout(timeout, connect=CONNECT_TIMEOUT),
                    extensions=None if attempt is None else {"trace": attempt},
                )
            except httpx.HTTPError as exc:
                attempt = _retry(method, exc, attempt, tries)
                if attempt is None:
                    raise self._connect_error(exc) from None
                log.debug("%s %s: %s on a closed connection; sending it again", method, path, exc)
                tries += 1
                continue
            except RuntimeError:  # the client was closed
                raise self._closed_error() from None
            return self._decode(method, path, response.status_code, response.content)

    def get(self, path: str) -> Any:
        """``call("GET", path)`` (no parameters, default timeout), through httpcore directly.

        `path` must be ASCII and already quoted (`quote_segment`). Raises like `call`.
        """
        if self._closed:
            raise self._closed_error()
        url = httpcore.URL(
            scheme=self._scheme, host=self._host, port=self._port, target=path.encode("ascii")
        )
        extensions: dict[str, Any] = self._get_extensions
        tries = 1
        while True:
            try:
                response = self._pool.request(
                    b"GET", url, headers=self._get_headers, extensions=extensions
                )
            except _HTTPCORE_ERRORS as exc:
                attempt = _retry("GET", exc, extensions.get("trace"), tries)
                if attempt is None:
                    raise self._connect_error(exc) from None
                log.debug("GET %s: %s on a closed connection; sending it again", path, exc)
                extensions = {**self._get_extensions, "trace": attempt}
                tries += 1
                continue
            return self._decode("GET", path, response.status, response.content)

    def _decode(self, method: str, path: str, status: int, content: bytes) -> Any:
        if status == 204:
            return None
        if status >= 400:
            raise self._answer_error(status, content)
        try:
            return json.loads(content)
        except ValueError:
            raise InternalError(
                f"virtjobd at {self.where} answered {method} {path} with something that is not"
                f" JSON: {content[:200]!r}"
            ) from None

    def events(self, path: str, params: dict[str, Any]) -> EventStream:
        """Open a server-sent-event stream; raises like `call` if it cannot be opened."""
        attempt: _Attempt | None = None
        tries = 1
        while True:
            request = self._client.build_request(
                "GET",
                path,
                params=params,
                headers={"accept": "text/event-stream"},
                timeout=httpx.Timeout(None, connect=CONNECT_TIMEOUT),
                extensions=None if attempt is None else {"trace": attempt},
            )
            try:
                response = self._client.send(request, stream=True)
                break
            except httpx.HTTPError as exc:
                attempt = _retry("GET", exc, attempt, tries)
                if attempt is None:
                    raise self._connect_error(exc) from None
                tries += 1
            except RuntimeError:
                raise self._closed_error() from None
        if response.status_code >= 400:
            try:
                content = response.read()
            except httpx.HTTPError as exc:
                raise self._connect_error(exc) from None
            finally:
                response.close()
            raise self._answer_error(response.status_code, content)
        return EventStream(self, response)

    # -- errors -------------------------------------------------------------------------------

    def _connect_error(self, exc: Exception) -> VirtError:
        """The `ConnectError` for a failed request (an httpx or httpcore exception)."""
        reason = str(exc) or type(exc).__name__
        if isinstance(exc, _TIMEOUTS) and not isinstance(exc, _CONNECT_TIMEOUTS):
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
        return ConnectError(f"cannot reach virtjobd at {self.where}: {reason}; {hint}")

    def _answer_error(self, status: int, content: bytes) -> VirtError:
        try:
            data = json.loads(content)
            error = wire.error_from_dict(data) if isinstance(data, dict) else None
        except ValueError:
            error = None
        if status == 401:
            message = error.message if error is not None else "authentication failed"
            return AuthError(message)
        if error is None:
            return InternalError(
                f"virtjobd at {self.where} answered HTTP {status} without an error body:"
                f" {content[:200]!r}"
            )
        return error


class EventStream:
    """The decoded ``data`` of each event of an open SSE response; `close()` when done."""

    def __init__(self, transport: Transport, response: httpx.Response) -> None:
        self._transport = transport
        self._response = response
        self._lines: Iterator[str] = response.iter_lines()

    def __iter__(self) -> EventStream:
        return self

    def __next__(self) -> wire.Json:
        data: list[str] = []
        try:
            for line in self._lines:
                if not line:
                    if data:
                        decoded: wire.Json = json.loads("\n".join(data))
                        return decoded
                    continue
                if line.startswith("data:"):
                    data.append(line[5:].lstrip(" "))
                # other fields ("event:", "id:") and ": comments" carry nothing we need
        except httpx.HTTPError as exc:
            self.close()
            raise self._transport._connect_error(exc) from None
        except ValueError as exc:
            self.close()
            raise InternalError(f"virtjobd sent a malformed event: {exc}") from None
        self.close()
        raise StopIteration

    def close(self) -> None:
        """Close the stream's connection."""
        self._response.close()

    def __del__(self) -> None:
        self._response.close()
