"""The examples in docs/xml.md are valid and say what the documentation says."""

from __future__ import annotations

import re
from pathlib import Path

from virtjob.config import (
    format_domain_xml,
    format_network_xml,
    parse_domain_xml,
    parse_network_xml,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "xml.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


def test_domain_and_network_examples_parse_and_round_trip() -> None:
    domain_text, network_text = _blocks("xml")
    domain = parse_domain_xml(domain_text)
    assert domain.name == "vm1"
    assert len(domain.disks) == 2
    assert parse_domain_xml(format_domain_xml(domain)) == domain
    network = parse_network_xml(network_text)
    assert network.name == "default"
    assert format_network_xml(network) == network_text


def test_python_example_runs() -> None:
    (example,) = _blocks("python")[1:]
    namespace: dict[str, object] = {}
    exec(example, namespace)
    assert namespace["bigger"] != namespace["cfg"]
