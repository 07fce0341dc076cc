"""Domain and network configuration: libvirt-style XML in, frozen dataclasses out, and back.

::

    cfg = parse_domain_xml(text)        # DomainConfig; XMLError(line, column) when invalid
    text = format_domain_xml(cfg)       # canonical, pretty-printed; parses back equal
    net = parse_network_xml(text)       # NetworkConfig

Parsing is hardened (no DTD, no entities, no network, at most 1 MiB); see ``docs/xml.md`` for
the supported subset of libvirt's formats. Modules: `parser` (safe parsing, error location),
`location`, `units`, `validate`, `domain`/`network` (the dataclasses), `domain_xml`/`network_xml`
(read and write), `writer`.
"""

from virtjob.config.domain import DiskConfig, DomainConfig, InterfaceConfig
from virtjob.config.domain_xml import QEMU_NAMESPACE, format_domain_xml, parse_domain_xml
from virtjob.config.network import DhcpRange, NetworkConfig
from virtjob.config.network_xml import format_network_xml, parse_network_xml
from virtjob.config.parser import MAX_DOCUMENT_SIZE
from virtjob.config.units import MAX_MEMORY, UNITS

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
