"""Property: every valid configuration is written and read back unchanged, in one canonical form."""

from __future__ import annotations

import ipaddress
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from virtjob.config import (
    MAX_MEMORY,
    DhcpRange,
    DiskConfig,
    DomainConfig,
    InterfaceConfig,
    NetworkConfig,
    format_domain_xml,
    format_network_xml,
    parse_domain_xml,
    parse_network_xml,
)

_XML_CONTROLS = [chr(c) for c in range(0x20) if c not in (0x09, 0x0A, 0x0D)]
xml_text = st.text(
    st.characters(
        blacklist_categories=["Cs"], blacklist_characters=[*_XML_CONTROLS, "\ufffe", "\uffff"]
    ),
    max_size=40,
)
names = st.text(
    st.characters(
        blacklist_categories=["Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"],
        blacklist_characters="/",
    ),
    min_size=1,
    max_size=64,
).filter(lambda name: name[0] not in ".-")
tokens = st.from_regex(re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:+-]{0,20}"), fullmatch=True)
paths = xml_text.map(lambda rest: "/" + rest)
kib = st.integers(1, MAX_MEMORY // 1024)


@st.composite
def macs(draw: st.DrawFn) -> str:
    octets = draw(st.lists(st.integers(0, 255), min_size=6, max_size=6))
    octets[0] &= 0xFE
    text = ":".join(f"{octet:02x}" for octet in octets)
    return text.upper() if draw(st.booleans()) else text


@st.composite
def disks(draw: st.DrawFn) -> DiskConfig:
    device = draw(st.sampled_from(["disk", "cdrom"]))
    source = draw(paths if device == "disk" else st.one_of(st.just(""), paths))
    target = draw(st.from_regex(re.compile(r"(vd|sd|hd)[a-z]{1,3}"), fullmatch=True))
    return DiskConfig(
        source=source,
        target=target,
        bus=draw(st.sampled_from(["virtio", "sata", "scsi", "ide", "usb"])),
        device=device,
        format=draw(st.sampled_from(["raw", "qcow2"])),
        readonly=draw(st.booleans()),
    )


@st.composite
def interfaces(draw: st.DrawFn) -> InterfaceConfig:
    kind = draw(st.sampled_from(["user", "network"]))
    return InterfaceConfig(
        type=kind,
        mac=draw(st.none() | macs()),
        model=draw(st.none() | st.from_regex(re.compile(r"[A-Za-z0-9_-]{1,20}"), fullmatch=True)),
        network=draw(names) if kind == "network" else None,
    )


@st.composite
def domains(draw: st.DrawFn) -> DomainConfig:
    memory = draw(kib)
    return DomainConfig(
        name=draw(names),
        uuid=draw(st.uuids()),
        memory=memory * 1024,
        current_memory=draw(st.integers(0, memory)) * 1024,
        vcpus=draw(st.integers(1, 4096)),
        domain_type=draw(st.sampled_from(["kvm", "qemu", "test"])),
        arch=draw(st.none() | tokens),
        machine=draw(st.none() | tokens),
        emulator=draw(st.none() | paths),
        disks=tuple(draw(st.lists(disks(), max_size=4, unique_by=lambda d: d.target))),
        interfaces=tuple(draw(st.lists(interfaces(), max_size=3))),
        qemu_args=tuple(draw(st.lists(xml_text, max_size=4))),
        description=draw(st.none() | xml_text),
    )


@st.composite
def networks(draw: st.DrawFn) -> NetworkConfig:
    address = netmask = None
    dhcp = None
    if draw(st.booleans()):
        prefix = draw(st.integers(1, 32))
        network = ipaddress.IPv4Network((draw(st.integers(0, 2**32 - 1)), prefix), strict=False)
        low, high = int(network.network_address), int(network.broadcast_address)
        if prefix <= 30:
            low, high = low + 1, high - 1
        address = str(ipaddress.IPv4Address(draw(st.integers(low, high))))
        netmask = str(network.netmask)
        if draw(st.booleans()):
            start = draw(st.integers(low, high))
            end = draw(st.integers(start, high))
            dhcp = DhcpRange(str(ipaddress.IPv4Address(start)), str(ipaddress.IPv4Address(end)))
    return NetworkConfig(
        name=draw(names),
        uuid=draw(st.uuids()),
        bridge=draw(
            st.none()
            | st.from_regex(re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}"), fullmatch=True)
        ),
        forward_mode=draw(st.sampled_from([None, "nat", "route", "open"])),
        domain_name=draw(
            st.none()
            | st.from_regex(
                re.compile(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?(\.[a-z0-9]{1,8}){0,3}"),
                fullmatch=True,
            )
        ),
        ip_address=address,
        netmask=netmask,
        dhcp=dhcp,
    )


@settings(max_examples=200, deadline=None)
@given(domains())
def test_domain_round_trip(config: DomainConfig) -> None:
    text = format_domain_xml(config)
    assert parse_domain_xml(text) == config
    assert parse_domain_xml(text.encode("utf-8")) == config
    assert format_domain_xml(parse_domain_xml(text)) == text


@settings(max_examples=200, deadline=None)
@given(networks())
def test_network_round_trip(config: NetworkConfig) -> None:
    text = format_network_xml(config)
    assert parse_network_xml(text) == config
    assert parse_network_xml(text.encode("utf-8")) == config
    assert format_network_xml(parse_network_xml(text)) == text
