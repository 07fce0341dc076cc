"""Every public job method, and the domain and network operations, through the remote driver.

All against a real virtjobd (see tests/daemon/conftest.py), but for one moment a daemon will
not produce on demand (a scripted one); the `Job` class is the same one local jobs use, driven
by `RemoteJobDriver`.
"""

from __future__ import annotations

import json
import logging
import os
import threading

import pytest

import virtjob
from tests.daemon.conftest import SAFETY, DaemonProcess
from tests.drivers.remote.conftest import Serve
from tests.drivers.remote.rawserver import Peer
from virtjob import JobKind, JobState
from virtjob.api import JobDocument, encode_job
from virtjob.drivers.remote import RemoteDriver, RemoteJobDriver
from virtjob.drivers.remote.transport import Transport
from virtjob.jobs import JobInfo
from virtjob.uri import parse_uri

NEW_DOMAIN = """<domain type='test'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
</domain>"""
NEW_NETWORK = """<network>
  <name>{name}</name>
  <bridge name='{bridge}'/>
</network>"""


def test_the_connection_uses_the_remote_driver(conn: virtjob.Connection) -> None:
    assert isinstance(conn.driver, RemoteDriver)
    caps = conn.capabilities()
    assert caps.driver == "test"
    assert caps.supports(JobKind.DOMAIN_SAVE)


def test_save_job_info_watch_result(
    conn: virtjob.Connection, shared_daemon: DaemonProcess, host: str
) -> None:
    dom = conn.lookup_domain("test")
    path = os.path.join(shared_daemon.files, f"{host}-save")
    job = dom.save_job(path)
    assert job.kind is JobKind.DOMAIN_SAVE
    assert job.subject == "test"
    infos = list(job.watch(0.0))
    assert infos[-1].state is JobState.SUCCEEDED
    assert all(i.state is not JobState.SUCCEEDED for i in infos[:-1])
    percents = [i.percent for i in infos if i.percent is not None]
    assert percents == sorted(percents)
    assert job.info().percent == 100.0
    assert job.result() is None
    assert job.error() is None
    assert job.domain() is None
    assert os.path.getsize(path) > 0
    assert dom.state() is virtjob.DomainState.SHUTOFF
    restored = conn.restore(path)
    assert restored == dom
    assert dom.state() is virtjob.DomainState.RUNNING


def test_start_job_result_is_a_domain(conn: virtjob.Connection) -> None:
    dom = conn.define_domain(NEW_DOMAIN.format(name="fresh"))
    assert dom.state() is virtjob.DomainState.SHUTOFF
    with dom.start_job() as job:
        got = job.result(timeout=SAFETY)
        assert isinstance(got, virtjob.Domain)
        assert got == dom
        assert job.domain() == dom
        assert job.network() is None
    assert dom.is_active()


def test_create_network_job_result_is_a_network(conn: virtjob.Connection) -> None:
    job = conn.create_network_job(NEW_NETWORK.format(name="net1", bridge="vjb1"))
    net = job.result(timeout=SAFETY)
    assert isinstance(net, virtjob.Network)
    assert job.network() == net
    assert job.domain() is None
    assert net.is_active()
    job.destroy()


def test_failed_job_error_is_rebuilt(
    conn: virtjob.Connection, shared_daemon: DaemonProcess, host: str
) -> None:
    path = os.path.join(shared_daemon.files, f"{host}-corrupt")
    conn.lookup_domain("test").save(path)
    with open(path, "r+b") as handle:  # flip the last byte: only the checksum notices
        handle.seek(-1, os.SEEK_END)
        last = handle.read(1)
        handle.seek(-1, os.SEEK_END)
        handle.write(bytes([last[0] ^ 0xFF]))
    job = conn.restore_job(path)
    info = job.wait(SAFETY)
    assert info.state is JobState.FAILED
    error = job.error()
    assert isinstance(error, virtjob.InvalidArgError)
    assert "checksum" in error.message
    with pytest.raises(virtjob.InvalidArgError, match="checksum"):
        job.result()
    assert job.domain() is None


def test_cancel_a_running_job(
    slow_conn: virtjob.Connection, shared_daemon: DaemonProcess, host: str
) -> None:
    dom = slow_conn.lookup_domain("test")
    path = os.path.join(shared_daemon.files, f"{host}-cancel")
    job = dom.save_job(path)
    for info in job.watch(0.0):
        if info.percent:
            break
    job.cancel()
    final = job.wait(SAFETY)
    assert final.state is JobState.CANCELLED
    assert final.cancel_requested
    with pytest.raises(virtjob.JobCancelledError):
        job.result()
    assert not os.path.exists(path)
    assert dom.state() is virtjob.DomainState.RUNNING
    job.cancel()  # a no-op on a finished job


def test_wait_timeout_and_destroy_while_running(
    slow_conn: virtjob.Connection, shared_daemon: DaemonProcess, host: str
) -> None:
    dom = slow_conn.lookup_domain("test")
    job = dom.dump_core_job(os.path.join(shared_daemon.files, f"{host}-core"))
    try:
        with pytest.raises(virtjob.JobTimeoutError):
            job.wait(0.2)
        with pytest.raises(TimeoutError):
            job.result(timeout=0)
        with pytest.raises(virtjob.OperationInvalidError):
            job.destroy()
    finally:
        job.cancel()
        job.wait(SAFETY)
    job.destroy()
    with pytest.raises(virtjob.NoJobError):
        job.info()
    with pytest.raises(virtjob.NoJobError):
        job.destroy()


def test_add_done_callback_from_a_background_waiter(slow_conn: virtjob.Connection) -> None:
    net = slow_conn.define_network(NEW_NETWORK.format(name="cbnet", bridge="vjb2"))
    job = net.start_job()
    called: list[virtjob.Job] = []
    done = threading.Event()

    def callback(j: virtjob.Job) -> None:
        called.append(j)
        done.set()

    job.add_done_callback(callback)
    job.add_done_callback(called.append)
    assert done.wait(SAFETY)
    assert job.info().state is JobState.SUCCEEDED
    # The second callback runs right after the first, in the same waiter thread.
    for _ in range(100):
        if len(called) == 2:
            break
        done.wait(0.01)
    assert called == [job, job]
    # On a finished job the callback runs at once, in this thread.
    here: list[int] = []
    job.add_done_callback(lambda j: here.append(threading.get_ident()))
    assert here == [threading.get_ident()]


def test_list_and_lookup_jobs(conn: virtjob.Connection) -> None:
    net = conn.define_network(NEW_NETWORK.format(name="lnet", bridge="vjb3"))
    job = net.start_job()
    job.wait(SAFETY)
    assert job in conn.list_jobs()
    same = conn.lookup_job(job.id)
    assert same == job
    assert same.kind is JobKind.NETWORK_START
    with pytest.raises(virtjob.NoJobError):
        conn.lookup_job("0123456789ab")


def test_jobs_of_another_host_are_not_visible(
    conn: virtjob.Connection, shared_daemon: DaemonProcess
) -> None:
    job = conn.create_network_job(NEW_NETWORK.format(name="other", bridge="vjb4"))
    job.wait(SAFETY)
    with shared_daemon.open("elsewhere") as other:
        with pytest.raises(virtjob.NoJobError, match="belongs to"):
            other.lookup_job(job.id)
        assert job not in other.list_jobs()


def test_domain_operations(conn: virtjob.Connection) -> None:
    dom = conn.lookup_domain("test")
    assert conn.lookup_domain(str(dom.uuid)) == dom
    assert dom in conn.list_domains()
    assert "<name>test</name>" in dom.xml()
    assert dom.id is not None
    dom.suspend()
    assert dom.state() is virtjob.DomainState.PAUSED
    with pytest.raises(virtjob.OperationInvalidError):
        dom.suspend()
    dom.resume()
    dom.shutdown()
    assert dom.state() is virtjob.DomainState.SHUTOFF
    dom.start()
    dom.destroy()
    assert not dom.is_active()
    assert dom.is_persistent()
    dom.undefine()
    with pytest.raises(virtjob.NoDomainError):
        conn.lookup_domain("test")
    with pytest.raises(virtjob.NoDomainError):
        dom.info()


def test_create_domain_and_xml_errors(conn: virtjob.Connection) -> None:
    dom = conn.create_domain(NEW_DOMAIN.format(name="transient"))
    assert dom.is_active()
    assert not dom.is_persistent()
    with pytest.raises(virtjob.XMLError) as caught:
        conn.define_domain("<domain><name>x</name>\n<oops></domain>")
    assert caught.value.line is not None


def test_network_operations(conn: virtjob.Connection) -> None:
    net = conn.lookup_network("default")
    assert net in conn.list_networks()
    assert net.is_active()
    assert "<name>default</name>" in net.xml()
    net.destroy()
    assert not net.is_active()
    net.start()
    assert net.is_active()
    with pytest.raises(virtjob.NoNetworkError):
        conn.lookup_network("nope")
    defined = conn.define_network(NEW_NETWORK.format(name="later", bridge="vjb5"))
    defined.undefine()
    with pytest.raises(virtjob.NoNetworkError):
        conn.lookup_network("later")


def test_unreachable_daemon_is_a_connect_error(tmp_path: object) -> None:
    with pytest.raises(virtjob.ConnectError, match="is virtjobd running"):
        virtjob.open("test+unix:///default?socket=/nonexistent/virtjobd.sock")
    with pytest.raises(virtjob.ConnectError, match=r"127\.0\.0\.1:1\b"):
        virtjob.open("test+tcp://127.0.0.1:1/default")


def test_unknown_driver_on_the_daemon(shared_daemon: DaemonProcess) -> None:
    with pytest.raises(virtjob.NoSupportError):
        virtjob.open(f"nosuch+unix:///default?socket={shared_daemon.socket}")


def test_a_closed_connection_refuses_like_a_local_one(conn: virtjob.Connection) -> None:
    """After close(), job handles and objects of a remote connection raise the same
    OperationInvalidError as `Connection.driver` does, naming the URI."""
    net = conn.define_network(NEW_NETWORK.format(name="cnet", bridge="vjb5"))
    job = net.start_job()
    job.wait(SAFETY)
    conn.close()
    for call in (job.info, job.cancel, lambda: job.wait(1), net.is_active, conn.list_domains):
        with pytest.raises(virtjob.OperationInvalidError, match="is closed; open a new one"):
            call()


def test_closing_the_connection_stops_a_background_waiter_quietly(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    """A done-callback waiter whose long poll is cut by `close()` ends without a warning, an
    error or a call (a scripted daemon holds the long poll until then)."""
    running = JobDocument(
        id="0123456789ab",
        host="test:///default",
        kind=JobKind.DOMAIN_SAVE,
        subject="test",
        info=JobInfo(JobState.RUNNING, True, 1.0, None, 10.0, None, None, False),
    )
    polling = threading.Event()

    def daemon(peer: Peer) -> None:
        while (request := peer.read_request()) is not None:
            if b"/wait?" in request.line:
                polling.set()
                peer.wait_closed()
                return
            peer.answer("200 OK", json.dumps(encode_job(running)).encode())

    server = serve(daemon)
    transport = Transport(parse_uri(server.uri()))
    jobs = RemoteJobDriver(transport)
    called: list[bool] = []
    with caplog.at_level(logging.DEBUG, logger="virtjob"):
        jobs.job_add_done_callback(running.id, lambda: called.append(True))
        assert polling.wait(SAFETY)
        (waiter,) = [t for t in threading.enumerate() if t.name.endswith(running.id)]
        jobs.close()
        transport.close()
        waiter.join(SAFETY)
    assert not waiter.is_alive()
    assert called == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
