"""What a virtual network is made of: `NetworkConfig` and its `DhcpRange`.

Frozen, hashable dataclasses that check themselves: building one with an invalid value raises
`~virtjob.errors.InvalidArgError`. Addresses are IPv4, kept as canonical dotted-quad strings;
`NetworkConfig.ip_network` gives the `ipaddress.IPv4Network` they belong to.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from uuid import UUID, uuid4

from virtjob.config.validate import (
    InvalidValue,
    check_bridge_name,
    check_choice,
    check_dns_name,
    check_ipv4,
    check_name,
    check_netmask,
)
from virtjob.errors import InvalidArgError

__all__ = [
    "FORWARD_MODES",
    "DhcpRange",
    "NetworkConfig",
    "check_host_address",
    "check_in_network",
    "network_of",
]

FORWARD_MODES = ("nat", "route", "open")
"""Accepted ``<forward mode=...>`` values; no ``<forward>`` (None) is an isolated network."""


def network_of(address: str, netmask: str) -> ipaddress.IPv4Network:
    """The IPv4 network that host `address` with `netmask` belongs to."""
    return ipaddress.IPv4Interface(f"{address}/{netmask}").network


def _is_edge(address: ipaddress.IPv4Address, network: ipaddress.IPv4Network) -> bool:
    """True for the network or broadcast address of a network with room for hosts."""
    return network.prefixlen <= 30 and address in (
        network.network_address,
        network.broadcast_address,
    )


def check_host_address(address: str, netmask: str, what: str) -> None:
    """Check that `address` is a usable host address under `netmask`; raises `InvalidValue`."""
    network = network_of(address, netmask)
    if _is_edge(ipaddress.IPv4Address(address), network):
        raise InvalidValue(
            f"{what} {address!r} is the network or broadcast address of {network}; "
            "give the host's own address, e.g. the first one after the network address"
        )


def check_in_network(value: str, address: str, netmask: str, what: str) -> None:
    """Check that host `value` lies inside the network of `address`/`netmask`.

    It may not be the network or broadcast address. Raises `InvalidValue` otherwise.
    """
    network = network_of(address, netmask)
    host = ipaddress.IPv4Address(value)
    if host not in network or _is_edge(host, network):
        raise InvalidValue(
            f"{what} {value!r} is outside the network {network} (its hosts are "
            f"{network.network_address + 1} to {network.broadcast_address - 1}); "
            "pick an address inside it"
        )


def _guarded_ipv4(value: str, what: str) -> str:
    """`check_ipv4`, also refusing a non-string value."""
    if not isinstance(value, str):
        raise InvalidValue(f"{what} must be a string such as '192.168.122.1'")
    return check_ipv4(value, what)


@dataclass(frozen=True, slots=True)
class DhcpRange:
    """The addresses a network's DHCP server hands out, ``start`` to ``end`` inclusive.

    Both are IPv4 addresses (stored canonically) and `start` <= `end`; raises
    `InvalidArgError` otherwise.
    """

    start: str
    end: str

    def __post_init__(self) -> None:
        try:
            start = _guarded_ipv4(self.start, "DhcpRange.start")
            end = _guarded_ipv4(self.end, "DhcpRange.end")
            if ipaddress.IPv4Address(start) > ipaddress.IPv4Address(end):
                raise InvalidValue(f"DhcpRange start {start!r} comes after end {end!r}; swap them")
        except InvalidValue as exc:
            raise InvalidArgError(str(exc)) from exc
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkConfig:
    """A network definition: the parsed form of libvirt-style network XML.

    `forward_mode` is 'nat', 'route', 'open' or None (isolated). `ip_address` and `netmask`
    come together (the host's address on the bridge); `dhcp` needs them and must lie inside
    their network. `uuid` defaults to a fresh random one. Keyword arguments only. Raises
    `InvalidArgError` when a value is invalid.
    """

    name: str
    uuid: UUID = field(default_factory=uuid4)
    bridge: str | None = None
    forward_mode: str | None = None
    domain_name: str | None = None
    ip_address: str | None = None
    netmask: str | None = None
    dhcp: DhcpRange | None = None

    def __post_init__(self) -> None:
        try:
            self._check()
        except InvalidValue as exc:
            raise InvalidArgError(str(exc)) from exc

    def _check(self) -> None:
        check_name(self.name, "NetworkConfig.name")
        if not isinstance(self.uuid, UUID):
            raise InvalidValue("NetworkConfig.uuid must be a uuid.UUID")
        if self.bridge is not None:
            check_bridge_name(self.bridge, "NetworkConfig.bridge")
        if self.forward_mode is not None:
            check_choice(self.forward_mode, "NetworkConfig.forward_mode", FORWARD_MODES)
        if self.domain_name is not None:
            check_dns_name(self.domain_name, "NetworkConfig.domain_name")
        if (self.ip_address is None) != (self.netmask is None):
            raise InvalidValue(
                "NetworkConfig.ip_address and netmask go together; give both or neither"
            )
        if self.ip_address is not None and self.netmask is not None:
            address = _guarded_ipv4(self.ip_address, "NetworkConfig.ip_address")
            if not isinstance(self.netmask, str):
                raise InvalidValue("NetworkConfig.netmask must be a string like '255.255.255.0'")
            netmask = check_netmask(self.netmask, "NetworkConfig.netmask")
            check_host_address(address, netmask, "NetworkConfig.ip_address")
            object.__setattr__(self, "ip_address", address)
            object.__setattr__(self, "netmask", netmask)
        if self.dhcp is not None:
            if not isinstance(self.dhcp, DhcpRange):
                raise InvalidValue("NetworkConfig.dhcp must be a DhcpRange or None")
            if self.ip_address is None or self.netmask is None:
                raise InvalidValue(
                    "NetworkConfig.dhcp needs ip_address and netmask; give them or drop dhcp"
                )
            for value in (self.dhcp.start, self.dhcp.end):
                check_in_network(value, self.ip_address, self.netmask, "NetworkConfig.dhcp")

    @property
    def ip_network(self) -> ipaddress.IPv4Network | None:
        """The IPv4 network of `ip_address`/`netmask`, or None when the network has no IP."""
        if self.ip_address is None or self.netmask is None:
            return None
        return network_of(self.ip_address, self.netmask)

    @property
    def prefix(self) -> int | None:
        """The prefix length of `netmask` (24 for '255.255.255.0'), or None."""
        network = self.ip_network
        return None if network is None else network.prefixlen
