"""A keep-alive connection the server closed is not an error (issue 10, finding 15).

After any 500 for an unexpected error, uvicorn (which virtjobd runs on) closes the connection,
and the remote client's next call used to fail with `ConnectError`: it reused that connection.
These tests run a real uvicorn server with the daemon's HTTP stack and error answer, and a raw
socket server that drops requests, and check the one HTTP path of `Transport` with every kind
of request (more failure cases, on scripted servers, are in test_transport.py).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from tests.daemon.conftest import SAFETY
from virtjob.daemon.server import HTTP_IMPL, LOOP_IMPL
from virtjob.drivers.remote.transport import Transport
from virtjob.errors import ConnectError, InternalError
from virtjob.uri import parse_uri

ROUNDS = 20
"""How often each sequence runs: the race (close vs. next request) is lost most of the time."""


def _app(counts: dict[str, int]) -> FastAPI:
    """An app that answers like virtjobd, and 500s (then uvicorn closes) on ``/v1/boom``."""
    app = FastAPI()

    async def unexpected(_request: Request, exc: Exception) -> Response:
        return JSONResponse(
            {"code": "internal-error", "message": f"virtjobd failed unexpectedly ({exc})"},
            status_code=500,
        )

    app.add_exception_handler(Exception, unexpected)

    @app.api_route("/v1/boom", methods=["GET", "POST"])
    def boom() -> None:
        raise RuntimeError("a bug")

    @app.get("/v1/ok")
    def ok() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/v1/count")
    def count() -> dict[str, int]:
        counts["post"] += 1
        return {"count": counts["post"]}

    @app.delete("/v1/thing")
    def delete() -> Response:
        counts["delete"] += 1
        return Response(status_code=204)

    return app


class Served:
    """A uvicorn server on a unix socket, in a thread, and the counters of its app."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.counts = {"post": 0, "delete": 0}
        config = uvicorn.Config(
            _app(self.counts),
            uds=path,
            http=HTTP_IMPL,
            loop=LOOP_IMPL,
            ws="none",
            lifespan="off",
            log_level="critical",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="test-uvicorn", daemon=True)

    def transport(self) -> Transport:
        """A remote-driver transport to this server."""
        return Transport(parse_uri(f"test+unix:///default?socket={self.path}"))


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """A started server, always stopped."""
    server = Served(str(tmp_path / "s.sock"))
    server.thread.start()
    deadline = time.monotonic() + SAFETY
    while not server.server.started:
        assert server.thread.is_alive(), "uvicorn stopped"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)  # polling for readiness, bounded by the deadline
    try:
        yield server
    finally:
        server.server.should_exit = True
        server.thread.join(SAFETY)


def test_after_a_500_the_next_call_succeeds_whatever_its_method(served: Served) -> None:
    transport = served.transport()
    try:
        for round_ in range(ROUNDS):
            with pytest.raises(InternalError, match="a bug"):
                transport.call("GET", "/v1/boom")
            assert transport.call("GET", "/v1/ok") == {"ok": True}
            with pytest.raises(InternalError, match="a bug"):
                transport.call("GET", "/v1/boom")
            assert transport.call("GET", "/v1/ok") == {"ok": True}
            with pytest.raises(InternalError, match="a bug"):
                transport.call("POST", "/v1/boom")
            assert transport.call("POST", "/v1/count") == {"count": round_ + 1}
            with pytest.raises(InternalError, match="a bug"):
                transport.call("GET", "/v1/boom")
            assert transport.call("DELETE", "/v1/thing") is None
        assert served.counts == {"post": ROUNDS, "delete": ROUNDS}, "each sent exactly once"
    finally:
        transport.close()


class Dropper:
    """A raw HTTP server that reads each request and closes the connection without an answer."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.requests: list[bytes] = []
        self.closing = False
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(8)
        self.listener.settimeout(SAFETY)
        self.thread = threading.Thread(target=self._serve, name="test-dropper", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            conn, _ = self.listener.accept()
            if self.closing:
                conn.close()
                return
            with conn:
                conn.settimeout(SAFETY)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                self.requests.append(data.split(b"\r\n", 1)[0])

    def close(self) -> None:
        """Stop accepting (the thread ends)."""
        self.closing = True
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as wake:
            wake.connect(self.path)  # wakes the accept()
        self.thread.join(SAFETY)
        self.listener.close()


def test_a_request_the_server_may_have_acted_on_is_not_sent_again(tmp_path: Path) -> None:
    dropper = Dropper(str(tmp_path / "d.sock"))
    transport = Transport(parse_uri(f"test+unix:///default?socket={dropper.path}"))
    try:
        # A fresh connection, read and then dropped: the server may have acted on it.
        with pytest.raises(ConnectError):
            transport.call("POST", "/v1/count")
        assert dropper.requests == [b"POST /v1/count HTTP/1.1"]
        with pytest.raises(ConnectError):
            transport.call("DELETE", "/v1/thing")
        assert dropper.requests[1:] == [b"DELETE /v1/thing HTTP/1.1"]
        # A GET is safe to repeat: once, on a fresh connection, and no more.
        del dropper.requests[:]
        with pytest.raises(ConnectError):
            transport.call("GET", "/v1/ok")
        assert dropper.requests == [b"GET /v1/ok HTTP/1.1"] * 2
    finally:
        transport.close()
        dropper.close()
