"""The test host's default domain and network: configs built directly, equal to their XML."""

from __future__ import annotations

import virtjob
from virtjob.config import format_domain_xml, parse_domain_xml, parse_network_xml
from virtjob.drivers.test.host import (
    DEFAULT_DOMAIN,
    DEFAULT_DOMAIN_XML,
    DEFAULT_NETWORK,
    DEFAULT_NETWORK_XML,
)


def test_the_default_domain_is_what_its_xml_parses_to() -> None:
    """A new host builds `DEFAULT_DOMAIN` without parsing XML: it must never drift from the
    documented `DEFAULT_DOMAIN_XML` (every field compared, the UUID included)."""
    assert parse_domain_xml(DEFAULT_DOMAIN_XML) == DEFAULT_DOMAIN


def test_the_default_network_is_what_its_xml_parses_to() -> None:
    assert parse_network_xml(DEFAULT_NETWORK_XML) == DEFAULT_NETWORK


def test_a_new_host_starts_with_them() -> None:
    with virtjob.open("test:///defaults-fresh-host") as conn:
        domain = conn.lookup_domain("test")
        assert domain.is_active()
        assert parse_domain_xml(domain.xml()) == DEFAULT_DOMAIN
        assert domain.xml() == format_domain_xml(DEFAULT_DOMAIN)
        network = conn.lookup_network("default")
        assert network.is_active()
        assert parse_network_xml(network.xml()) == DEFAULT_NETWORK
