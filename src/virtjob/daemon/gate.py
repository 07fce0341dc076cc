"""`Gate`: the pure-ASGI layer in front of the API: bearer-token check, body-size limit and
the request log; it hands the requests of the plain routes (`virtjob.daemon.routes.plain`) to
them, and every other request to FastAPI.

It runs before routing and before any body is read, so a request without the right token,
with a path no route can mean, or with a body over the limit is refused without touching the
application:

- with a token configured, a request lacking ``Authorization: Bearer TOKEN`` gets 401
  ``auth-failed`` (compared in constant time);
- a path holding an escaped ``/`` (``%2F``, any case, in ``raw_path``: the path as sent), or
  a ``.`` or ``..`` segment once decoded, gets 400 ``invalid-arg`` (`path_refusal`): routing
  works on the decoded path, where ``%2F`` would become a separator and carry a request to
  another route (``{id}%2Fcancel`` to the cancel route), and no name, UUID, host or job id
  ever contains ``/`` or is ``.`` or ``..``, so no request of the API needs either;
- a ``Content-Length`` over the limit gets 413 at once, before the body is read; a chunked
  body is read up to the limit and refused with 413 as soon as it passes it.

With debug logging on, every request is logged once answered (refused ones too): method,
path, status, duration and peer (`RequestLog`), each escaped (`loggable`: a control character
in a decoded path cannot forge a line of the log). Whether it is on is asked once per request;
off, the log costs that question alone. Written as plain ASGI (no ``BaseHTTPMiddleware``) to
keep the per-request cost tiny.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from virtjob.errors import InvalidArgError
from virtjob.paths import printable

from .answers import (
    BodyTooLargeError,
    Message,
    Receive,
    Scope,
    Send,
    auth_refused,
    loggable,
    send_error,
)
from .security import token_matches

log = logging.getLogger("virtjob.daemon.requests")

ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
PlainServer = Callable[[Scope, Receive, Send], Awaitable[bool]]
"""Answers the requests of one route it knows itself (returning True), or returns False."""


class RequestLog:
    """Logs one request at debug level once its answer has started (see the module docs)."""

    __slots__ = ("scope", "send", "started", "status")

    def __init__(self, scope: Scope, send: Send) -> None:
        self.scope = scope
        self.send = send
        self.started = time.perf_counter()
        self.status = 0

    async def __call__(self, message: Message) -> None:
        """Send `message`, noting the answer's status."""
        if message["type"] == "http.response.start":
            self.status = message["status"]
        await self.send(message)

    def done(self) -> None:
        """Log the request (the status is 0 if no answer started)."""
        scope = self.scope
        peer = scope.get("client")
        query = scope.get("query_string", b"")
        log.debug(
            "%s %s%s -> %d in %.2f ms%s",
            loggable(scope["method"]),
            loggable(scope["path"]),
            "?" + loggable(query.decode("latin-1")) if query else "",
            self.status,
            (time.perf_counter() - self.started) * 1000,
            f" from {loggable(f'{peer[0]}:{peer[1]}')}" if peer else "",
        )


def path_refusal(scope: Scope) -> InvalidArgError | None:
    """The error refusing a request whose path holds an escaped ``/`` or a ``.`` or ``..``
    segment (see the module docs), or None for any other path."""
    raw: bytes = scope.get("raw_path") or b""
    path: str = scope["path"]
    if b"%" in raw and b"%2f" in raw.lower():
        why = "an escaped '/' (%2F)"
    elif "/." in path and any(part in (".", "..") for part in path.split("/")):
        why = "a '.' or '..' segment"
    else:
        return None
    shown = raw.decode("latin-1") if raw else printable(path)  # as sent, escapes and all
    return InvalidArgError(
        f"malformed request path {shown!r}: it holds {why}; names, UUIDs, hosts and job ids"
        f" never contain '/' nor are '.' or '..', so no route takes one: see /openapi.json for"
        f" the routes of this API"
    )


class Gate:
    """Wraps `app`: refuses unauthenticated requests and oversized bodies, logs requests,
    and hands the requests of `plain` routes to them instead of `app` (each returns False,
    having done nothing, for a request that is not its own)."""

    def __init__(
        self,
        app: ASGIApp,
        token: str | None,
        max_body: int,
        plain: Sequence[PlainServer] = (),
    ) -> None:
        self.app = app
        self.token = token.encode() if token is not None else None
        self.max_body = max_body
        self.plain = tuple(plain)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not log.isEnabledFor(logging.DEBUG):
            await self._serve(scope, receive, send)
            return
        record = RequestLog(scope, send)
        try:
            await self._serve(scope, receive, record)
        finally:
            record.done()

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        authorization: bytes | None = None
        length: bytes | None = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                chunked = True
        if self.token is not None and not token_matches(self.token, authorization):
            await send_error(send, auth_refused(authorization))
            return
        refusal = path_refusal(scope)
        if refusal is not None:
            await send_error(send, refusal)
            return
        if length is not None:
            if not length.isdigit():
                await send_error(send, InvalidArgError("malformed Content-Length header"))
                return
            if int(length) > self.max_body:
                await send_error(send, BodyTooLargeError(self._too_large(int(length))))
                return
        elif chunked:
            replay = await self._read_limited(receive)
            if replay is None:
                await send_error(send, BodyTooLargeError(self._too_large(None)))
                return
            receive = replay
        for serve in self.plain:
            if await serve(scope, receive, send):
                return
        await self.app(scope, receive, send)

    def _too_large(self, size: int | None) -> str:
        shown = f"{size} bytes" if size is not None else "more"
        return (
            f"request body too large: {shown}, the limit is {self.max_body} bytes"
            f" (XML documents may be at most 1 MiB)"
        )

    async def _read_limited(self, receive: Receive) -> Receive | None:
        """Read a chunked body up to the limit; return a receive that replays it, or None."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                chunks.clear()
                break
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_body:
                return None
            chunks.append(body)
            if not message.get("more_body", False):
                break
        whole = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": whole, "more_body": False}
            return await receive()

        return replay
