"""Every error virtjob raises, and the code each one carries.

The tree::

    VirtError                      .code (ErrorCode), .message
     +-- NoSupportError            the driver does not offer this operation or job variant
     +-- NoDomainError             no domain by that name or UUID
     +-- NoNetworkError            no network by that name or UUID
     +-- NoJobError                no job by that id (never existed, or destroyed)
     +-- InvalidArgError           a bad argument: URI, path, value out of range
     +-- XMLError                  a domain or network document is malformed (.line, .column)
     +-- OperationInvalidError     not allowed in the object's current state (a job runs on it)
     +-- OperationFailedError      the operation was tried and failed (disk full, QEMU died)
     +-- AccessDeniedError         refused by policy: a path outside the allowed directories
     +-- JobCancelledError         the job was cancelled (raised by ``Job.result()``)
     +-- JobTimeoutError           a wait ran out of time; also a builtin ``TimeoutError``
     +-- AuthError                 the daemon refused the credentials
     +-- ConnectError              the host or daemon could not be reached
     +-- InternalError             a bug in virtjob or a driver; the traceback is logged

Each class is built from a message alone, e.g. ``OperationFailedError("disk full")``.
Messages name the object concerned and say what to do about it.
``error_from_code(code, message)`` rebuilds the right class from a code, for errors that
cross a process boundary (the daemon's JSON answers).
"""

from __future__ import annotations

import enum
from typing import ClassVar

__all__ = [
    "AccessDeniedError",
    "AuthError",
    "ConnectError",
    "ErrorCode",
    "InternalError",
    "InvalidArgError",
    "JobCancelledError",
    "JobTimeoutError",
    "NoDomainError",
    "NoJobError",
    "NoNetworkError",
    "NoSupportError",
    "OperationFailedError",
    "OperationInvalidError",
    "VirtError",
    "XMLError",
    "error_from_code",
]


class ErrorCode(enum.StrEnum):
    """What kind of failure a `VirtError` reports; names follow libvirt's ``VIR_ERR_*``."""

    INTERNAL_ERROR = "internal-error"
    NO_SUPPORT = "no-support"
    NO_DOMAIN = "no-domain"
    NO_NETWORK = "no-network"
    NO_JOB = "no-job"
    INVALID_ARG = "invalid-arg"
    XML_ERROR = "xml-error"
    OPERATION_INVALID = "operation-invalid"
    OPERATION_FAILED = "operation-failed"
    ACCESS_DENIED = "access-denied"
    OPERATION_ABORTED = "operation-aborted"
    OPERATION_TIMEOUT = "operation-timeout"
    AUTH_FAILED = "auth-failed"
    NO_CONNECT = "no-connect"


class VirtError(Exception):
    """Base of every virtjob error: carries a `code` and a human `message`."""

    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL_ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class NoSupportError(VirtError):
    """The driver does not support this operation or job variant."""

    code = ErrorCode.NO_SUPPORT


class NoDomainError(VirtError):
    """No domain matches the given name or UUID."""

    code = ErrorCode.NO_DOMAIN


class NoNetworkError(VirtError):
    """No network matches the given name or UUID."""

    code = ErrorCode.NO_NETWORK


class NoJobError(VirtError):
    """No job has that id: it never existed or was destroyed."""

    code = ErrorCode.NO_JOB


class InvalidArgError(VirtError):
    """An argument is malformed or out of range."""

    code = ErrorCode.INVALID_ARG


class XMLError(VirtError):
    """A domain or network XML document is malformed or invalid.

    `line` and `column` locate the problem in the document when known.
    """

    code = ErrorCode.XML_ERROR

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        super().__init__(message)
        self.line = line
        self.column = column

    def __reduce__(self) -> tuple[type[XMLError], tuple[str, int | None, int | None]]:
        return (type(self), (self.message, self.line, self.column))


class OperationInvalidError(VirtError):
    """The operation is not allowed in the object's current state."""

    code = ErrorCode.OPERATION_INVALID


class OperationFailedError(VirtError):
    """The operation was attempted and failed."""

    code = ErrorCode.OPERATION_FAILED


class AccessDeniedError(VirtError):
    """The request is refused by policy, e.g. a path outside the allowed directories."""

    code = ErrorCode.ACCESS_DENIED


class JobCancelledError(VirtError):
    """The job was cancelled before it could finish."""

    code = ErrorCode.OPERATION_ABORTED


class JobTimeoutError(VirtError, TimeoutError):
    """A wait ran out of time before the job finished; the job itself goes on."""

    code = ErrorCode.OPERATION_TIMEOUT


class AuthError(VirtError):
    """The daemon refused the request's credentials."""

    code = ErrorCode.AUTH_FAILED


class ConnectError(VirtError):
    """The host or daemon could not be reached."""

    code = ErrorCode.NO_CONNECT


class InternalError(VirtError):
    """A bug in virtjob or one of its drivers; details are logged."""

    code = ErrorCode.INTERNAL_ERROR


_BY_CODE: dict[ErrorCode, type[VirtError]] = {
    cls.code: cls
    for cls in (
        NoSupportError,
        NoDomainError,
        NoNetworkError,
        NoJobError,
        InvalidArgError,
        XMLError,
        OperationInvalidError,
        OperationFailedError,
        AccessDeniedError,
        JobCancelledError,
        JobTimeoutError,
        AuthError,
        ConnectError,
        InternalError,
    )
}


def error_from_code(code: str, message: str) -> VirtError:
    """Build the `VirtError` subclass for `code` (an `ErrorCode` value).

    An unknown code gives an `InternalError` that keeps the original code in its message.
    """
    try:
        cls = _BY_CODE[ErrorCode(code)]
    except ValueError:
        return InternalError(f"{message} (unknown error code {code!r})")
    return cls(message)
