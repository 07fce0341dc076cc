"""A real `virtjobd` in a subprocess, for the daemon and remote-driver tests.

`DaemonProcess` starts ``python -m virtjob.daemon`` on a temporary unix socket (or loopback
port), waits for readiness by polling the socket with a bounded loop, and always stops it
(SIGTERM, then SIGKILL) and removes its files. Tests name their own test host (``t1``,
``t2``...) so that tests sharing one daemon never see each other's domains or jobs.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import virtjob

SAFETY = 15.0
"""Seconds after which a blocked step gives up (a bound, never a synchronisation delay)."""
SLOW_RATE = 32 << 20
"""Bytes/s at which saving the 512 MiB domain `test` takes 16 s: long enough to act on it."""
FAST_RATE = 4 << 30

_hosts = itertools.count(1)


def start_fails(*args: str) -> subprocess.CompletedProcess[str]:
    """Run virtjobd with `args` and return how it ended (for options it must refuse at start)."""
    return subprocess.run(
        [sys.executable, "-m", "virtjob.daemon", *args],
        capture_output=True,
        text=True,
        timeout=SAFETY,
        check=False,
    )


def new_host() -> str:
    """A fresh test-host instance name, unique within the test run."""
    return f"t{os.getpid()}x{next(_hosts)}"


class DaemonProcess:
    """One virtjobd subprocess with its own state directory."""

    def __init__(
        self,
        *,
        tcp: bool = False,
        token: bool = False,
        tls: tuple[str, str] | None = None,
        extra: list[str] | None = None,
        base: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.base = base or tempfile.mkdtemp(prefix="vjd-")
        self.state_dir = os.path.join(self.base, "state")
        self.files = os.path.join(self.base, "files")
        os.makedirs(self.files, exist_ok=True)
        self.socket = os.path.join(self.base, "d.sock")
        self.tcp = tcp
        self.tls = tls
        self.token: str | None = None
        self.token_file: str | None = None
        if token or tcp:
            self.token = secrets.token_urlsafe(24)
            self.token_file = os.path.join(self.base, "token")
            fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(self.token + "\n")
        self.extra = extra or []
        self.env = env
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = os.path.join(self.base, "daemon.log")

    def argv(self) -> list[str]:
        """The command line that starts this daemon."""
        listen = f"tcp:127.0.0.1:{self.port}" if self.tcp else f"unix:{self.socket}"
        argv = [sys.executable, "-m", "virtjob.daemon", "--state-dir", self.state_dir]
        argv += ["--listen", listen, "--allow-dir", self.files, "--shutdown-grace", "5"]
        if self.token_file:
            argv += ["--token-file", self.token_file]
        if self.tls:
            argv += ["--tls-cert", self.tls[0], "--tls-key", self.tls[1]]
        return argv + self.extra

    def start(self) -> DaemonProcess:
        """Start the daemon and wait until it answers; raise if it does not in time."""
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv(),
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                env=None if self.env is None else {**os.environ, **self.env},
            )
        deadline = time.monotonic() + SAFETY
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"virtjobd exited with {self.proc.returncode}:\n{self.log()}")
            if self._ready():
                return self
            time.sleep(0.02)  # polling the socket for readiness, bounded by the deadline
        raise RuntimeError(f"virtjobd did not become ready in {SAFETY} s:\n{self.log()}")

    def _ready(self) -> bool:
        if self.tcp:
            if not self.port:
                found = re.findall(r"serving https? on tcp:127\.0\.0\.1:(\d+)", self.log())
                if not found:
                    return False
                self.port = int(found[-1])
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return True
            except OSError:
                return False
        if not os.path.exists(self.socket):
            return False
        with socket.socket(socket.AF_UNIX) as probe:  # httpx leaks a socket it fails to connect
            try:
                probe.connect(self.socket)
            except OSError:
                return False
        try:
            with self.client() as client:
                return client.get("/v1/version").status_code == 200
        except httpx.HTTPError:
            return False

    def log(self) -> str:
        """Everything the daemon wrote to stdout and stderr."""
        with open(self.log_path, encoding="utf-8", errors="replace") as handle:
            return handle.read()

    @property
    def url(self) -> str:
        """The base URL (for TCP daemons)."""
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def uri(self, host: str = "default", **params: Any) -> str:
        """A remote-driver URI for test host `host` on this daemon."""
        query: dict[str, Any] = dict(params)
        if self.tcp:
            scheme = "tls" if self.tls else "tcp"
            if self.token_file and "token_file" not in query:
                query["token_file"] = self.token_file
            if self.tls and "ca_file" not in query:
                query["ca_file"] = self.tls[0]
            base = f"test+{scheme}://127.0.0.1:{self.port}/{host}"
        else:
            query.setdefault("socket", self.socket)
            base = f"test+unix:///{host}"
        pairs = "&".join(f"{k}={v}" for k, v in query.items() if v is not None)
        return base + (f"?{pairs}" if pairs else "")

    def open(self, host: str = "default", **params: Any) -> virtjob.Connection:
        """A remote connection to test host `host`."""
        return virtjob.open(self.uri(host, **params))

    def client(self, token: str | None = None) -> httpx.Client:
        """A raw HTTP client of the API (with the daemon's token unless told otherwise)."""
        headers = {}
        chosen = token if token is not None else self.token
        if chosen:
            headers["authorization"] = f"Bearer {chosen}"
        if self.tcp:
            verify: Any = True
            if self.tls:
                import ssl

                verify = ssl.create_default_context(cafile=self.tls[0])
            return httpx.Client(base_url=self.url, headers=headers, verify=verify, timeout=SAFETY)
        return httpx.Client(
            base_url="http://virtjobd",
            headers=headers,
            transport=httpx.HTTPTransport(uds=self.socket),
            timeout=SAFETY,
        )

    def signal(self, sig: int) -> int:
        """Send `sig` and wait for the process to exit; return its exit status."""
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(SAFETY)

    def kill9(self) -> None:
        """Kill the daemon with SIGKILL (nothing gets to clean up)."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(SAFETY)

    def stop(self) -> None:
        """Stop the daemon if it runs: SIGTERM, then SIGKILL if it lingers."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(SAFETY)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(SAFETY)

    def cleanup(self) -> None:
        """Stop the daemon and remove its files."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


@contextlib.contextmanager
def running(**kwargs: Any) -> Iterator[DaemonProcess]:
    """A started daemon, always stopped and removed afterwards."""
    daemon = DaemonProcess(**kwargs)
    try:
        yield daemon.start()
    finally:
        daemon.cleanup()


@pytest.fixture(scope="session")
def shared_daemon() -> Iterator[DaemonProcess]:
    """One unix-socket daemon for the tests that do not stop or restart it."""
    with running(extra=["--max-hosts", "10000"]) as daemon:
        yield daemon


@pytest.fixture
def daemon() -> Iterator[DaemonProcess]:
    """A daemon of the test's own (for tests that kill, restart or signal it)."""
    with running() as daemon:
        yield daemon


@pytest.fixture
def host() -> str:
    """A fresh test-host name on the daemon."""
    return new_host()


@pytest.fixture
def conn(shared_daemon: DaemonProcess, host: str) -> Iterator[virtjob.Connection]:
    """A remote connection to a fresh test host, whose jobs run fast."""
    with shared_daemon.open(host, rate=FAST_RATE) as connection:
        yield connection


@pytest.fixture
def slow_conn(shared_daemon: DaemonProcess, host: str) -> Iterator[virtjob.Connection]:
    """A remote connection to the same host as `conn`, whose jobs take seconds."""
    with shared_daemon.open(host, rate=SLOW_RATE) as connection:
        yield connection


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate and its key for 127.0.0.1 (PEM files), made with openssl."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = str(directory / "cert.pem"), str(directory / "key.pem")
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", key, "-out", cert, "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=SAFETY,
    )  # fmt: skip
    return cert, key
