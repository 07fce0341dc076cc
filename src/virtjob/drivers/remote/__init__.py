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

from virtjob.uri import ConnectURI

from .driver import RemoteDriver
from .jobs import RemoteJobDriver

__all__ = ["RemoteDriver", "RemoteJobDriver", "connect"]


def connect(uri: ConnectURI) -> RemoteDriver:
    """Open a connection to the daemon host `uri` names.

    Raises `ConnectError` when the daemon cannot be reached, `AuthError` when it refuses the
    token, `InvalidArgError` for unusable parameters, and what the daemon answers otherwise.
    """
    return RemoteDriver(uri)
