"""The JSON shapes virtjobd and the remote driver exchange, and their encoders and decoders.

Pure standard library, so the daemon and the client share one definition without either
pulling in the other's dependencies. Decoders raise `InternalError` for a payload that does not
have the expected shape (a daemon of another version, or a bug), never a bare `KeyError`.

Shapes (all JSON objects):

- job: ``{"id", "host", "kind", "subject", "info", "result", "error", "target",
  "created", "started", "ended"}`` where ``info`` is `JobInfo.to_dict()`, ``result`` is a ref
  or null, ``error`` an error or null, the three times wall-clock seconds or null.
- ref: ``{"type": "domain"|"network", "name", "uuid"}``.
- error: ``{"code", "message"}`` plus ``"line"`` and ``"column"`` for an XML error.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from virtjob.drivers.base import (
    Capabilities,
    DomainInfo,
    DomainRef,
    DomainState,
    NetworkInfo,
    NetworkRef,
)
from virtjob.errors import InternalError, VirtError, XMLError, error_from_code
from virtjob.jobs import JobInfo, JobKind, JobOutcome, JobState

API_PREFIX = "/v1"
"""Every route of the daemon's API starts with this version prefix."""

Json = dict[str, Any]


def _malformed(what: str, data: object, exc: BaseException) -> InternalError:
    return InternalError(
        f"the daemon sent a malformed {what} ({exc!r}): {str(data)[:200]}; are the daemon and"
        f" this client the same virtjob version?"
    )


# -- refs ---------------------------------------------------------------------------------


def ref_to_dict(ref: DomainRef | NetworkRef) -> Json:
    """Encode a domain or network ref."""
    kind = "domain" if isinstance(ref, DomainRef) else "network"
    return {"type": kind, "name": ref.name, "uuid": str(ref.uuid)}


def ref_from_dict(data: Json) -> DomainRef | NetworkRef:
    """Decode a ref; `InternalError` if malformed."""
    try:
        kind = data["type"]
        name, ident = str(data["name"]), uuid.UUID(data["uuid"])
        if kind == "domain":
            return DomainRef(name, ident)
        if kind == "network":
            return NetworkRef(name, ident)
        raise ValueError(f"unknown type {kind!r}")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _malformed("domain or network reference", data, exc) from None


def domain_ref_from_dict(data: Json) -> DomainRef:
    """Decode a domain ref; `InternalError` if it is something else."""
    ref = ref_from_dict(data)
    if not isinstance(ref, DomainRef):
        raise _malformed("domain reference", data, TypeError("not a domain"))
    return ref


def network_ref_from_dict(data: Json) -> NetworkRef:
    """Decode a network ref; `InternalError` if it is something else."""
    ref = ref_from_dict(data)
    if not isinstance(ref, NetworkRef):
        raise _malformed("network reference", data, TypeError("not a network"))
    return ref


# -- errors -------------------------------------------------------------------------------


def error_to_dict(error: VirtError) -> Json:
    """Encode an error as ``{"code", "message"}`` (plus line/column for an `XMLError`)."""
    data: Json = {"code": str(error.code), "message": error.message}
    if isinstance(error, XMLError):
        data["line"] = error.line
        data["column"] = error.column
    return data


def error_from_dict(data: Json) -> VirtError:
    """Rebuild the `VirtError` subclass an error payload names."""
    try:
        code, message = str(data["code"]), str(data["message"])
    except (KeyError, TypeError) as exc:
        return _malformed("error", data, exc)
    if code == XMLError.code.value:
        line, column = data.get("line"), data.get("column")
        return XMLError(
            message,
            line if isinstance(line, int) else None,
            column if isinstance(column, int) else None,
        )
    return error_from_code(code, message)


# -- jobs ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobView:
    """A decoded job payload: identity, latest info, and the outcome once final."""

    id: str
    host: str
    kind: JobKind
    subject: str
    info: JobInfo
    result: DomainRef | NetworkRef | None
    error: VirtError | None
    started: float | None = None
    """Wall-clock time (daemon's clock) the job started running, if it has."""

    @property
    def outcome(self) -> JobOutcome | None:
        """How the job ended, or None while it has not."""
        state = self.info.state
        if not state.terminal:
            return None
        return JobOutcome(state, self.result if state is JobState.SUCCEEDED else None, self.error)


def job_from_dict(data: Json) -> JobView:
    """Decode a job payload; `InternalError` if malformed."""
    try:
        result = data.get("result")
        error = data.get("error")
        return JobView(
            id=str(data["id"]),
            host=str(data["host"]),
            kind=JobKind(data["kind"]),
            subject=str(data["subject"]),
            info=JobInfo.from_dict(data["info"]),
            result=None if result is None else ref_from_dict(result),
            error=None if error is None else error_from_dict(error),
            started=None if data.get("started") is None else float(data["started"]),
        )
    except (KeyError, TypeError, ValueError, AttributeError, VirtError) as exc:
        raise _malformed("job", data, exc) from None


def info_to_dict(info: JobInfo) -> Json:
    """Encode a `JobInfo`: `JobInfo.to_dict()`, built directly (no `dataclasses.asdict`, whose
    recursive copying costs more than a whole job read in the daemon)."""
    return {
        "state": info.state,
        "bounded": info.bounded,
        "elapsed": info.elapsed,
        "remaining": info.remaining,
        "percent": info.percent,
        "processed": info.processed,
        "total": info.total,
        "cancel_requested": info.cancel_requested,
    }


def info_from_dict(data: Json) -> JobInfo:
    """Decode a `JobInfo` payload; `InternalError` if malformed."""
    try:
        return JobInfo.from_dict(data)
    except (VirtError, TypeError, AttributeError) as exc:
        raise _malformed("job info", data, exc) from None


# -- domains, networks, capabilities ------------------------------------------------------


def domain_info_to_dict(info: DomainInfo) -> Json:
    """Encode a `DomainInfo`."""
    return {
        "name": info.name,
        "uuid": str(info.uuid),
        "id": info.id,
        "state": str(info.state),
        "memory": info.memory,
        "current_memory": info.current_memory,
        "vcpus": info.vcpus,
        "persistent": info.persistent,
        "os_type": info.os_type,
        "reason": info.reason,
    }


def domain_info_from_dict(data: Json) -> DomainInfo:
    """Decode a `DomainInfo`; `InternalError` if malformed."""
    try:
        return DomainInfo(
            name=str(data["name"]),
            uuid=uuid.UUID(data["uuid"]),
            id=None if data["id"] is None else int(data["id"]),
            state=DomainState(data["state"]),
            memory=int(data["memory"]),
            current_memory=int(data["current_memory"]),
            vcpus=int(data["vcpus"]),
            persistent=bool(data["persistent"]),
            os_type=str(data["os_type"]),
            reason=None if data.get("reason") is None else str(data["reason"]),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _malformed("domain info", data, exc) from None


def network_info_to_dict(info: NetworkInfo) -> Json:
    """Encode a `NetworkInfo`."""
    return {
        "name": info.name,
        "uuid": str(info.uuid),
        "active": info.active,
        "persistent": info.persistent,
        "bridge": info.bridge,
        "forward_mode": info.forward_mode,
    }


def network_info_from_dict(data: Json) -> NetworkInfo:
    """Decode a `NetworkInfo`; `InternalError` if malformed."""
    try:
        return NetworkInfo(
            name=str(data["name"]),
            uuid=uuid.UUID(data["uuid"]),
            active=bool(data["active"]),
            persistent=bool(data["persistent"]),
            bridge=None if data["bridge"] is None else str(data["bridge"]),
            forward_mode=None if data["forward_mode"] is None else str(data["forward_mode"]),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _malformed("network info", data, exc) from None


def capabilities_to_dict(caps: Capabilities) -> Json:
    """Encode `Capabilities` (job kinds sorted, for stable output)."""
    return {
        "driver": caps.driver,
        "job_kinds": sorted(str(kind) for kind in caps.job_kinds),
        "networks": caps.networks,
        "hypervisor": caps.hypervisor,
    }


def capabilities_from_dict(data: Json) -> Capabilities:
    """Decode `Capabilities`; job kinds this client does not know are left out."""
    try:
        kinds = frozenset(
            JobKind(kind) for kind in data["job_kinds"] if kind in JobKind._value2member_map_
        )
        return Capabilities(
            driver=str(data["driver"]),
            job_kinds=kinds,
            networks=bool(data["networks"]),
            hypervisor=str(data["hypervisor"]),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _malformed("capabilities", data, exc) from None
