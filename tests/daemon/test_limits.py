"""Bounded resources against clients: readers cannot fill the host table, and peers that never
finish a request, or open too many connections, are cut off (real sockets on loopback)."""

from __future__ import annotations

import os
import select
import signal
import socket
import ssl
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.daemon.conftest import FAST_RATE, SAFETY, SLOW_RATE, DaemonProcess, new_host, running
from virtjob import DomainState

HEADER_TIMEOUT = 2.0
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


def _assert_still_open(sock: socket.socket, since: float) -> None:
    """Assert the server has not closed `sock`, opened at `since`, if the header timeout
    cannot have passed yet (on a machine too loaded for that, there is nothing to check)."""
    readable, _, _ = select.select([sock], [], [], 0)
    if time.monotonic() - since < HEADER_TIMEOUT:
        assert not readable, "the server answered or closed at once"


def _closed_by_server(sock: socket.socket) -> bytes:
    """Read until the server closes the connection, and return what it sent.

    The socket timeout (`SAFETY`, far beyond the header timeout) bounds the wait: a
    connection the server never closes fails the test with `TimeoutError`.
    """
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
    """Silent peers and peers stuck inside their headers are kept for a while, then closed
    (well before `SAFETY`; how long exactly depends on the machine's load)."""
    started = time.monotonic()
    silent = _connect(tcp_daemon)
    partial = [_connect(tcp_daemon) for _ in range(3)]
    for sock in partial:
        sock.sendall(b"GET /v1/version HTTP/1.1\r\nHost: x\r\n")
    for sock in [silent, *partial]:
        _assert_still_open(sock, started)
    for sock in [silent, *partial]:
        with sock:
            assert _closed_by_server(sock) == b""


def test_a_trickling_peer_is_closed_too(tcp_daemon: DaemonProcess) -> None:
    """Sending a header byte now and then does not restart the clock: the server hangs up
    although the peer never stops sending (it would send for `SAFETY` seconds)."""
    with _connect(tcp_daemon) as sock:
        sock.sendall(b"GET /v1/version HTTP/1.1\r\n")
        closed = False
        for _ in range(int(SAFETY / 0.1)):  # one byte every 0.1 s, until the server hangs up
            try:
                sock.sendall(b"X")
                readable, _, _ = select.select([sock], [], [], 0.1)
                if readable and not sock.recv(4096):
                    closed = True
            except (BrokenPipeError, ConnectionResetError):
                closed = True
            if closed:
                break
        assert closed


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
                assert b'"state":"running"' in answer or b'"state":"queued"' in answer
                readable, _, _ = select.select([sock], [], [], HEADER_TIMEOUT * 1.5)
                assert not readable  # still open, idle, nothing sent
                assert _request(tcp_daemon, sock, "/v1/version").startswith(b"HTTP/1.1 200")
        finally:
            job.cancel()
            job.wait(SAFETY)


def _fill(daemon: DaemonProcess, admitted: Callable[[socket.socket], bool]) -> list[socket.socket]:
    """`MAX_CONNECTIONS` connections the daemon has each shown it admitted (`admitted`).

    A connection refused because the daemon still counts one a test before has closed is
    replaced (bounded by `SAFETY`).
    """
    held: list[socket.socket] = []
    deadline = time.monotonic() + SAFETY
    try:
        while len(held) < MAX_CONNECTIONS:
            sock = _connect(daemon)
            if admitted(sock):
                held.append(sock)
                continue
            sock.close()
            assert time.monotonic() < deadline, "the daemon keeps refusing connections"
            time.sleep(0.05)  # bounded retry while the server notices earlier closes
    except BaseException:
        for sock in held:
            sock.close()
        raise
    return held


def _served_again(daemon: DaemonProcess) -> None:
    """Wait (bounded) until a new client is served: the daemon has seen the closes."""
    deadline = time.monotonic() + SAFETY
    while True:
        try:
            with daemon.client() as client:
                if client.get("/v1/version").status_code == 200:
                    return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the daemon never served again"
        time.sleep(0.05)  # bounded retry while the server notices the closed connections


def test_connections_over_the_limit_get_503(tcp_daemon: DaemonProcess) -> None:
    def served(sock: socket.socket) -> bool:  # in and idle (keep-alive), so it counts
        try:
            return _request(tcp_daemon, sock, "/v1/version").startswith(b"HTTP/1.1 200")
        except ConnectionError:  # refused (503 and closed) before the request went out
            return False

    held = _fill(tcp_daemon, served)
    try:
        with _connect(tcp_daemon) as extra:
            answer = _closed_by_server(extra)
        assert answer.startswith(b"HTTP/1.1 503"), answer
        assert b"--max-connections" in answer
    finally:
        for sock in held:
            sock.close()
    _served_again(tcp_daemon)


# -- the same limits over TLS, before the handshake -------------------------------------------


@pytest.fixture(scope="module")
def tls_daemon(certificate: tuple[str, str]) -> Iterator[DaemonProcess]:
    """A TLS daemon with a short request timeout and a small connection limit."""
    extra = ["--header-timeout", str(HEADER_TIMEOUT), "--max-connections", str(MAX_CONNECTIONS)]
    with running(tcp=True, tls=certificate, extra=extra) as daemon:
        yield daemon


@pytest.fixture(scope="module")
def patient_tls_daemon(certificate: tuple[str, str]) -> Iterator[DaemonProcess]:
    """A TLS daemon whose request timeout outlasts any test, so held peers stay counted."""
    extra = ["--header-timeout", str(SAFETY * 8), "--max-connections", str(MAX_CONNECTIONS)]
    with running(tcp=True, tls=certificate, extra=extra) as daemon:
        yield daemon


def _tls_context(daemon: DaemonProcess) -> ssl.SSLContext:
    assert daemon.tls is not None
    return ssl.create_default_context(cafile=daemon.tls[0])


def _client_hello(daemon: DaemonProcess) -> bytes:
    """The first message of a TLS handshake with the daemon (a ClientHello)."""
    outgoing = ssl.MemoryBIO()
    tls = _tls_context(daemon).wrap_bio(ssl.MemoryBIO(), outgoing, server_hostname="127.0.0.1")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def _stalled_handshake(daemon: DaemonProcess, sock: socket.socket) -> bool:
    """Send a ClientHello on `sock` and stop there; True when the daemon answered it (the
    connection was admitted), False when it closed the connection instead."""
    try:
        sock.sendall(_client_hello(daemon))
        return bool(sock.recv(4096))
    except ConnectionError:  # reset, or a broken pipe: refused
        return False


def test_peers_that_never_finish_a_tls_handshake_are_closed_after_the_header_timeout(
    tls_daemon: DaemonProcess,
) -> None:
    """A peer that never sends a ClientHello, one that stops after it, and one that completes
    the handshake but sends no request are all closed like silent peers of plain HTTP
    (asyncio alone would wait 60 s for a handshake)."""
    started = time.monotonic()
    silent = _connect(tls_daemon)
    stalled = _connect(tls_daemon)
    peers = [silent, stalled]
    try:
        answered = _stalled_handshake(tls_daemon, stalled)
        assert answered or time.monotonic() - started >= HEADER_TIMEOUT
        try:
            quiet = _tls_context(tls_daemon).wrap_socket(
                _connect(tls_daemon), server_hostname="127.0.0.1"
            )
            peers.append(quiet)
        except (ssl.SSLError, ConnectionError):  # only if the machine is too slow for it
            assert time.monotonic() - started >= HEADER_TIMEOUT
        _assert_still_open(silent, started)
        for sock in peers:
            assert _closed_by_server(sock) == b""
    finally:
        for sock in peers:
            sock.close()


def test_tls_handshakes_count_against_the_connection_limit(
    patient_tls_daemon: DaemonProcess,
) -> None:
    """Peers inside a handshake hold a file descriptor, so they count: one more connection
    is closed at once (a 503 would need a handshake first), and once they go, the daemon
    serves again."""
    held = _fill(patient_tls_daemon, lambda sock: _stalled_handshake(patient_tls_daemon, sock))
    try:
        with (
            _connect(patient_tls_daemon) as extra,
            pytest.raises((ssl.SSLError, ConnectionError)),  # closed, not a timeout
        ):
            _tls_context(patient_tls_daemon).wrap_socket(extra, server_hostname="127.0.0.1").close()
    finally:
        for sock in held:
            sock.close()
    _served_again(patient_tls_daemon)


def test_a_stalled_handshake_does_not_hold_up_shutdown(certificate: tuple[str, str]) -> None:
    """SIGTERM drops connections inside their handshake at once: the daemon exits cleanly
    well before their request timeout."""
    extra = ["--header-timeout", str(SAFETY * 8)]
    with running(tcp=True, tls=certificate, extra=extra) as daemon:
        stalled = _fill(daemon, lambda sock: _stalled_handshake(daemon, sock))
        try:
            assert daemon.signal(signal.SIGTERM) == 0  # waits at most SAFETY
            for sock in stalled:
                assert _closed_by_server(sock) == b""
        finally:
            for sock in stalled:
                sock.close()
