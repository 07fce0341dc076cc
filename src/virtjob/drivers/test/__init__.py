"""The ``test`` driver: complete, honest simulated hosts living in this process.

``test:///NAME`` names a host; every connection to the same NAME in a process shares it
(``test:///default`` is the usual one). Each host starts with a running domain ``test`` and an
active network ``default``. ``?rate=BYTES_PER_SECOND`` sets how fast the jobs started through
that connection simulate their work (default: saving ``test`` takes about two seconds).
Save files and core dumps are real files.
"""

from __future__ import annotations

from virtjob.drivers.test.driver import TestDriver
from virtjob.drivers.test.host import get_host
from virtjob.errors import InvalidArgError
from virtjob.uri import ConnectURI

DEFAULT_RATE = 256 << 20
"""Simulated bytes per second: the 512 MiB domain ``test`` saves in two seconds."""

__all__ = ["DEFAULT_RATE", "TestDriver", "connect"]


def connect(uri: ConnectURI) -> TestDriver:
    """Open a connection to the simulated host `uri` names; `InvalidArgError` for bad params."""
    unknown = set(uri.params) - {"rate"}
    if unknown:
        raise InvalidArgError(
            f"unknown parameter {sorted(unknown)[0]!r} in {uri}; the test driver takes 'rate'"
        )
    rate = DEFAULT_RATE
    if "rate" in uri.params:
        text = uri.params["rate"]
        if not text.isdigit() or int(text) < 1:
            raise InvalidArgError(
                f"rate={text!r} in {uri} is not a positive whole number of bytes per second"
            )
        rate = int(text)
    name = uri.path.strip("/")
    if not name or "/" in name:
        raise InvalidArgError(f"{uri} must name one host, e.g. test:///default")
    return TestDriver(get_host(name), rate, str(uri))
