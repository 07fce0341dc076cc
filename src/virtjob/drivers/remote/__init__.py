"""The ``remote`` driver: a client of virtjobd.

``DRIVER+unix:///PATH[?socket=S]``, ``DRIVER+tcp://HOST[:PORT]/PATH`` and
``DRIVER+tls://HOST[:PORT]/PATH[?ca_file=F]`` reach the host ``DRIVER:///PATH`` served by a
virtjobd. The bearer token comes from ``?token_file=`` or ``$VIRTJOB_TOKEN``. Jobs are the
ordinary `virtjob.jobs.Job` handles, driven by `RemoteJobDriver`.

Modules: `http11` (a keep-alive HTTP/1.1 transport for httpx), `transport` (requests to one
daemon, retries and error mapping), `driver` (the `Driver` protocol), `jobs` (the `JobDriver`
protocol). What crosses the wire is `virtjob.api`'s, shared with the daemon; nothing here
imports `virtjob.daemon`.
"""

from __future__ import annotations

import sys

from virtjob.uri import ConnectURI

# httpx's __init__ runs ``from ._main import main`` (its command-line client), which imports
# click, rich and pygments whenever they are installed (they are, for virtjob's CLI): 69
# modules and ~35 ms on every remote command, for a function virtjob never calls. A None in
# sys.modules makes that import fail, and httpx falls back to a ``main`` that says the CLI is
# not available; only ``httpx.main`` is affected, and only in this process. Done only when
# httpx is not imported yet (once it is, the cost is paid), and undone right after.
if "httpx" not in sys.modules and "httpx._main" not in sys.modules:
    sys.modules["httpx._main"] = None  # type: ignore[assignment]
    try:
        import httpx  # noqa: F401 - imported here, without its CLI
    finally:
        if sys.modules.get("httpx._main", 0) is None:
            del sys.modules["httpx._main"]

from .driver import RemoteDriver
from .jobs import RemoteJobDriver

__all__ = ["RemoteDriver", "RemoteJobDriver", "connect"]


def connect(uri: ConnectURI) -> RemoteDriver:
    """Open a connection to the daemon host `uri` names.

    Raises `ConnectError` when the daemon cannot be reached, `AuthError` when it refuses the
    token, `InvalidArgError` for unusable parameters, and what the daemon answers otherwise.
    """
    return RemoteDriver(uri)
