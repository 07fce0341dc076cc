"""``<vcpu>``: a count out of range is called out of range (with the range), however large."""

from __future__ import annotations

import pytest

from tests.config import expect_xml_error, position_of
from virtjob.config import parse_domain_xml

XML = """\
<domain type='test'>
  <name>web</name>
  <memory>65536</memory>
  <vcpu>{}</vcpu>
</domain>
"""


@pytest.mark.parametrize(
    ("vcpu", "shown"),
    [
        ("1000000000", "1000000000"),  # issue 10: said "not a whole number"
        ("4097", "4097"),
        ("0", "0"),
        ("-1", "-1"),
        ("9" * 5000, "9" * 24 + "..."),  # never int() of a huge string
        ("1" + "0" * 40, "1" + "0" * 23 + "..."),
    ],
)
def test_out_of_range_says_so_and_gives_the_range(vcpu: str, shown: str) -> None:
    text = XML.format(vcpu)
    error = expect_xml_error(
        parse_domain_xml,
        text,
        position_of(text, "<vcpu"),
        f"<vcpu> is {shown}, out of range; give a count from 1 to 4096",
    )
    assert "whole number" not in error.message
    assert len(error.message) < 200


@pytest.mark.parametrize("vcpu", ["two", "1x", "1.5", "+3", "", "0x10"])
def test_not_a_number_is_not_a_whole_number(vcpu: str) -> None:
    text = XML.format(vcpu)
    expect_xml_error(
        parse_domain_xml,
        text,
        position_of(text, "<vcpu"),
        "is not a whole number; write e.g. <vcpu>2</vcpu>",
    )


@pytest.mark.parametrize(("vcpu", "count"), [("1", 1), ("4096", 4096), (" 8 ", 8), ("0004", 4)])
def test_in_range_is_read(vcpu: str, count: int) -> None:
    assert parse_domain_xml(XML.format(vcpu)).vcpus == count
