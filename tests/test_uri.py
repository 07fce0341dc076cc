"""Connection URI parsing: the shapes virtjob accepts and the mistakes it names."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from virtjob.errors import InvalidArgError
from virtjob.uri import _PLAIN, ConnectURI, _split, default_uri, parse_uri


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("test:///default", ConnectURI("test", None, None, None, "/default", {})),
        (
            "test:///default?rate=1024",
            ConnectURI("test", None, None, None, "/default", {"rate": "1024"}),
        ),
        ("qemu:///session", ConnectURI("qemu", None, None, None, "/session", {})),
        (
            "qemu+unix:///session?socket=/run/v.sock",
            ConnectURI("qemu", "unix", None, None, "/session", {"socket": "/run/v.sock"}),
        ),
        (
            "test+tcp://127.0.0.1:16509/default",
            ConnectURI("test", "tcp", "127.0.0.1", 16509, "/default", {}),
        ),
        ("qemu+tls://[::1]:8443/session", ConnectURI("qemu", "tls", "::1", 8443, "/session", {})),
    ],
)
def test_valid_uris_parse_into_their_parts(text: str, expected: ConnectURI) -> None:
    """Each accepted shape yields driver, transport, host, port, path and params."""
    assert parse_uri(text) == expected


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("default", "malformed"),
        ("te_st:///default", "bad scheme"),
        ("9p:///default", "bad scheme"),
        ("test+ssh://host/default", "unknown transport"),
        ("test://somehost/default", "without a network transport"),
        ("test+unix://somehost/default", "without a network transport"),
        ("test+tcp:///default", "needs a host"),
        ("test:///", "no path"),
        ("test://", "no path"),
        ("test:///default#frag", "fragment"),
        ("test:///default?rate=1&rate=2", "repeats"),
        ("test+tcp://host:99999/default", "malformed"),
        ("test:///default?&&=", "malformed query"),
    ],
)
def test_bad_uris_are_refused_with_a_reason(text: str, words: str) -> None:
    """A malformed URI raises InvalidArgError quoting the URI and saying what is wrong."""
    with pytest.raises(InvalidArgError) as caught:
        parse_uri(text)
    assert words in caught.value.message
    assert caught.value.message.count(repr(text)) >= 1 or not text.strip()


def test_str_masks_the_token_and_round_trips() -> None:
    """str() rebuilds the URI, hiding a token given in the query."""
    uri = parse_uri("test+tcp://127.0.0.1:1234/default?token=s3cret&x=1")
    assert str(uri) == "test+tcp://127.0.0.1:1234/default?token=***&x=1"
    assert "s3cret" not in str(uri)
    plain = "qemu+unix:///session?socket=/tmp/s"
    assert str(parse_uri(plain)) == plain


def test_remote_uri_knows_the_local_uri_it_names() -> None:
    """A daemon URI names the local driver the daemon hosts."""
    uri = parse_uri("qemu+unix:///session?socket=/tmp/s")
    assert uri.is_remote
    assert uri.local_uri == "qemu:///session"
    assert not parse_uri("test:///default").is_remote


def test_default_uri_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """$VIRTJOB_DEFAULT_URI wins; without it the default is test:///default."""
    monkeypatch.delenv("VIRTJOB_DEFAULT_URI", raising=False)
    assert default_uri() == "test:///default"
    monkeypatch.setenv("VIRTJOB_DEFAULT_URI", "qemu:///session")
    assert default_uri() == "qemu:///session"


def _by_urlsplit(text: str) -> tuple[str, str | None, int | None, str, str, str]:
    parts = urlsplit(text)
    return parts.scheme, parts.hostname or None, parts.port, parts.path, parts.query, parts.fragment


@given(st.from_regex(_PLAIN, fullmatch=True))
def test_a_plain_uri_splits_as_urlsplit_splits_it(text: str) -> None:
    """``driver:///path`` is split without urllib.parse (the CLI's start-up): to the very
    parts urlsplit gives."""
    assert _split(text) == _by_urlsplit(text)


@pytest.mark.parametrize(
    "text",
    [
        "test:///default",
        "test+unix:///default",
        "test:////default",
        "qemu:///session/a.b_c~d-e",
        "TEST:///default",
        " test:///default",
        "test:///de\tfault",
        "test:///default?rate=1",
        "test:///default#x",
        "test:///d%41",
        "test://h:1/default",
    ],
)
def test_split_gives_what_urlsplit_gives(text: str) -> None:
    """Plain or not (then urlsplit itself splits it), the parts are urlsplit's."""
    assert _split(text) == _by_urlsplit(text)
