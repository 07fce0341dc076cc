"""How domains, networks, their snapshots and a host's capabilities cross the wire.

- ref: ``{"type": "domain"|"network", "name", "uuid"}``;
- domain info, network info: one key per field of `DomainInfo`, `NetworkInfo`;
- capabilities: one key per field of `Capabilities`, ``job_kinds`` a sorted list (kinds this
  side does not know are left out when decoding).

Decoders raise `InternalError` (via `malformed`) for a value of the wrong shape.
"""

from __future__ import annotations

import uuid
from typing import Any

from virtjob.drivers.base import Capabilities, DomainInfo, DomainRef, NetworkInfo, NetworkRef
from virtjob.errors import InternalError
from virtjob.jobs.types import JobKind

from .codec import DataclassCodec, MalformedError

Ref = DomainRef | NetworkRef


def malformed(what: str, data: object, exc: BaseException) -> InternalError:
    """The error for a `what` the peer sent that does not have the expected shape."""
    return InternalError(
        f"the daemon sent a malformed {what} ({exc}): {str(data)[:200]}; are the daemon and"
        f" this client the same virtjob version?"
    )


def encode_ref(ref: Ref) -> dict[str, Any]:
    """A domain or network ref as JSON."""
    kind = "domain" if isinstance(ref, DomainRef) else "network"
    return {"type": kind, "name": ref.name, "uuid": str(ref.uuid)}


def decode_ref(data: Any) -> Ref:
    """The ref `data` describes; `MalformedError` if it is not one."""
    if not isinstance(data, dict):
        raise MalformedError(f"expected a domain or network reference, got {data!r}")
    try:
        kind, name, ident = data["type"], data["name"], uuid.UUID(data["uuid"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise MalformedError(f"not a domain or network reference ({exc!r})") from exc
    if not isinstance(name, str):
        raise MalformedError(f"a reference's name is a string, not {name!r}")
    if kind == "domain":
        return DomainRef(name, ident)
    if kind == "network":
        return NetworkRef(name, ident)
    raise MalformedError(f"unknown reference type {kind!r}")


def decode_domain_ref(data: Any) -> DomainRef:
    """A domain ref; `InternalError` if `data` is anything else."""
    try:
        ref = decode_ref(data)
        if isinstance(ref, DomainRef):
            return ref
        raise MalformedError("a network where a domain was expected")
    except MalformedError as exc:
        raise malformed("domain reference", data, exc) from exc


def decode_network_ref(data: Any) -> NetworkRef:
    """A network ref; `InternalError` if `data` is anything else."""
    try:
        ref = decode_ref(data)
        if isinstance(ref, NetworkRef):
            return ref
        raise MalformedError("a domain where a network was expected")
    except MalformedError as exc:
        raise malformed("network reference", data, exc) from exc


def _encode_kinds(kinds: frozenset[JobKind]) -> list[str]:
    return sorted(str(kind) for kind in kinds)


def _decode_kinds(data: Any) -> frozenset[JobKind]:
    if not isinstance(data, list):
        raise MalformedError(f"expected a list of job kinds, got {data!r}")
    return frozenset(JobKind(k) for k in data if k in JobKind._value2member_map_)


_DOMAIN_INFO = DataclassCodec(DomainInfo)
_NETWORK_INFO = DataclassCodec(NetworkInfo)
_CAPABILITIES = DataclassCodec(Capabilities, {frozenset[JobKind]: (_encode_kinds, _decode_kinds)})


def encode_domain_info(info: DomainInfo) -> dict[str, Any]:
    """A `DomainInfo` as JSON."""
    return _DOMAIN_INFO.encode(info)


def decode_domain_info(data: Any) -> DomainInfo:
    """A `DomainInfo`; `InternalError` if malformed."""
    try:
        return _DOMAIN_INFO.decode(data)
    except MalformedError as exc:
        raise malformed("domain info", data, exc) from exc


def encode_network_info(info: NetworkInfo) -> dict[str, Any]:
    """A `NetworkInfo` as JSON."""
    return _NETWORK_INFO.encode(info)


def decode_network_info(data: Any) -> NetworkInfo:
    """A `NetworkInfo`; `InternalError` if malformed."""
    try:
        return _NETWORK_INFO.decode(data)
    except MalformedError as exc:
        raise malformed("network info", data, exc) from exc


def encode_capabilities(caps: Capabilities) -> dict[str, Any]:
    """`Capabilities` as JSON (job kinds sorted, for stable output)."""
    return _CAPABILITIES.encode(caps)


def decode_capabilities(data: Any) -> Capabilities:
    """`Capabilities`; `InternalError` if malformed."""
    try:
        return _CAPABILITIES.decode(data)
    except MalformedError as exc:
        raise malformed("capabilities", data, exc) from exc
