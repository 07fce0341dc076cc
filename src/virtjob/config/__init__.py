"""Domain and network configuration: libvirt-style XML in, frozen dataclasses out, and back.

::

    cfg = parse_domain_xml(text)        # DomainConfig; XMLError(line, column) when invalid
    text = format_domain_xml(cfg)       # canonical, pretty-printed; parses back equal
    net = parse_network_xml(text)       # NetworkConfig

Parsing is hardened (no DTD, no entities, no network, at most 1 MiB); see ``docs/xml.md`` for
the supported subset of libvirt's formats. Modules: `parser` (safe parsing, error location),
`location`, `units`, `validate`, `domain`/`network` (the dataclasses), `domain_xml`/`network_xml`
(read and write), `writer`.

The dataclasses load with the package; the XML functions and constants (`XML_NAMES`) load,
with lxml, the first time one is asked for (``from virtjob.config import parse_domain_xml``
works as any import does): a program that reads and writes no XML, such as ``virtjob list``
on the test driver, never pays for lxml.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from virtjob.config.domain import DiskConfig, DomainConfig, InterfaceConfig
from virtjob.config.network import DhcpRange, NetworkConfig
from virtjob.config.units import MAX_MEMORY, UNITS

if TYPE_CHECKING:
    from virtjob.config.domain_xml import QEMU_NAMESPACE, format_domain_xml, parse_domain_xml
    from virtjob.config.network_xml import format_network_xml, parse_network_xml
    from virtjob.config.parser import MAX_DOCUMENT_SIZE

XML_NAMES = {
    "MAX_DOCUMENT_SIZE": "virtjob.config.parser",
    "QEMU_NAMESPACE": "virtjob.config.domain_xml",
    "format_domain_xml": "virtjob.config.domain_xml",
    "parse_domain_xml": "virtjob.config.domain_xml",
    "format_network_xml": "virtjob.config.network_xml",
    "parse_network_xml": "virtjob.config.network_xml",
}
"""The names of this package that need lxml, each with the module that defines it."""

__all__ = [
    "MAX_DOCUMENT_SIZE",
    "MAX_MEMORY",
    "QEMU_NAMESPACE",
    "UNITS",
    "DhcpRange",
    "DiskConfig",
    "DomainConfig",
    "InterfaceConfig",
    "NetworkConfig",
    "format_domain_xml",
    "format_network_xml",
    "parse_domain_xml",
    "parse_network_xml",
]


def __getattr__(name: str) -> object:
    """Load one of `XML_NAMES` from its module on first use (then it is a plain attribute).

    Raises `AttributeError` for a name the package does not have.
    """
    module = XML_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """Every public name, the not yet loaded XML ones included."""
    return sorted({*globals(), *XML_NAMES})
