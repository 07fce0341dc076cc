"""virtjob: virtual machines and networks managed through asynchronous, cancellable jobs."""

from virtjob.errors import (
    AccessDeniedError,
    AuthError,
    ConnectError,
    ErrorCode,
    InternalError,
    InvalidArgError,
    JobCancelledError,
    JobTimeoutError,
    NoDomainError,
    NoJobError,
    NoNetworkError,
    NoSupportError,
    OperationFailedError,
    OperationInvalidError,
    VirtError,
    XMLError,
)
from virtjob.jobs import Job, JobInfo, JobKind, JobState

__version__ = "0.1.0"

__all__ = [
    "AccessDeniedError",
    "AuthError",
    "ConnectError",
    "ErrorCode",
    "InternalError",
    "InvalidArgError",
    "Job",
    "JobCancelledError",
    "JobInfo",
    "JobKind",
    "JobState",
    "JobTimeoutError",
    "NoDomainError",
    "NoJobError",
    "NoNetworkError",
    "NoSupportError",
    "OperationFailedError",
    "OperationInvalidError",
    "VirtError",
    "XMLError",
    "__version__",
]
