"""`virtjob.config` as a package: every public name is there, the XML ones loaded on first use."""

from __future__ import annotations

import importlib

import pytest

import virtjob.config


@pytest.mark.parametrize("name", virtjob.config.__all__)
def test_every_public_name_is_the_one_its_module_defines(name: str) -> None:
    """Each name of ``__all__`` resolves, the XML ones to the object of their own module."""
    value = getattr(virtjob.config, name)
    module = virtjob.config.XML_NAMES.get(name)
    if module is not None:
        assert value is getattr(importlib.import_module(module), name)
    assert name in dir(virtjob.config)


def test_the_xml_names_are_all_public() -> None:
    assert set(virtjob.config.XML_NAMES) <= set(virtjob.config.__all__)


def test_from_import_of_an_xml_function_works() -> None:
    from virtjob.config import format_domain_xml, parse_domain_xml

    text = "<domain type='test'><name>a</name><memory>1024</memory></domain>"
    config = parse_domain_xml(text)
    assert parse_domain_xml(format_domain_xml(config)) == config


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'parse_disk_xml'"):
        virtjob.config.parse_disk_xml  # noqa: B018 - the lookup is the test
    with pytest.raises(ImportError):
        from virtjob.config import parse_disk_xml  # noqa: F401
