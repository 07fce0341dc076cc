"""The contract between virtjobd and its clients: what crosses the wire, defined once.

Both the daemon (`virtjob.daemon`) and the remote driver (`virtjob.drivers.remote`) import
this package and neither imports the other. It is pure standard library over virtjob's own
types, so importing it costs neither side the other's dependencies.

- `document`: `JobDocument`, the one shape of a job (answers, storage, events, ``--json``);
- `objects`: refs, domain and network snapshots, capabilities;
- `errors`: an error as JSON, and the HTTP status that carries it;
- `routes`: which request carries each `Driver` and `JobDriver` operation;
- `codec`: the dataclass codec the others are built on.
"""

from __future__ import annotations

from .document import (
    SCHEMA_VERSION,
    JobDocument,
    decode_info,
    decode_job,
    encode_info,
    encode_job,
)
from .errors import decode_error, encode_error, status_for
from .routes import API_PREFIX, HOST_ROUTES, JOB_ROUTES, Route, host_base, quote_segment

__all__ = [
    "API_PREFIX",
    "HOST_ROUTES",
    "JOB_ROUTES",
    "SCHEMA_VERSION",
    "JobDocument",
    "Route",
    "decode_error",
    "decode_info",
    "decode_job",
    "encode_error",
    "encode_info",
    "encode_job",
    "host_base",
    "quote_segment",
    "status_for",
]
