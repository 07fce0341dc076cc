"""How domains, networks, their snapshots and a host's capabilities cross the wire.

- ref: ``{"type": "domain"|"network", "name", "uuid"}`` (`virtjob.api.refs`, re-exported here);
- domain info, network info: one key per field of `DomainInfo`, `NetworkInfo`;
- capabilities: one key per field of `Capabilities`, ``job_kinds`` a sorted list (kinds this
  side does not know are left out when decoding).

Decoders raise `InternalError` (via `malformed`) for a value of the wrong shape.
"""

from __future__ import annotations

from typing import Any

from virtjob.drivers.base import Capabilities, DomainInfo, NetworkInfo
from virtjob.jobs.types import JobKind

from .codec import DataclassCodec, MalformedError, malformed
from .refs import Ref, decode_domain_ref, decode_network_ref, decode_ref, encode_ref

__all__ = [
    "Ref",
    "decode_capabilities",
    "decode_domain_info",
    "decode_domain_ref",
    "decode_network_info",
    "decode_network_ref",
    "decode_ref",
    "encode_capabilities",
    "encode_domain_info",
    "encode_network_info",
    "encode_ref",
    "malformed",
]


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
    return _DOMAIN_INFO.decode_from_peer(data, "domain info")


def encode_network_info(info: NetworkInfo) -> dict[str, Any]:
    """A `NetworkInfo` as JSON."""
    return _NETWORK_INFO.encode(info)


def decode_network_info(data: Any) -> NetworkInfo:
    """A `NetworkInfo`; `InternalError` if malformed."""
    return _NETWORK_INFO.decode_from_peer(data, "network info")


def encode_capabilities(caps: Capabilities) -> dict[str, Any]:
    """`Capabilities` as JSON (job kinds sorted, for stable output)."""
    return _CAPABILITIES.encode(caps)


def decode_capabilities(data: Any) -> Capabilities:
    """`Capabilities`; `InternalError` if malformed."""
    return _CAPABILITIES.decode_from_peer(data, "capabilities")
