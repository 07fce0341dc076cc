"""Checks on single configuration values, shared by the XML parsers and the dataclasses.

Every ``check_*`` function takes the value and ``what`` (how to name it in a message, e.g.
``"<name>"`` or ``"DomainConfig.name"``), returns the value in its canonical form, and raises
`InvalidValue` with a message that says what is wrong and what to do. The XML parsers turn
`InvalidValue` into an `~virtjob.errors.XMLError` at the offending element or attribute; the
dataclasses turn it into an `~virtjob.errors.InvalidArgError`.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Collection

__all__ = [
    "MAX_NAME_LENGTH",
    "MAX_PATH_LENGTH",
    "MAX_VCPUS",
    "InvalidValue",
    "check_absolute_path",
    "check_bridge_name",
    "check_choice",
    "check_dns_name",
    "check_ipv4",
    "check_mac",
    "check_name",
    "check_netmask",
    "check_token",
    "check_vcpus",
    "check_xml_text",
]

MAX_NAME_LENGTH = 64
"""Longest domain or network name accepted."""

MAX_PATH_LENGTH = 4096
"""Longest file path accepted (Linux's PATH_MAX)."""

MAX_VCPUS = 4096
"""Most virtual CPUs a domain may have (QEMU's limit for x86 q35 machines)."""

# The characters XML 1.0 cannot carry, listed (not as the complement of those it can, which
# took 4 ms to compile). Still 0.4 ms (the surrogates' range): kept as a pattern, compiled and
# cached by `re` when free text is first checked, not at every start of virtjob.
_NOT_XML_CHAR = "[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]"
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:+-]*")
_MAC = re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}")
_BRIDGE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}")
_DNS_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


class InvalidValue(ValueError):
    """A configuration value is invalid; the message says which one, why, and what to do."""


def _is_hidden(char: str) -> bool:
    """True for whitespace, control, format, surrogate and unassigned characters."""
    return unicodedata.category(char)[0] in "CZ"


def check_name(value: str, what: str) -> str:
    """Check a domain or network name and return it.

    A name is 1 to 64 characters, contains no '/', no whitespace and no control or invisible
    characters, and does not start with '.' or '-'. Raises `InvalidValue` otherwise.
    """
    if not isinstance(value, str) or not value:
        raise InvalidValue(f"{what} is empty; give a name such as 'vm1'")
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidValue(
            f"{what} {value[:20]!r}... is {len(value)} characters long; "
            f"use at most {MAX_NAME_LENGTH}"
        )
    if "/" in value:
        raise InvalidValue(f"{what} {value!r} contains '/'; remove it (names become file names)")
    for char in value:
        if _is_hidden(char):
            raise InvalidValue(
                f"{what} {value!r} contains whitespace or a control character "
                f"(U+{ord(char):04X}); use letters, digits, '-', '_' or '.'"
            )
    if value[0] in ".-":
        raise InvalidValue(f"{what} {value!r} starts with {value[0]!r}; start it with a letter")
    return value


def check_xml_text(value: str, what: str) -> str:
    """Check that free text (a description, a QEMU argument) can be stored in XML.

    Raises `InvalidValue` when `value` is not a string or holds a character XML 1.0 cannot
    carry (NUL and other C0 controls but tab, CR and LF; surrogates; U+FFFE, U+FFFF).
    """
    if not isinstance(value, str):
        raise InvalidValue(f"{what} must be a string, not {type(value).__name__}")
    bad = re.search(_NOT_XML_CHAR, value)
    if bad is not None:
        raise InvalidValue(
            f"{what} contains U+{ord(bad.group()):04X}, which XML cannot carry; remove it"
        )
    return value


def check_absolute_path(value: str, what: str) -> str:
    """Check a file path: absolute, at most 4096 characters, storable in XML.

    Raises `InvalidValue` otherwise (a relative path would depend on the daemon's directory).
    """
    check_xml_text(value, what)
    if not value.startswith("/"):
        raise InvalidValue(f"{what} {value!r} is not an absolute path; give the full path")
    if len(value) > MAX_PATH_LENGTH:
        raise InvalidValue(f"{what} is {len(value)} characters long; use at most 4096")
    return value


def check_token(value: str, what: str, example: str) -> str:
    """Check a short identifier such as an architecture or machine type (e.g. 'pc-q35-8.2').

    It starts with a letter or digit, then letters, digits and ``_ . : + -``, at most 64
    characters. No ``,`` or ``=``: the value reaches QEMU's command line (``-machine``), where
    they would add options. Raises `InvalidValue` otherwise; `example` is shown in the message.
    """
    if not isinstance(value, str) or len(value) > 64 or not _TOKEN.fullmatch(value):
        raise InvalidValue(
            f"{what} {value!r} is not a valid identifier; use letters, digits and '_.:+-', "
            f"e.g. {example!r}"
        )
    return value


def check_choice(value: str, what: str, choices: Collection[str]) -> str:
    """Check that `value` is one of `choices`; raises `InvalidValue` listing them otherwise."""
    if value not in choices:
        listed = ", ".join(repr(choice) for choice in sorted(choices))
        raise InvalidValue(f"{what} {value!r} is not supported; use one of {listed}")
    return value


def check_vcpus(value: int, what: str) -> int:
    """Check a virtual CPU count: an int from 1 to `MAX_VCPUS`; raises `InvalidValue`."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidValue(f"{what} must be an integer, not {type(value).__name__}")
    if not 1 <= value <= MAX_VCPUS:
        raise InvalidValue(f"{what} is {value}, out of range; give a count from 1 to {MAX_VCPUS}")
    return value


def check_mac(value: str, what: str) -> str:
    """Check a unicast MAC address ``xx:xx:xx:xx:xx:xx`` and return it in lowercase.

    Raises `InvalidValue` for another shape or a multicast address (odd first octet).
    """
    if not isinstance(value, str) or not _MAC.fullmatch(value):
        raise InvalidValue(
            f"{what} {value!r} is not a MAC address; write six hex pairs separated by ':', "
            "e.g. '52:54:00:12:34:56'"
        )
    if int(value[:2], 16) & 1:
        raise InvalidValue(
            f"{what} {value!r} is a multicast address; use a unicast one "
            "(even first octet), e.g. '52:54:00:12:34:56'"
        )
    return value.lower()


def check_ipv4(value: str, what: str) -> str:
    """Check a dotted-quad IPv4 address and return its canonical text; raises `InvalidValue`."""
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError as exc:  # ipaddress.AddressValueError says which part is wrong
        raise InvalidValue(
            f"{what} {value!r} is not an IPv4 address; write it like '192.168.122.1'"
        ) from exc


def check_netmask(value: str, what: str) -> str:
    """Check an IPv4 netmask such as '255.255.255.0' (contiguous ones, /1 to /32).

    Returns its canonical text; raises `InvalidValue` otherwise (a host mask is refused).
    """
    mask = int(ipaddress.IPv4Address(check_ipv4(value, what)))
    inverse = ~mask & 0xFFFFFFFF
    if mask == 0 or inverse & (inverse + 1):
        raise InvalidValue(
            f"{what} {value!r} is not a netmask; use leading one bits, e.g. '255.255.255.0'"
        )
    return str(ipaddress.IPv4Address(mask))


def check_bridge_name(value: str, what: str) -> str:
    """Check a Linux bridge name: 1 to 15 of letters, digits, '_', '.', '-'.

    It must not start with '.' or '-'. Raises `InvalidValue` otherwise.
    """
    if not isinstance(value, str) or not _BRIDGE.fullmatch(value):
        raise InvalidValue(
            f"{what} {value!r} is not a valid bridge name; use 1 to 15 letters, digits, "
            "'_', '.' or '-', e.g. 'virbr0'"
        )
    return value


def check_dns_name(value: str, what: str) -> str:
    """Check a DNS domain name such as 'example.lan'; raises `InvalidValue` otherwise."""
    labels = value.split(".") if isinstance(value, str) else []
    if not labels or len(value) > 253 or not all(_DNS_LABEL.fullmatch(x) for x in labels):
        raise InvalidValue(
            f"{what} {value!r} is not a DNS domain name; use dot-separated labels of letters, "
            "digits and '-', e.g. 'example.lan'"
        )
    return value
