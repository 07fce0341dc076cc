"""What virtjobd answers: JSON bodies, and the one way an error becomes an answer.

Every error answer of the daemon, whichever layer refuses the request (the `Gate`, a route,
FastAPI's validation, an unknown path, the connection limit), is made by `error_answer` from a
`VirtError`: the body is `virtjob.api.encode_error` of it (strings made `printable`, so any
message encodes), the status `virtjob.api.status_for` of it. A refusal that has no
`VirtError` class of its own uses one of the small subclasses below, which carry the HTTP
status that differs from their code's usual one.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from typing import Any

from starlette.responses import Response

from virtjob.api import JobDocument, encode_error, encode_job, status_for
from virtjob.errors import (
    AuthError,
    InternalError,
    InvalidArgError,
    NoSupportError,
    OperationInvalidError,
    VirtError,
)
from virtjob.paths import printable

log = logging.getLogger("virtjob.daemon")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = Sequence[tuple[bytes, bytes]]

JSON_TYPE = (b"content-type", b"application/json")
"""The content-type header of every JSON answer."""


class UnknownDriverError(NoSupportError):
    """A request names a driver this virtjob lacks: code no-support, but HTTP 404 (no such
    host resource), as opposed to 501 for an operation a real driver does not offer."""

    http_status = 404


class NoRouteError(NoSupportError):
    """A path (404) or method (405) the API does not have; the status is given per error."""

    def __init__(self, message: str, http_status: int = 404) -> None:
        """`message` says what was asked and where the routes are listed."""
        super().__init__(message)
        self.http_status = http_status


class RequestRefusedError(InvalidArgError):
    """A request HTTP itself refuses (code invalid-arg), with the status it was given."""

    def __init__(self, message: str, http_status: int = 400) -> None:
        """`message` says what is wrong with the request."""
        super().__init__(message)
        self.http_status = http_status


class BodyTooLargeError(InvalidArgError):
    """A request body over ``--max-body``: code invalid-arg, HTTP 413."""

    http_status = 413


class TooManyConnectionsError(OperationInvalidError):
    """A connection over ``--max-connections``: code operation-invalid, HTTP 503."""

    http_status = 503


_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
"""`json.dumps(data, separators=(",", ":"), allow_nan=False)` without building an encoder for
every call; its output is ASCII (``ensure_ascii``), so it always encodes, and valid JSON: a
NaN or an infinity raises `ValueError` instead of being written as ``NaN`` (no JSON parser
need accept that)."""


def dumps(data: Any) -> bytes:
    """`data` as compact JSON bytes; `ValueError` for a NaN or infinity in it."""
    return _ENCODER.encode(data).encode()


def job_json(document: JobDocument) -> bytes:
    """The JSON of job `document`. `InternalError` naming the job if it cannot be JSON (a NaN
    or infinity in it: a bug, as the engine and the codec refuse them), with the cause."""
    try:
        return dumps(encode_job(document))
    except ValueError as exc:
        raise InternalError(
            f"job {document.id} ({document.kind} of {document.subject!r}) cannot be sent: its"
            f" document holds a number JSON cannot carry ({exc}); this is a bug, see the"
            f" daemon's log"
        ) from exc


def jobs_json(documents: Iterable[JobDocument]) -> bytes:
    """The JSON list of job `documents`; raises what `job_json` raises."""
    return b"[" + b",".join(job_json(document) for document in documents) + b"]"


def json_response(data: Any, status: int = 200) -> Response:
    """A JSON answer of `data` with `status`; `ValueError` for a NaN or infinity in it."""
    return body_response(dumps(data), status)


def body_response(body: bytes, status: int = 200) -> Response:
    """A JSON answer with `status` whose `body` is JSON already."""
    return Response(body, status_code=status, media_type="application/json")


def no_content() -> Response:
    """The empty 204 answer of a route that answers nothing."""
    return Response(status_code=204)


def error_answer(error: VirtError) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """The status, JSON body and extra headers that answer `error` (never raises).

    Errors that mean a bug or a failure of the host (status 500 and above, but 503) are
    logged: with their traceback and causes when the cause is not a `VirtError` (a bug) or
    when debug logging is on, else on one line with the chain of their causes (`causes`);
    the message and causes are `loggable` (they may quote what the client sent).
    """
    status = status_for(error)
    if status >= 500 and status != 503:
        cause = error.__cause__
        trace = (cause is not None and not isinstance(cause, VirtError)) or log.isEnabledFor(
            logging.DEBUG
        )
        log.error(
            "request failed: %s: %s%s",
            type(error).__name__,
            loggable(str(error)),
            "" if trace else loggable(causes(error)),
            exc_info=error if trace else None,
        )
    data = encode_error(error)
    body = dumps(
        {key: printable(value) if isinstance(value, str) else value for key, value in data.items()}
    )
    headers = [(b"www-authenticate", b'Bearer realm="virtjobd"')] if status == 401 else []
    return status, body, headers


_UNLOGGABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\\]")
"""What `loggable` escapes: C0 and C1 controls, DEL, the Unicode line and paragraph
separators, and the backslash (so an escape in the log always means one was made)."""


def loggable(text: str) -> str:
    """`text` (client-controlled: a path, a query, a name) fit for one line of the log: what
    `_UNLOGGABLE` matches written as a ``\\xNN``/``\\uNNNN`` escape (a backslash as
    ``\\\\``), lone surrogates as `printable` writes them. Valid text without those comes
    back unchanged. Raises nothing."""
    return printable(_UNLOGGABLE.sub(_escape, text))


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char == "\\":
        return "\\\\"
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def causes(error: BaseException) -> str:
    """What caused `error`, each cause after the one it caused (``__cause__``, else an
    unsuppressed ``__context__``), as ``"; caused by Type: message"`` parts ("" if none)."""
    parts = []
    seen = {id(error)}
    current: BaseException | None = error
    while current is not None:
        following = current.__cause__
        if following is None and not current.__suppress_context__:
            following = current.__context__
        if following is None or id(following) in seen:
            break
        seen.add(id(following))
        parts.append(f"; caused by {type(following).__name__}: {following}")
        current = following
    return "".join(parts)


def error_response(error: VirtError) -> Response:
    """`error_answer` as a response object (for FastAPI's exception handlers)."""
    status, body, headers = error_answer(error)
    response = Response(body, status_code=status, media_type="application/json")
    for name, value in headers:
        response.headers[name.decode()] = value.decode()
    return response


async def send_json(send: Send, status: int, body: bytes, headers: Headers = ()) -> None:
    """Send a whole JSON answer over plain ASGI."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-length", str(len(body)).encode()), JSON_TYPE, *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, error: VirtError) -> None:
    """Send `error_answer(error)` over plain ASGI."""
    status, body, headers = error_answer(error)
    await send_json(send, status, body, headers)


def unexpected(exc: BaseException) -> InternalError:
    """The error that answers an exception no handler expected (a bug); `exc` is its cause,
    so `error_answer` logs its traceback."""
    error = InternalError(
        f"virtjobd failed unexpectedly ({type(exc).__name__}: {exc}); this is a bug, see the"
        f" daemon's log"
    )
    error.__cause__ = exc
    return error


def auth_refused(authorization: bytes | None) -> AuthError:
    """The error for a request without the right bearer token."""
    what = "no bearer token" if authorization is None else "a wrong bearer token"
    return AuthError(
        f"virtjobd refused the request: it carries {what}; give the daemon's token with"
        f" $VIRTJOB_TOKEN or ?token_file= in the connection URI"
    )
