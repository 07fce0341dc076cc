"""The public entry points: `virtjob.open` and `Connection` argument checks."""

from __future__ import annotations

import pytest

import virtjob


def test_lookups_accept_uuid_objects(conn: virtjob.Connection) -> None:
    """A domain or network can be looked up by the UUID object its handle carries."""
    dom = conn.lookup_domain("test")
    assert conn.lookup_domain(dom.uuid) == dom
    net = conn.lookup_network("default")
    assert conn.lookup_network(net.uuid) == net


@pytest.mark.parametrize("bad", [5, None, b"test", ""])
def test_lookups_refuse_what_is_neither_name_nor_uuid(
    conn: virtjob.Connection, bad: object
) -> None:
    """Anything but a non-empty name or a UUID is an InvalidArgError that says what is wanted."""
    with pytest.raises(virtjob.InvalidArgError, match="name or its UUID"):
        conn.lookup_domain(bad)  # type: ignore[arg-type]


def test_open_refuses_a_uri_that_is_not_a_string() -> None:
    """virtjob.open(5) says a URI is a string and shows one."""
    with pytest.raises(virtjob.InvalidArgError, match="test:///default"):
        virtjob.open(5)  # type: ignore[arg-type]


def test_refusals_keep_the_error_behind_them_as_their_cause(conn: virtjob.Connection) -> None:
    """A malformed URI keeps urllib's complaint, undecodable XML the codec's (as `__cause__`)."""
    with pytest.raises(virtjob.InvalidArgError, match="malformed") as uri:
        virtjob.open("test://host:99999/default")
    assert isinstance(uri.value.__cause__, ValueError)
    with pytest.raises(virtjob.InvalidArgError, match="not valid UTF-8") as xml:
        conn.create_domain_job(b"<domain>\xff</domain>")  # type: ignore[arg-type]
    assert isinstance(xml.value.__cause__, UnicodeDecodeError)
