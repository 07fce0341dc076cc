"""Network XML: `parse_network_xml` reads libvirt-style ``<network>`` documents into
`NetworkConfig`, `format_network_xml` writes one back in canonical form.

The supported subset is described in ``docs/xml.md``; unknown elements and attributes are
ignored, as libvirt does, while a known one with an unsupported value is an `XMLError`.
"""

from __future__ import annotations

import ipaddress
import re

from lxml import etree

from virtjob.config.elements import read_name, read_uuid
from virtjob.config.network import (
    FORWARD_MODES,
    DhcpRange,
    NetworkConfig,
    check_host_address,
    check_in_network,
)
from virtjob.config.parser import Document, parse_document
from virtjob.config.validate import (
    check_bridge_name,
    check_dns_name,
    check_ipv4,
    check_netmask,
)
from virtjob.config.writer import Node, render

__all__ = ["format_network_xml", "parse_network_xml"]

_PREFIX = re.compile(r"[0-9]{1,2}")


def _read_forward(document: Document, root: etree._Element) -> str | None:
    """The forward mode; ``<forward/>`` without a mode means 'nat', as in libvirt."""
    forward = document.child(root, "forward")
    if forward is None:
        return None
    mode = forward.get("mode", "nat")
    if mode not in FORWARD_MODES:
        raise document.error(
            forward,
            f"<forward> mode {mode!r} is not supported; use mode='nat', 'route' or 'open', "
            "or leave <forward> out for an isolated network",
            "mode",
        )
    return mode


def _read_netmask(document: Document, ip: etree._Element) -> str:
    """The netmask of ``<ip>``, from ``netmask=`` or ``prefix=`` (exactly one of them)."""
    netmask = ip.get("netmask")
    prefix = ip.get("prefix")
    if netmask is not None and prefix is not None:
        raise document.error(
            ip, "<ip> has both netmask= and prefix=; keep only one of them", "prefix"
        )
    if netmask is not None:
        return document.check(ip, "netmask", lambda: check_netmask(netmask, "<ip> netmask"))
    if prefix is None:
        raise document.error(
            ip, "<ip> has no netmask= or prefix=; add one, e.g. netmask='255.255.255.0'"
        )
    if not _PREFIX.fullmatch(prefix.strip()) or not 1 <= int(prefix) <= 32:
        raise document.error(
            ip, f"<ip> prefix {prefix!r} is not a prefix length; use 1 to 32, e.g. '24'", "prefix"
        )
    return str(ipaddress.IPv4Network(f"0.0.0.0/{int(prefix)}").netmask)


def _read_dhcp(
    document: Document, ip: etree._Element, address: str, netmask: str
) -> DhcpRange | None:
    """The single ``<dhcp><range>`` of ``<ip>``, checked to lie inside its network."""
    dhcp = document.child(ip, "dhcp")
    if dhcp is None:
        return None
    ranges = document.children(dhcp, "range")
    if not ranges:
        return None
    if len(ranges) > 1:
        raise document.error(
            ranges[1], "only one <range> per <dhcp> is supported; merge or remove the others"
        )
    element = ranges[0]
    start_text = document.require_attribute(element, "start", "start='192.168.122.2'")
    end_text = document.require_attribute(element, "end", "end='192.168.122.254'")
    start = document.check(element, "start", lambda: check_ipv4(start_text, "<range> start"))
    end = document.check(element, "end", lambda: check_ipv4(end_text, "<range> end"))
    document.check(
        element, "start", lambda: check_in_network(start, address, netmask, "<range> start")
    )
    document.check(element, "end", lambda: check_in_network(end, address, netmask, "<range> end"))
    return document.check(element, "start", lambda: DhcpRange(start, end))


def parse_network_xml(data: str | bytes) -> NetworkConfig:
    """Parse a libvirt-style ``<network>`` document (str or UTF-8 bytes) into a `NetworkConfig`.

    A document without ``<uuid>`` gets a new random one. Raises `XMLError`, with the line and
    column of the problem, for an unsafe or malformed document, a missing ``<name>``, an
    unknown forward mode, a bad address or netmask, or a DHCP range outside the network. Raises
    `InvalidArgError` when `data` is neither str nor bytes.
    """
    document = parse_document(data, "network")
    root = document.root
    name = read_name(document, root, "default")
    network_uuid = read_uuid(document, root)
    forward_mode = _read_forward(document, root)
    bridge = None
    bridge_element = document.child(root, "bridge")
    if bridge_element is not None and (bridge_name := bridge_element.get("name")) is not None:
        bridge = document.check(
            bridge_element, "name", lambda: check_bridge_name(bridge_name, "<bridge> name")
        )
    domain_name = None
    domain_element = document.child(root, "domain")
    if domain_element is not None:
        dns = document.require_attribute(domain_element, "name", "name='example.lan'")
        domain_name = document.check(
            domain_element, "name", lambda: check_dns_name(dns, "<domain> name")
        )
    address = netmask = None
    dhcp = None
    ips = document.children(root, "ip")
    if len(ips) > 1:
        raise document.error(ips[1], "only one <ip> element is supported; remove the others")
    if ips:
        ip = ips[0]
        family = ip.get("family", "ipv4")
        if family != "ipv4":
            raise document.error(
                ip, f"<ip> family {family!r} is not supported; only IPv4 is", "family"
            )
        text = document.require_attribute(ip, "address", "address='192.168.122.1'")
        address = document.check(ip, "address", lambda: check_ipv4(text, "<ip> address"))
        netmask = _read_netmask(document, ip)
        host, mask = address, netmask
        document.check(ip, "address", lambda: check_host_address(host, mask, "<ip> address"))
        dhcp = _read_dhcp(document, ip, address, netmask)
    return document.check(
        root,
        None,
        lambda: NetworkConfig(
            name=name,
            uuid=network_uuid,
            bridge=bridge,
            forward_mode=forward_mode,
            domain_name=domain_name,
            ip_address=address,
            netmask=netmask,
            dhcp=dhcp,
        ),
    )


def format_network_xml(config: NetworkConfig) -> str:
    """Write `config` as canonical, pretty-printed network XML (the netmask as netmask=).

    `parse_network_xml` reads the result back to an equal `NetworkConfig`. Raises nothing.
    """
    root = Node("network")
    root.add("name", text=config.name)
    root.add("uuid", text=str(config.uuid))
    if config.forward_mode is not None:
        root.add("forward", {"mode": config.forward_mode})
    if config.bridge is not None:
        root.add("bridge", {"name": config.bridge})
    if config.domain_name is not None:
        root.add("domain", {"name": config.domain_name})
    if config.ip_address is not None and config.netmask is not None:
        ip = root.add("ip", {"address": config.ip_address, "netmask": config.netmask})
        if config.dhcp is not None:
            ip.add("dhcp").add("range", {"start": config.dhcp.start, "end": config.dhcp.end})
    return render(root)
