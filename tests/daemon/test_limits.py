"""Bounded resources against clients: readers cannot fill the host table, and peers that never
finish a request, or open too many connections, are cut off (real sockets on loopback)."""

from __future__ import annotations

import os
import select
import socket
import time
from collections.abc import Iterator

import pytest

from tests.daemon.conftest import FAST_RATE, SAFETY, SLOW_RATE, DaemonProcess, new_host, running
from virtjob import DomainState

HEADER_TIMEOUT = 1.0
MAX_CONNECTIONS = 8

# -- finding 12: the host table --------------------------------------------------------------


def _define_xml(name: str) -> str:
    return (
        f"<domain type='test'><name>{name}</name><memory unit='MiB'>64</memory>"
        "<os><type>hvm</type></os></domain>"
    )


def test_reads_never_create_hosts_and_restarts_lock_nobody_out() -> None:
    """GETs of made-up hosts answer as a fresh host would, without opening one; only writes
    create hosts (counted against --max-hosts); the well-known host and reads keep working
    when the table is full, before and after a restart."""
    with running(extra=["--max-hosts", "2"]) as daemon, daemon.client() as client:
        for index in range(40):
            base = f"/v1/hosts/test/r{index}"
            host = client.get(base).json()
            assert host["uri"] == f"test:///r{index}"
            assert "domain-save" in host["capabilities"]["job_kinds"]
            assert [d["name"] for d in client.get(f"{base}/domains").json()] == ["test"]
            assert client.get(f"{base}/domains/test").json()["state"] == "running"
            assert [n["name"] for n in client.get(f"{base}/networks").json()] == ["default"]
            assert client.get(f"{base}/jobs").json() == []
            missing = client.get(f"{base}/domains/nope")
            assert missing.status_code == 404
            assert f"test:///r{index}" in missing.json()["message"]  # names the host asked for
        assert client.get("/v1/version").json()["hosts"] == []

        for name in ("w1", "w2"):
            answer = client.post(f"/v1/hosts/test/{name}/domains", json={"xml": _define_xml("d")})
            assert answer.status_code == 201, answer.text
        full = client.post("/v1/hosts/test/w3/domains", json={"xml": _define_xml("d")})
        assert full.status_code == 409
        assert "--max-hosts" in full.json()["message"]
        assert client.post("/v1/hosts/test/default/domains/test/suspend").status_code == 204
        assert client.post("/v1/hosts/test/default/domains/test/resume").status_code == 204
        assert client.get("/v1/hosts/test/r99/domains/test").status_code == 200

        daemon.stop()
        daemon.extra = ["--max-hosts", "1"]  # even a lower limit keeps the replayed hosts
        daemon.start()
        with daemon.client() as again:
            hosts = set(again.get("/v1/version").json()["hosts"])
            assert {"test:///w1", "test:///w2"} <= hosts
            for name in ("w1", "w2"):
                names = {d["name"] for d in again.get(f"/v1/hosts/test/{name}/domains").json()}
                assert names == {"test", "d"}
            assert again.post("/v1/hosts/test/w3/domains/test/suspend").status_code == 409
            assert again.post("/v1/hosts/test/default/domains/test/suspend").status_code == 204
            assert again.get("/v1/hosts/test/r100/domains/test").json()["state"] == "running"


def test_a_remote_client_reads_then_writes_a_fresh_host(shared_daemon: DaemonProcess) -> None:
    """The remote driver's connect probe and lookups read the stand-in; the first write creates
    the host, whose objects are the ones the client looked up (same UUIDs)."""
    host = new_host()
    with shared_daemon.open(host, rate=FAST_RATE) as conn:
        dom = conn.lookup_domain("test")
        with shared_daemon.client() as client:
            assert f"test:///{host}" not in client.get("/v1/version").json()["hosts"]
            dom.save(os.path.join(shared_daemon.files, f"{host}.save"))
            assert dom.state() is DomainState.SHUTOFF
            assert f"test:///{host}" in client.get("/v1/version").json()["hosts"]


# -- finding 10: half-open connections and the connection limit ------------------------------


@pytest.fixture(scope="module")
def tcp_daemon() -> Iterator[DaemonProcess]:
    """A TCP daemon with a short request timeout and a small connection limit."""
    extra = ["--header-timeout", str(HEADER_TIMEOUT), "--max-connections", str(MAX_CONNECTIONS)]
    with running(tcp=True, extra=extra) as daemon:
        yield daemon


def _connect(daemon: DaemonProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=SAFETY)
    sock.settimeout(SAFETY)
    return sock


def _closed_by_server(sock: socket.socket) -> bytes:
    """Read until the server closes the connection (bounded by the socket timeout)."""
    received = b""
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def _request(daemon: DaemonProcess, sock: socket.socket, path: str) -> bytes:
    """Send a whole GET on `sock` and return the answer's head and body (keep-alive)."""
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {daemon.token}\r\n\r\n".encode()
    )
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, f"closed early: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(4096)
        assert chunk
        body += chunk
    return head + b"\r\n\r\n" + body


def test_half_open_connections_are_closed_after_the_header_timeout(
    tcp_daemon: DaemonProcess,
) -> None:
    """Silent peers and peers stuck inside their headers are closed once the timeout passes."""
    started = time.monotonic()
    silent = _connect(tcp_daemon)
    partial = [_connect(tcp_daemon) for _ in range(3)]
    for sock in partial:
        sock.sendall(b"GET /v1/version HTTP/1.1\r\nHost: x\r\n")
    for sock in [silent, *partial]:
        with sock:
            assert _closed_by_server(sock) == b""
    elapsed = time.monotonic() - started
    assert HEADER_TIMEOUT * 0.8 <= elapsed < HEADER_TIMEOUT + SAFETY / 2


def test_a_trickling_peer_is_closed_too(tcp_daemon: DaemonProcess) -> None:
    """Sending a header byte now and then does not restart the clock."""
    with _connect(tcp_daemon) as sock:
        sock.sendall(b"GET /v1/version HTTP/1.1\r\n")
        started = time.monotonic()
        closed = False
        for _ in range(int(SAFETY / 0.1)):  # one byte every 0.1 s, until the server hangs up
            try:
                sock.sendall(b"X")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            readable, _, _ = select.select([sock], [], [], 0.1)
            if readable and not sock.recv(4096):
                closed = True
                break
        assert closed
        assert time.monotonic() - started < HEADER_TIMEOUT + 2


def test_a_long_poll_outlives_the_header_timeout(tcp_daemon: DaemonProcess) -> None:
    """The clock runs only while the client owes a request, never while the daemon answers;
    an idle keep-alive connection is kept too."""
    host = new_host()
    with tcp_daemon.open(host, rate=SLOW_RATE) as conn:
        job = conn.lookup_domain("test").save_job(os.path.join(tcp_daemon.files, f"{host}.s"))
        try:
            with _connect(tcp_daemon) as sock:
                waited = HEADER_TIMEOUT * 2
                answer = _request(tcp_daemon, sock, f"/v1/jobs/{job.id}/wait?timeout={waited}")
                assert answer.startswith(b"HTTP/1.1 200"), answer
                assert b'"state":"running"' in answer
                readable, _, _ = select.select([sock], [], [], HEADER_TIMEOUT * 1.5)
                assert not readable  # still open, idle, nothing sent
                assert _request(tcp_daemon, sock, "/v1/version").startswith(b"HTTP/1.1 200")
        finally:
            job.cancel()
            job.wait(SAFETY)


def test_connections_over_the_limit_get_503(tcp_daemon: DaemonProcess) -> None:
    held = [_connect(tcp_daemon) for _ in range(MAX_CONNECTIONS)]
    try:
        for sock in held:  # each one is in and idle (keep-alive), so they all count
            assert _request(tcp_daemon, sock, "/v1/version").startswith(b"HTTP/1.1 200")
        with _connect(tcp_daemon) as extra:
            answer = _closed_by_server(extra)
        assert answer.startswith(b"HTTP/1.1 503"), answer
        assert b"--max-connections" in answer
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + SAFETY
    while True:  # the server sees the closes: a new connection is served again
        with _connect(tcp_daemon) as sock:
            try:
                if _request(tcp_daemon, sock, "/v1/version").startswith(b"HTTP/1.1 200"):
                    break
            except (AssertionError, ConnectionResetError):
                pass
        assert time.monotonic() < deadline, "the daemon never served again"
        time.sleep(0.05)  # bounded retry while the server notices the closed connections
