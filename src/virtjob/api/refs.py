"""How a domain or network ref crosses the wire: ``{"type": "domain"|"network", "name", "uuid"}``.

Decoders raise `MalformedError` (`decode_ref`) or the `InternalError` the user sees
(`decode_domain_ref`, `decode_network_ref`).
"""

from __future__ import annotations

import uuid
from typing import Any

from virtjob.refs import DomainRef, NetworkRef

from .codec import MalformedError, malformed

Ref = DomainRef | NetworkRef


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
