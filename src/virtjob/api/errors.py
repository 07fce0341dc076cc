"""How an error crosses the wire: its JSON object, and the HTTP status that carries it.

An error is ``{"code", "message"}``, plus ``"line"`` and ``"column"`` for an `XMLError`. The
status says the same thing to HTTP tools (`status_for`); a client rebuilds the error from the
body alone (`decode_error`), so the two can never disagree about which error it was.
"""

from __future__ import annotations

from typing import Any

from virtjob.errors import ErrorCode, InternalError, VirtError, XMLError, error_from_code

HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.NO_DOMAIN: 404,
    ErrorCode.NO_NETWORK: 404,
    ErrorCode.NO_JOB: 404,
    ErrorCode.INVALID_ARG: 400,
    ErrorCode.XML_ERROR: 400,
    ErrorCode.OPERATION_INVALID: 409,
    ErrorCode.OPERATION_ABORTED: 409,
    ErrorCode.ACCESS_DENIED: 403,
    ErrorCode.AUTH_FAILED: 401,
    ErrorCode.NO_SUPPORT: 501,
    ErrorCode.OPERATION_TIMEOUT: 504,
    ErrorCode.NO_CONNECT: 502,
    ErrorCode.OPERATION_FAILED: 500,
    ErrorCode.INTERNAL_ERROR: 500,
}
"""The HTTP status of an error answer, by the error's code (500 for a code not listed)."""


def status_for(error: VirtError) -> int:
    """The HTTP status that answers `error` (an error class may set ``http_status``)."""
    return getattr(error, "http_status", None) or HTTP_STATUS.get(error.code, 500)


def encode_error(error: VirtError) -> dict[str, Any]:
    """`error` as ``{"code", "message"}`` (plus line and column for an `XMLError`)."""
    data: dict[str, Any] = {"code": str(error.code), "message": error.message}
    if isinstance(error, XMLError):
        data["line"] = error.line
        data["column"] = error.column
    return data


def decode_error(data: Any) -> VirtError:
    """The `VirtError` subclass an error object names; an `InternalError` describing it if
    it is not an error object (never raises)."""
    if not isinstance(data, dict) or "code" not in data or "message" not in data:
        return InternalError(
            f"the daemon sent a malformed error: {str(data)[:200]}; are the daemon and this"
            f" client the same virtjob version?"
        )
    code, message = str(data["code"]), str(data["message"])
    if code == XMLError.code.value:
        line, column = data.get("line"), data.get("column")
        return XMLError(
            message,
            line if isinstance(line, int) else None,
            column if isinstance(column, int) else None,
        )
    return error_from_code(code, message)
