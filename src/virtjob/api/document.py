"""`JobDocument`: everything known about one job, the one shape in which a job crosses the wire.

virtjobd answers every job route with it, stores it, and streams its ``info``; the remote
driver decodes it; ``virtjob ... --json`` prints it. As JSON (`encode_job`)::

    {"schema": 2, "id", "host", "kind", "subject",
     "info": {"state", "bounded", "elapsed", "remaining", "percent", "processed", "total",
              "cancel_requested"},
     "result": ref | null, "error": error | null, "target": path | null,
     "created": unix-seconds, "started": unix-seconds | null, "ended": unix-seconds | null}

``info`` has one key per field of `JobInfo`, ``result`` is a ref (`virtjob.api.objects`) for a
succeeded create, start or restore job, ``error`` an error object (`virtjob.api.errors`) for a
failed one. Keys are only ever added: a decoder ignores keys it does not know and gives a
missing one its default, so a field added to `JobDocument` or `JobInfo` with a default is
added to the wire, the store and the CLI's ``--json`` by that one edit.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from virtjob.errors import InternalError, VirtError
from virtjob.jobs.types import JobInfo, JobKind, JobOutcome, JobState
from virtjob.refs import DomainRef, NetworkRef

from .codec import DataclassCodec, MalformedError
from .errors import decode_error, encode_error
from .refs import decode_ref, encode_ref

SCHEMA_VERSION = 2
"""The job document's version: 2 added ``schema`` itself to the keys of virtjob 0.1's job."""


@dataclass(frozen=True, slots=True)
class JobDocument:
    """One job: identity, latest progress, outcome once final, the file it writes, its times."""

    id: str
    host: str
    """The URI of the host that runs the job, e.g. ``test:///default``."""
    kind: JobKind
    subject: str
    """The name of the domain or network it acts on (a restore: the saved domain's name)."""
    info: JobInfo
    result: DomainRef | NetworkRef | None = None
    """What a succeeded create, start or restore job made."""
    error: VirtError | None = dataclasses.field(default=None, compare=False)
    """Why a failed job failed."""
    target: str | None = None
    """The file a save or dump writes."""
    created: float = 0.0
    """Wall-clock time (Unix seconds, the host's clock) the job was created."""
    started: float | None = None
    """When it started running, if it has."""
    ended: float | None = None
    """When it ended, if it has."""
    progressed: float | None = None
    """When its percent last advanced (or it was initialized): a running job whose
    ``progressed`` is long past is stalled. None before it reports any progress."""
    schema: int = SCHEMA_VERSION

    @property
    def outcome(self) -> JobOutcome | None:
        """How the job ended, or None while it has not."""
        state = self.info.state
        if not state.terminal:
            return None
        return JobOutcome(state, self.result if state is JobState.SUCCEEDED else None, self.error)

    @classmethod
    def build(
        cls,
        *,
        job_id: str,
        host: str,
        kind: JobKind,
        subject: str,
        info: JobInfo,
        outcome: JobOutcome | None,
        target: str | None,
        created: float,
        started: float | None,
        ended: float | None,
        progressed: float | None = None,
    ) -> JobDocument:
        """The document of a job from what its job driver knows (the one mapping from a
        running job to its document; a result that is not a ref is left out)."""
        result: DomainRef | NetworkRef | None = None
        error = None
        if outcome is not None:
            if isinstance(outcome.result, DomainRef | NetworkRef):
                result = outcome.result
            error = outcome.error
        return cls(
            id=job_id,
            host=host,
            kind=kind,
            subject=subject,
            info=info,
            result=result,
            error=error,
            target=target,
            created=created,
            started=started,
            ended=ended,
            progressed=progressed,
        )


def _decode_error(data: Any) -> VirtError:
    if not isinstance(data, dict):
        raise MalformedError(f"expected an error object, got {data!r}")
    return decode_error(data)


_INFO = DataclassCodec(JobInfo)
_JOB = DataclassCodec(
    JobDocument,
    {
        DomainRef | NetworkRef: (encode_ref, decode_ref),
        VirtError: (encode_error, _decode_error),
    },
)


def encode_info(info: JobInfo) -> dict[str, Any]:
    """A `JobInfo` as JSON (the ``info`` of a job document, and each job event's data)."""
    return _INFO.encode(info)


def decode_info(data: Any) -> JobInfo:
    """A `JobInfo`; `InternalError` if malformed."""
    return _INFO.decode_from_peer(data, "job info")


def encode_job(document: JobDocument) -> dict[str, Any]:
    """A `JobDocument` as JSON (see the module docs)."""
    return _JOB.encode(document)


def _versioned(data: Any) -> Any:
    """`data` with ``"schema": 1`` if it is a document without one (virtjob 0.1's)."""
    if isinstance(data, dict) and "schema" not in data:
        return {**data, "schema": 1}
    return data


def decode_job(data: Any) -> JobDocument:
    """A `JobDocument`; `InternalError` naming the bad field if malformed. A document without
    ``schema`` (virtjob 0.1's) is schema 1."""
    return _JOB.decode_from_peer(_versioned(data), "job")


def decode_stored_job(data: Any) -> JobDocument:
    """A `JobDocument` read back from storage; `InternalError` if it is not one (a damaged
    database) saying so, not blaming a daemon version."""
    data = _versioned(data)
    try:
        return _JOB.decode(data)
    except MalformedError as exc:
        raise InternalError(f"a stored job is damaged ({exc}): {str(data)[:200]}") from exc
