"""Hardened parsing: DTDs and entities refused, size limit, encodings, error positions."""

from __future__ import annotations

import pytest
from lxml import etree

from tests.config import expect_xml_error, position_of
from virtjob.config import (
    MAX_DOCUMENT_SIZE,
    parse_domain_xml,
    parse_network_xml,
)
from virtjob.errors import InvalidArgError, VirtError, XMLError

MINIMAL = "<domain type='kvm'><name>vm1</name><memory>1024</memory></domain>"

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<domain type='kvm'><name>vm1</name><memory>1024</memory><description>&lol9;</description></domain>
"""


# --- DTDs and entities -------------------------------------------------------------------


@pytest.mark.timeout(5)
def test_billion_laughs_is_refused() -> None:
    expect_xml_error(parse_domain_xml, BILLION_LAUGHS, (2, 1), "<!DOCTYPE>", "not allowed")


@pytest.mark.timeout(5)
def test_billion_laughs_is_refused_for_networks_and_bytes() -> None:
    bomb = BILLION_LAUGHS.replace("domain", "network").encode()
    with pytest.raises(XMLError, match="DOCTYPE"):
        parse_network_xml(bomb)


@pytest.mark.timeout(5)
def test_quadratic_blowup_is_refused() -> None:
    text = (
        f'<!DOCTYPE d [<!ENTITY a "{"x" * 50_000}">]>\n'
        f"<domain><name>vm1</name><memory>1024</memory><description>{'&a;' * 5000}"
        "</description></domain>"
    )
    expect_xml_error(parse_domain_xml, text, (1, 1), "DOCTYPE")


@pytest.mark.parametrize(
    "prolog",
    [
        '<!DOCTYPE domain SYSTEM "file:///etc/passwd">',
        '<!DOCTYPE domain PUBLIC "-//x//y" "http://example.com/evil.dtd">',
        '<!DOCTYPE domain [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
        '<!DOCTYPE domain [<!ENTITY % p SYSTEM "http://example.com/p.dtd"> %p;]>',
        "<!doctype domain>",
    ],
)
def test_external_entities_and_system_references_are_refused(prolog: str) -> None:
    text = f"<?xml version='1.0'?>\n<!-- a comment -->\n{prolog}\n{MINIMAL}"
    expect_xml_error(parse_domain_xml, text, (3, 1), "not allowed", "remove the declaration")


def test_entity_declaration_outside_a_doctype_is_refused() -> None:
    text = "<!ENTITY x 'y'>\n" + MINIMAL
    expect_xml_error(parse_domain_xml, text, (1, 1), "<!ENTITY>")


def test_undeclared_entity_reference_is_malformed() -> None:
    text = MINIMAL.replace("vm1", "&xxe;")
    expect_xml_error(parse_domain_xml, text, (1, 31), "malformed XML", "Entity 'xxe' not defined")


def test_doctype_text_in_comments_and_cdata_is_not_a_declaration() -> None:
    text = (
        "<!-- <!DOCTYPE x> --><domain><name>vm1</name><memory>1024</memory>"
        "<description><![CDATA[<!DOCTYPE html><!ENTITY & so on>]]></description></domain>"
    )
    assert parse_domain_xml(text).description == "<!DOCTYPE html><!ENTITY & so on>"


def test_xinclude_is_not_processed() -> None:
    text = MINIMAL.replace(
        "</memory>",
        "</memory><description xmlns:xi='http://www.w3.org/2001/XInclude'>"
        "<xi:include href='/etc/passwd' parse='text'/></description>",
    )
    assert parse_domain_xml(text).description == ""


# --- size ---------------------------------------------------------------------------------


def test_a_two_mib_document_is_refused() -> None:
    padding = "x" * (2 * 1024 * 1024)
    text = MINIMAL.replace("</memory>", f"</memory><description>{padding}</description>")
    error = expect_xml_error(parse_domain_xml, text, (1, MAX_DOCUMENT_SIZE + 1), "1 MiB")
    assert str(len(text)) in error.message
    with pytest.raises(XMLError, match="1 MiB"):
        parse_network_xml(text.encode())


def test_a_document_of_exactly_one_mib_is_accepted() -> None:
    head = MINIMAL.replace("</memory></domain>", "</memory><description>")
    tail = "</description></domain>"
    text = head + "y" * (MAX_DOCUMENT_SIZE - len(head) - len(tail)) + tail
    assert len(text.encode()) == MAX_DOCUMENT_SIZE
    config = parse_domain_xml(text)
    assert config.description is not None
    assert len(config.description) > 1_000_000
    with pytest.raises(XMLError, match="limit"):
        parse_domain_xml(text + " ")


def test_size_counts_utf8_bytes_of_a_str() -> None:
    # 600 000 characters but 1.2 million bytes once encoded
    text = MINIMAL.replace("</memory>", f"</memory><description>{'é' * 600_000}</description>")
    assert len(text) < MAX_DOCUMENT_SIZE
    with pytest.raises(XMLError, match="limit"):
        parse_domain_xml(text)


# --- encodings and input types -----------------------------------------------------------


def test_str_and_bytes_give_the_same_result() -> None:
    text = MINIMAL.replace("vm1", "vm-é").replace(
        "<memory>", "<uuid>" + "a" * 32 + "</uuid><memory>"
    )
    assert parse_domain_xml(text) == parse_domain_xml(text.encode("utf-8"))
    data = bytearray(text.encode())
    assert parse_domain_xml(data).name == "vm-é"  # type: ignore[arg-type]


def test_xml_declaration_and_bom_are_accepted() -> None:
    declared = "<?xml version='1.0' encoding='UTF-8'?>\n" + MINIMAL
    assert parse_domain_xml(declared).name == "vm1"
    assert parse_domain_xml(declared.encode()).name == "vm1"
    assert parse_domain_xml(b"\xef\xbb\xbf" + MINIMAL.encode()).name == "vm1"
    assert parse_domain_xml("\ufeff" + MINIMAL).name == "vm1"


def test_a_str_declaring_another_encoding_is_read_as_text() -> None:
    text = "<?xml version='1.0' encoding='ISO-8859-1'?>\n" + MINIMAL.replace("vm1", "vmé")
    assert parse_domain_xml(text).name == "vmé"


def test_bytes_that_are_not_utf8_are_refused_at_the_bad_byte() -> None:
    data = MINIMAL.replace("vm1", "vm\n  x\xe9").encode("latin-1")
    with pytest.raises(XMLError, match="0xe9 is not valid UTF-8") as info:
        parse_domain_xml(data)
    assert (info.value.line, info.value.column) == (2, 4)


def test_utf16_is_refused() -> None:
    with pytest.raises(XMLError, match="UTF-8"):
        parse_domain_xml(MINIMAL.encode("utf-16"))


def test_other_input_types_are_refused() -> None:
    with pytest.raises(InvalidArgError, match="str or bytes"):
        parse_domain_xml(42)  # type: ignore[arg-type]


def test_a_lone_surrogate_in_a_str_is_refused() -> None:
    text = MINIMAL.replace("vm1", "vm\n\ud800")
    expect_xml_error(parse_domain_xml, text, (2, 1), "surrogate")


# --- malformed documents and positions ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "where", "words"),
    [
        ("", (1, 1), "empty"),
        ("   \n  ", (2, 3), "Start tag expected"),
        ("<domain>\n  <name>vm1</nam>\n</domain>", (2, 18), "mismatch"),
        ("<domain><name>vm1</name>", (1, 25), "malformed XML"),
        ("<domain/><domain/>", (1, 10), "Extra content"),
        ("<domain a='1' a='2'/>", (1, 20), "Attribute a redefined"),
        ("<domain>\n\x00</domain>", (2, 1), "malformed XML"),
        ("<x>" * 1000 + "</x>" * 1000, (1, 771), "Excessive depth"),
    ],
)
def test_malformed_xml_gives_lxml_position(text: str, where: tuple[int, int], words: str) -> None:
    error = expect_xml_error(parse_domain_xml, text, where, words)
    assert "well-formed" in error.message


def test_wrong_root_element() -> None:
    text = "<?xml version='1.0'?>\n\n  <network><name>x</name></network>"
    expect_xml_error(parse_domain_xml, text, (3, 3), "<network>", "expected <domain>")
    expect_xml_error(parse_network_xml, MINIMAL, (1, 1), "<domain>", "expected <network>")


def test_namespaced_root_is_the_wrong_root() -> None:
    text = "<domain xmlns='urn:x'><name>vm1</name><memory>1024</memory></domain>"
    expect_xml_error(parse_domain_xml, text, (1, 1), "{urn:x}domain")


def test_xml_error_is_a_virt_error_and_pickles() -> None:
    import pickle

    with pytest.raises(VirtError) as info:
        parse_domain_xml("<domain>")
    error = info.value
    assert isinstance(error, XMLError)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.line, copy.column, copy.message) == (error.line, error.column, error.message)


def test_position_in_a_one_line_document_counts_earlier_tags() -> None:
    text = (
        "<domain><name>vm1</name><memory>1024</memory><devices>"
        "<disk type='file'><source file='/a'/><target dev='vda'/></disk>"
        "<disk type='file'><source file='/b'/><target dev='vdb' bus='floppy'/></disk>"
        "</devices></domain>"
    )
    expect_xml_error(parse_domain_xml, text, position_of(text, "bus="), "floppy")


def test_position_of_an_attribute_on_a_later_line_of_its_tag() -> None:
    text = (
        "<domain>\n  <name>vm1</name>\n  <memory\n      unit='KiB'\n"
        "      >1024</memory>\n  <devices>\n    <disk\n      device='disk'\n"
        "      type='block'>\n    </disk>\n  </devices>\n</domain>"
    )
    expect_xml_error(parse_domain_xml, text, (9, 7), "type='block'")


def test_position_ignores_tags_inside_comments_and_cdata() -> None:
    text = (
        "<domain>\n<!-- <disk> <name> -->\n<description><![CDATA[<name>]]></description>"
        "<?pi <name>?>\n<name>a b</name><memory>1024</memory></domain>"
    )
    expect_xml_error(parse_domain_xml, text, (4, 1), "<name>", "whitespace")


def test_position_uses_the_prefix_of_namespaced_tags() -> None:
    text = (
        "<domain xmlns:q='http://libvirt.org/schemas/domain/qemu/1.0'>\n"
        "<name>vm1</name><memory>1024</memory>\n"
        "<q:commandline><q:arg value='-S'/>  <q:arg/></q:commandline>\n</domain>"
    )
    where = position_of(text, "<q:arg/>")
    assert where == (3, 37)
    expect_xml_error(parse_domain_xml, text, where, "<q:arg> has no value=")


# --- root causes ------------------------------------------------------------------------------


def test_errors_keep_the_parse_error_behind_them_as_their_cause() -> None:
    """A refusal keeps what it was found by: lxml's syntax error, the codec error, the UUID
    or address error, the check that refused a value (for a developer reading a traceback)."""
    with pytest.raises(XMLError) as malformed:
        parse_domain_xml("<domain><name>vm1</name>")
    assert isinstance(malformed.value.__cause__, etree.XMLSyntaxError)
    with pytest.raises(XMLError) as undecodable:
        parse_domain_xml(MINIMAL.replace("vm1", "vm\xe9").encode("latin-1"))
    assert isinstance(undecodable.value.__cause__, UnicodeDecodeError)
    with pytest.raises(XMLError) as bad_uuid:
        parse_domain_xml(MINIMAL.replace("</domain>", "<uuid>nope</uuid></domain>"))
    assert isinstance(bad_uuid.value.__cause__, ValueError)
    with pytest.raises(XMLError, match="is not an IPv4 address") as bad_address:
        parse_network_xml("<network><name>n</name><ip address='10.0.0.256'/></network>")
    cause = bad_address.value.__cause__
    assert isinstance(cause, ValueError)  # the check that refused it, itself caused by
    assert "256" in str(cause.__cause__)  # ipaddress's own complaint about the octet
