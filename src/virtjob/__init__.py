"""virtjob: virtual machines and networks managed through asynchronous, cancellable jobs."""

from virtjob.connection import Connection, open
from virtjob.domain import Domain, DomainInfo, DomainState
from virtjob.drivers.base import Capabilities
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
from virtjob.job import Job
from virtjob.jobs import JobInfo, JobKind, JobState
from virtjob.network import Network, NetworkInfo

__version__ = "0.1.0"

__all__ = [
    "AccessDeniedError",
    "AuthError",
    "Capabilities",
    "ConnectError",
    "Connection",
    "Domain",
    "DomainInfo",
    "DomainState",
    "ErrorCode",
    "InternalError",
    "InvalidArgError",
    "Job",
    "JobCancelledError",
    "JobInfo",
    "JobKind",
    "JobState",
    "JobTimeoutError",
    "Network",
    "NetworkInfo",
    "NoDomainError",
    "NoJobError",
    "NoNetworkError",
    "NoSupportError",
    "OperationFailedError",
    "OperationInvalidError",
    "VirtError",
    "XMLError",
    "__version__",
    "open",
]
