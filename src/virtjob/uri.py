"""Connection URIs: ``driver[+transport]://[host[:port]]/path[?params]``, as libvirt shapes them.

Examples: ``test:///default``, ``test:///default?rate=1073741824``, ``qemu:///session``,
``qemu+unix:///session?socket=/run/virtjob.sock``, ``test+tcp://127.0.0.1:16509/default``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from virtjob.errors import InvalidArgError

DEFAULT_URI = "test:///default"
URI_ENV = "VIRTJOB_DEFAULT_URI"
TRANSPORTS = frozenset({"unix", "tcp", "tls"})
_SECRET_PARAMS = frozenset({"token"})
_SCHEME = re.compile(r"^(?P<driver>[a-z][a-z0-9]*)(?:\+(?P<transport>[a-z]+))?$")
# driver[+transport]:///path with no host, query, fragment or escape, the path of unreserved
# characters and '/': split without urllib.parse (see `_split`).
_PLAIN = re.compile(r"(?P<scheme>[a-z][a-z0-9]*(?:\+[a-z]+)?):///(?P<path>[A-Za-z0-9._~/-]*)")


@dataclass(frozen=True, slots=True)
class ConnectURI:
    """A parsed connection URI. `transport` is None for a driver in this process."""

    driver: str
    transport: str | None
    host: str | None
    port: int | None
    path: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def is_remote(self) -> bool:
        """True when the URI names a daemon to talk to rather than a driver in this process."""
        return self.transport is not None

    @property
    def local_uri(self) -> str:
        """The URI of the driver the daemon hosts, e.g. ``test:///default``."""
        return f"{self.driver}://{self.path}"

    def __str__(self) -> str:
        scheme = self.driver if self.transport is None else f"{self.driver}+{self.transport}"
        netloc = self.host or ""
        if self.host and ":" in self.host:
            netloc = f"[{self.host}]"
        if self.port is not None:
            netloc += f":{self.port}"
        query = "&".join(
            f"{key}={'***' if key in _SECRET_PARAMS else value}"
            for key, value in self.params.items()
        )
        return f"{scheme}://{netloc}{self.path}" + (f"?{query}" if query else "")


def default_uri() -> str:
    """The URI `virtjob.open()` uses when given none: ``$VIRTJOB_DEFAULT_URI`` or test:///default."""
    return os.environ.get(URI_ENV) or DEFAULT_URI


def parse_uri(text: str) -> ConnectURI:
    """Parse a connection URI; raises `InvalidArgError` saying what is wrong with it.

    A URI with a host must name a transport (``+tcp`` or ``+tls``); a ``+unix`` URI has no
    host. Query parameters may appear once each.
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidArgError(f"empty connection URI {text!r}; try {DEFAULT_URI!r}")
    example = f"expected driver[+transport]://[host[:port]]/path, e.g. {DEFAULT_URI!r}"
    if "://" not in text:
        raise InvalidArgError(f"connection URI {text!r} is malformed: {example}")
    try:
        scheme, host, port, path, query, fragment = _split(text)
    except ValueError as exc:
        raise InvalidArgError(f"connection URI {text!r} is malformed: {exc}") from exc
    match = _SCHEME.match(scheme)
    if match is None:
        raise InvalidArgError(f"connection URI {text!r} has a bad scheme: {example}")
    driver, transport = match["driver"], match["transport"]
    if transport is not None and transport not in TRANSPORTS:
        raise InvalidArgError(
            f"connection URI {text!r} names unknown transport {transport!r};"
            f" use one of {', '.join(sorted(TRANSPORTS))}"
        )
    if host is not None and transport in (None, "unix"):
        hint = f"{driver}+tcp://{host}{':' + str(port) if port else ''}{path}"
        raise InvalidArgError(
            f"connection URI {text!r} names host {host!r} without a network transport;"
            f" to reach a daemon there use e.g. {hint!r}"
        )
    if transport in ("tcp", "tls") and host is None:
        raise InvalidArgError(
            f"connection URI {text!r} needs a host for transport {transport!r},"
            f" e.g. {driver}+{transport}://127.0.0.1:16509{path or '/default'}"
        )
    if not path or path == "/":
        raise InvalidArgError(
            f"connection URI {text!r} has no path; name the host's instance,"
            f" e.g. {driver}:///{'session' if driver == 'qemu' else 'default'}"
        )
    if fragment:
        raise InvalidArgError(f"connection URI {text!r} must not have a #fragment")
    params: dict[str, str] = {}
    for key, value in _query_pairs(text, query):
        if key in params:
            raise InvalidArgError(f"connection URI {text!r} repeats parameter {key!r}")
        params[key] = value
    return ConnectURI(driver, transport, host, port, path, params)


def _split(text: str) -> tuple[str, str | None, int | None, str, str, str]:
    """The scheme, host name (None if none), port, path, query and fragment of `text`, as
    `urllib.parse.urlsplit` gives them; raises `ValueError` as it does.

    A plain ``driver:///path`` (`_PLAIN`: no host, query, fragment or escape; the common
    ``test:///default``) is split here, to the same parts (a test checks it), so that a
    command on a local host does not load urllib.parse; any other URI goes through urlsplit.
    """
    plain = _PLAIN.fullmatch(text)
    if plain is not None:
        return plain["scheme"], None, None, "/" + plain["path"], "", ""
    from urllib.parse import urlsplit

    parts = urlsplit(text)
    return parts.scheme, parts.hostname or None, parts.port, parts.path, parts.query, parts.fragment


def _query_pairs(text: str, query: str) -> list[tuple[str, str]]:
    """The ``key=value`` pairs of `query`, decoded, in order; `InvalidArgError` if malformed."""
    if not query:
        return []
    from urllib.parse import parse_qsl

    try:
        return parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError as exc:
        raise InvalidArgError(f"connection URI {text!r} has a malformed query: {exc}") from exc
