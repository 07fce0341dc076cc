"""Keys a user names objects by, through the remote driver and a real virtjobd: each reaches
the route of the object it names, or, when no object can have it, is answered "no such
object" as a local driver answers it, without a request. A key that is a dot segment goes
out escaped (seen on a scripted server: virtjobd refuses such paths)."""

from __future__ import annotations

import logging
import os

import pytest

import virtjob
from tests.daemon.conftest import SAFETY, DaemonProcess
from tests.drivers.remote.conftest import Serve, open_transport
from tests.drivers.remote.rawserver import Peer
from virtjob.api.routes import API_PREFIX, JOB_ROUTES
from virtjob.drivers.remote.transport import Transport

CANNOT_EXIST = {
    "huge": ("a" * 70000, "longer than 64 characters"),
    "surrogate": ("x\ud800", "lone surrogate (U+D800)"),
    "slash": ("test/xml", "can hold '/'"),
    "dot": (".", "is '.' or '..'"),
    "dotdot": ("..", "is '.' or '..'"),
}


def keep_answering(peer: Peer) -> None:
    """Answer every request with 200 and ``{}`` until the client closes."""
    while peer.read_request() is not None:
        peer.answer("200 OK", b"{}")


def sent(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The requests the transport logged."""
    return [r.getMessage() for r in caplog.records if r.name == "virtjob.remote.http"]


@pytest.mark.parametrize(("key", "escaped"), [(".", "%2E"), ("..", "%2E%2E")])
def test_a_dot_segment_is_escaped_and_kept(
    serve: Serve, transports: list[Transport], key: str, escaped: str
) -> None:
    """``..`` and ``.`` go out escaped, as one segment: httpx resolves them away otherwise
    (``/v1/jobs/..`` went out as ``/v1``, ``/v1/jobs/.`` as ``/v1/jobs/``)."""
    server = serve(keep_answering)
    transport = open_transport(transports, server.uri())
    transport.call("GET", API_PREFIX + JOB_ROUTES["job_document"].path_for(job_id=key))
    assert server.lines() == [f"GET /v1/jobs/{escaped} HTTP/1.1".encode()]


@pytest.mark.parametrize("name", list(CANNOT_EXIST))
def test_a_key_no_object_can_have_is_not_sent(
    conn: virtjob.Connection, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    key, reason = CANNOT_EXIST[name]
    caplog.set_level(logging.DEBUG, logger="virtjob.remote.http")
    lookups: list[tuple[type[virtjob.VirtError], object]] = [
        (virtjob.NoDomainError, conn.lookup_domain),
        (virtjob.NoNetworkError, conn.lookup_network),
        (virtjob.NoJobError, conn.lookup_job),
    ]
    for error, lookup in lookups:
        with pytest.raises(error) as caught:
            lookup(key)  # type: ignore[operator]
        assert reason in caught.value.message
        assert repr(key[:20])[:-1] in caught.value.message
        assert len(caught.value.message) < 300
    assert sent(caplog) == []


def test_a_job_id_with_a_route_behind_it_is_not_sent(
    conn: virtjob.Connection,
    shared_daemon: DaemonProcess,
    host: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``ID/wait`` escaped as ``ID%2Fwait`` was decoded by the daemon's router: it reached
    the job's long poll and answered with the job's handle."""
    job = conn.lookup_domain("test").dump_core_job(os.path.join(shared_daemon.files, host))
    job.wait(SAFETY)
    caplog.set_level(logging.DEBUG, logger="virtjob.remote.http")
    for suffix in ("/wait", "/events", "/cancel"):
        with pytest.raises(virtjob.NoJobError, match="no job id can hold '/'"):
            conn.lookup_job(job.id + suffix)
    assert sent(caplog) == []
