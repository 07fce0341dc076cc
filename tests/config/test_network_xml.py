"""Network XML: what is read, how it is written, and an error (with position) for each mistake."""

from __future__ import annotations

import uuid

import pytest

from tests.config import expect_xml_error, position_of
from virtjob.config import (
    DhcpRange,
    NetworkConfig,
    format_network_xml,
    parse_network_xml,
)

FULL = """<network>
  <name>default</name>
  <uuid>9a05da11-e96b-47f3-8253-a3a482e445f5</uuid>
  <forward mode='nat'>
    <nat><port start='1024' end='65535'/></nat>
  </forward>
  <bridge name='virbr0' stp='on' delay='0'/>
  <mac address='52:54:00:0a:cd:21'/>
  <domain name='example.lan'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.122.2' end='192.168.122.254'/>
    </dhcp>
  </ip>
</network>
"""


def test_full_example_is_read() -> None:
    assert parse_network_xml(FULL) == NetworkConfig(
        name="default",
        uuid=uuid.UUID("9a05da11-e96b-47f3-8253-a3a482e445f5"),
        bridge="virbr0",
        forward_mode="nat",
        domain_name="example.lan",
        ip_address="192.168.122.1",
        netmask="255.255.255.0",
        dhcp=DhcpRange("192.168.122.2", "192.168.122.254"),
    )


def test_full_example_is_written_canonically() -> None:
    assert format_network_xml(parse_network_xml(FULL)) == (
        "<network>\n"
        "  <name>default</name>\n"
        "  <uuid>9a05da11-e96b-47f3-8253-a3a482e445f5</uuid>\n"
        "  <forward mode='nat'/>\n"
        "  <bridge name='virbr0'/>\n"
        "  <domain name='example.lan'/>\n"
        "  <ip address='192.168.122.1' netmask='255.255.255.0'>\n"
        "    <dhcp>\n"
        "      <range start='192.168.122.2' end='192.168.122.254'/>\n"
        "    </dhcp>\n"
        "  </ip>\n"
        "</network>\n"
    )


def test_minimal_isolated_network() -> None:
    config = parse_network_xml("<network><name>isolated</name></network>")
    assert config.uuid.version == 4
    assert (config.forward_mode, config.bridge, config.ip_address, config.dhcp) == (None,) * 4
    assert config.ip_network is None
    assert config.prefix is None
    assert format_network_xml(config) == (
        f"<network>\n  <name>isolated</name>\n  <uuid>{config.uuid}</uuid>\n</network>\n"
    )


def test_prefix_is_read_as_a_netmask() -> None:
    config = parse_network_xml(FULL.replace("netmask='255.255.255.0'", "prefix='16'"))
    assert config.netmask == "255.255.0.0"
    assert config.prefix == 16
    assert str(config.ip_network) == "192.168.0.0/16"


def test_forward_without_mode_is_nat() -> None:
    text = "<network><name>n</name><forward/></network>"
    assert parse_network_xml(text).forward_mode == "nat"


@pytest.mark.parametrize("mode", ["nat", "route", "open"])
def test_forward_modes(mode: str) -> None:
    text = f"<network><name>n</name><forward mode='{mode}'/></network>"
    assert parse_network_xml(text).forward_mode == mode


def test_bridge_without_name_and_dhcp_without_range() -> None:
    text = (
        "<network><name>n</name><bridge stp='on'/>"
        "<ip address='10.0.0.1' netmask='255.0.0.0' family='ipv4'><dhcp>"
        "<host mac='52:54:00:00:00:01' ip='10.0.0.5'/></dhcp></ip></network>"
    )
    config = parse_network_xml(text)
    assert (config.bridge, config.dhcp, config.ip_address) == (None, None, "10.0.0.1")


# --- errors -------------------------------------------------------------------------------


def _with(old: str, new: str) -> str:
    assert old in FULL
    return FULL.replace(old, new, 1)


def _error(text: str, needle: str, *words: str, occurrence: int = 0) -> None:
    expect_xml_error(parse_network_xml, text, position_of(text, needle, occurrence), *words)


def test_missing_name() -> None:
    _error(_with("<name>default</name>", ""), "<network>", "<network> has no <name>")


def test_bad_name() -> None:
    _error(_with("<name>default</name>", "<name>my net</name>"), "<name>", "whitespace")


def test_bad_uuid() -> None:
    _error(_with("a3a482e445f5", "zz"), "<uuid>", "is not a UUID")


@pytest.mark.parametrize("mode", ["bridge", "passthrough", "private", "vepa", "hostdev", "NAT"])
def test_unknown_forward_mode(mode: str) -> None:
    text = _with("mode='nat'", f"mode='{mode}'")
    _error(
        text,
        "mode=",
        f"<forward> mode {mode!r} is not supported",
        "'route'",
        "leave <forward> out for an isolated network",
    )


def test_bad_bridge_name() -> None:
    text = _with("name='virbr0'", "name='a-very-long-bridge-name'")
    _error(text, "name='a-very", "<bridge> name", "1 to 15")


def test_bad_domain_name() -> None:
    text = _with("name='example.lan'", "name='-bad..lan'")
    _error(text, "name='-bad", "<domain> name '-bad..lan' is not a DNS domain name")


def test_domain_without_name() -> None:
    text = _with("<domain name='example.lan'/>", "<domain localOnly='yes'/>")
    _error(text, "<domain ", "<domain> has no name= attribute")


@pytest.mark.parametrize("address", ["192.168.122", "192.168.122.300", "fe80::1", "01.2.3.4"])
def test_bad_ip_address(address: str) -> None:
    text = _with("address='192.168.122.1'", f"address='{address}'")
    _error(text, "address=", f"<ip> address {address!r} is not an IPv4 address", occurrence=1)


def test_ip_address_is_the_network_address() -> None:
    text = _with("address='192.168.122.1'", "address='192.168.122.0'")
    _error(text, "address='192", "network or broadcast address of 192.168.122.0/24")


def test_ip_without_address() -> None:
    text = _with("<ip address='192.168.122.1' ", "<ip ")
    _error(text, "<ip ", "<ip> has no address= attribute")


@pytest.mark.parametrize("netmask", ["255.0.255.0", "0.0.0.255", "0.0.0.0", "255.255.255"])
def test_bad_netmask(netmask: str) -> None:
    text = _with("netmask='255.255.255.0'", f"netmask='{netmask}'")
    _error(text, "netmask=", f"<ip> netmask {netmask!r}")


@pytest.mark.parametrize("prefix", ["0", "33", "x", "-1"])
def test_bad_prefix(prefix: str) -> None:
    text = _with("netmask='255.255.255.0'", f"prefix='{prefix}'")
    _error(text, "prefix=", f"<ip> prefix {prefix!r} is not a prefix length", "1 to 32")


def test_netmask_and_prefix_together() -> None:
    text = _with("netmask='255.255.255.0'", "netmask='255.255.255.0' prefix='24'")
    _error(text, "prefix=", "both netmask= and prefix=")


def test_neither_netmask_nor_prefix() -> None:
    text = _with(" netmask='255.255.255.0'", "")
    _error(text, "<ip ", "<ip> has no netmask= or prefix=")


def test_ipv6_is_refused() -> None:
    text = _with("<ip address", "<ip family='ipv6' address")
    _error(text, "family=", "<ip> family 'ipv6' is not supported", "only IPv4")


def test_second_ip_is_refused() -> None:
    text = _with("</network>", "<ip address='10.0.0.1' prefix='8'/></network>")
    _error(text, "<ip ", "only one <ip> element is supported", occurrence=1)


@pytest.mark.parametrize(
    ("start", "end", "bad"),
    [
        ("192.168.123.2", "192.168.122.254", "start"),
        ("192.168.122.2", "192.168.123.254", "end"),
        ("192.168.122.0", "192.168.122.254", "start"),
        ("192.168.122.2", "192.168.122.255", "end"),
        ("10.0.0.1", "10.0.0.9", "start"),
    ],
)
def test_dhcp_range_outside_the_network(start: str, end: str, bad: str) -> None:
    text = _with("start='192.168.122.2' end='192.168.122.254'", f"start='{start}' end='{end}'")
    _error(
        text,
        f"{bad}=",
        f"<range> {bad}",
        "is outside the network 192.168.122.0/24",
        "192.168.122.1 to 192.168.122.254",
        occurrence=1,  # the first is in <nat><port start= end=>
    )


def test_dhcp_range_backwards() -> None:
    text = _with(
        "start='192.168.122.2' end='192.168.122.254'",
        "start='192.168.122.200' end='192.168.122.100'",
    )
    _error(text, "start=", "comes after end", "swap them", occurrence=1)


def test_dhcp_range_bad_address() -> None:
    text = _with("end='192.168.122.254'", "end='192.168.122.x'")
    _error(text, "end=", "<range> end '192.168.122.x' is not an IPv4 address", occurrence=1)


def test_dhcp_range_missing_end() -> None:
    text = _with(" end='192.168.122.254'", "")
    _error(text, "<range", "<range> has no end= attribute")


def test_two_dhcp_ranges() -> None:
    text = _with("</dhcp>", "<range start='192.168.122.20' end='192.168.122.30'/></dhcp>")
    _error(text, "<range", "only one <range>", occurrence=1)
