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

MAX_RATE = 1 << 62
"""The highest rate accepted (about 4.6 EB/s: every job is instant long before that)."""

__all__ = ["DEFAULT_RATE", "MAX_RATE", "TestDriver", "connect"]


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
        # ASCII digits only ("²".isdigit() is True); bounded, so the pacing math stays finite
        digits = text.lstrip("0") if text.isascii() and text.isdigit() else ""
        if not 0 < len(digits) <= len(str(MAX_RATE)) or int(digits) > MAX_RATE:
            raise InvalidArgError(
                f"rate={text[:40]!r} in {uri} is not a positive whole number of bytes per"
                f" second (at most {MAX_RATE})"
            )
        rate = int(text)
    name = uri.path.strip("/")
    if not name or "/" in name:
        raise InvalidArgError(f"{uri} must name one host, e.g. test:///default")
    return TestDriver(get_host(name), rate, str(uri))
