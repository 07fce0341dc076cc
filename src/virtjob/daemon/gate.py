"""`Gate`: the pure-ASGI layer in front of the API: bearer-token check and body-size limit.

It runs before routing and before any body is read, so a request without the right token or
with a body over the limit is refused without touching the application:

- with a token configured, a request lacking ``Authorization: Bearer TOKEN`` gets 401
  ``auth-failed`` (compared in constant time);
- a ``Content-Length`` over the limit gets 413 at once, before the body is read; a chunked
  body is read up to the limit and refused with 413 as soon as it passes it.

Written as plain ASGI (no ``BaseHTTPMiddleware``) to keep the per-request cost tiny. Once a
request has passed both checks, an optional `FastPath` may answer it directly (the app uses
one for ``GET /v1/jobs/{id}``, the hot read of a remote ``Job.info()``); everything else goes
to the wrapped application.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .security import token_matches

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
FastPath = Callable[[Scope, Receive, Send], Awaitable[bool]]
"""Answers the few hot requests it knows itself (returning True), or returns False at once."""


async def send_error(send: Send, status: int, code: str, message: str) -> None:
    """Send a complete ``{"code", "message"}`` JSON answer with `status`."""
    body = json.dumps({"code": code, "message": message}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="virtjobd"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Gate:
    """Wraps `app`: refuses unauthenticated requests and oversized bodies."""

    def __init__(
        self, app: ASGIApp, token: str | None, max_body: int, fast: FastPath | None = None
    ) -> None:
        self.app = app
        self.token = token.encode() if token is not None else None
        self.max_body = max_body
        self.fast = fast

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
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
            what = "no bearer token" if authorization is None else "a wrong bearer token"
            await send_error(
                send,
                401,
                "auth-failed",
                f"virtjobd refused the request: it carries {what}; give the daemon's token"
                f" with $VIRTJOB_TOKEN or ?token_file= in the connection URI",
            )
            return
        if length is not None:
            if not length.isdigit():
                await send_error(send, 400, "invalid-arg", "malformed Content-Length header")
                return
            if int(length) > self.max_body:
                await send_error(send, 413, "invalid-arg", self._too_large(int(length)))
                return
        elif chunked:
            replay = await self._read_limited(receive)
            if replay is None:
                await send_error(send, 413, "invalid-arg", self._too_large(None))
                return
            receive = replay
        if self.fast is not None and await self.fast(scope, receive, send):
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
