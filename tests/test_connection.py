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
