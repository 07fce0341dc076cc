"""Connection URIs: ``driver[+transport]://[host[:port]]/path[?params]``, as libvirt shapes them.

Examples: ``test:///default``, ``test:///default?rate=1073741824``, ``qemu:///session``,
``qemu+unix:///session?socket=/run/virtjob.sock``, ``test+tcp://127.0.0.1:16509/default``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from virtjob.errors import InvalidArgError

DEFAULT_URI = "test:///default"
URI_ENV = "VIRTJOB_DEFAULT_URI"
TRANSPORTS = frozenset({"unix", "tcp", "tls"})
_SECRET_PARAMS = frozenset({"token"})
_SCHEME = re.compile(r"^(?P<driver>[a-z][a-z0-9]*)(?:\+(?P<transport>[a-z]+))?$")


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
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise InvalidArgError(f"connection URI {text!r} is malformed: {exc}") from exc
    match = _SCHEME.match(parts.scheme)
    if match is None:
        raise InvalidArgError(f"connection URI {text!r} has a bad scheme: {example}")
    driver, transport = match["driver"], match["transport"]
    if transport is not None and transport not in TRANSPORTS:
        raise InvalidArgError(
            f"connection URI {text!r} names unknown transport {transport!r};"
            f" use one of {', '.join(sorted(TRANSPORTS))}"
        )
    host = parts.hostname or None
    if host is not None and transport in (None, "unix"):
        hint = f"{driver}+tcp://{host}{':' + str(port) if port else ''}{parts.path}"
        raise InvalidArgError(
            f"connection URI {text!r} names host {host!r} without a network transport;"
            f" to reach a daemon there use e.g. {hint!r}"
        )
    if transport in ("tcp", "tls") and host is None:
        raise InvalidArgError(
            f"connection URI {text!r} needs a host for transport {transport!r},"
            f" e.g. {driver}+{transport}://127.0.0.1:16509{parts.path or '/default'}"
        )
    path = parts.path
    if not path or path == "/":
        raise InvalidArgError(
            f"connection URI {text!r} has no path; name the host's instance,"
            f" e.g. {driver}:///{'session' if driver == 'qemu' else 'default'}"
        )
    if parts.fragment:
        raise InvalidArgError(f"connection URI {text!r} must not have a #fragment")
    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError as exc:
        raise InvalidArgError(f"connection URI {text!r} has a malformed query: {exc}") from exc
    params: dict[str, str] = {}
    for key, value in pairs:
        if key in params:
            raise InvalidArgError(f"connection URI {text!r} repeats parameter {key!r}")
        params[key] = value
    return ConnectURI(driver, transport, host, port, path, params)
