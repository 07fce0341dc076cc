"""Requests no route can mean, and the corners of HTTP, against a real virtjobd: every one is
refused in the API's error shape (JSON ``{"code", "message"}``), never carried to another
route, redirected, or answered by the HTTP server in its own words."""

from __future__ import annotations

import json
import signal
import socket
from collections.abc import Iterator

import httpx
import pytest

from tests.daemon.conftest import SAFETY, DaemonProcess, running
from virtjob.daemon.answers import loggable

Answer = tuple[int, dict[str, str], bytes]


@pytest.fixture
def api(shared_daemon: DaemonProcess) -> Iterator[httpx.Client]:
    with shared_daemon.client() as client:
        yield client


def _send(daemon: DaemonProcess, method: str, target: bytes, headers: bytes = b"") -> Answer:
    """Send one request exactly as given (httpx would normalise its path) and return the
    answer's status, headers (lower-case names) and body."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(SAFETY)
        sock.connect(daemon.socket)
        sock.sendall(
            method.encode() + b" " + target + b" HTTP/1.1\r\nhost: x\r\n" + headers
            + b"connection: close\r\n\r\n"
        )  # fmt: skip
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = dict(line.split(":", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v.strip() for k, v in fields.items()}, body


def _error(answer: Answer, status: int, code: str) -> str:
    """The message of `answer`, checked to be a JSON error of `status` and `code`."""
    got, headers, body = answer
    assert got == status, body
    assert headers["content-type"] == "application/json"
    data = json.loads(body)
    assert set(data) == {"code", "message"}
    assert data["code"] == code
    return str(data["message"])


def test_an_escaped_slash_or_a_dot_segment_never_reaches_another_route(
    api: httpx.Client, shared_daemon: DaemonProcess, host: str
) -> None:
    assert api.post(f"/v1/hosts/test/{host}/networks/default/destroy").status_code == 204
    started = api.post(f"/v1/hosts/test/{host}/networks/default/start", params={"rate": 1 << 20})
    job_id = started.json()["id"]
    try:
        for method, target in (
            ("POST", f"/v1/jobs/{job_id}%2Fcancel"),  # was: the job cancelled
            ("GET", f"/v1/jobs/{job_id}%2fwait?timeout={SAFETY}"),  # was: a long poll
            ("GET", f"/v1/jobs/{job_id}%2Fevents"),
            ("GET", f"/v1/hosts/test/{host}/domains/test%2Fxml"),  # was: the XML
            ("GET", f"/v1/hosts/test/{host}%2Fdomains"),
        ):
            message = _error(_send(shared_daemon, method, target.encode()), 400, "invalid-arg")
            assert f"malformed request path '{target.partition('?')[0]}'" in message
            assert "an escaped '/' (%2F)" in message
            assert "never contain '/'" in message
        for target in (
            "/v1/jobs/..",
            "/v1/jobs/%2e%2e/version",
            f"/v1/hosts/test/{host}/domains/./xml",
            f"/v1/hosts/test/{host}/domains/%2E",
        ):
            message = _error(_send(shared_daemon, "GET", target.encode()), 400, "invalid-arg")
            assert "a '.' or '..' segment" in message
        job = api.get(f"/v1/jobs/{job_id}").json()
        assert job["info"]["cancel_requested"] is False, "the escaped cancel did not cancel"
        # a '%' that escapes anything else, or a dot inside a segment, is routed as before
        missing = _send(shared_daemon, "GET", f"/v1/hosts/test/{host}/domains/a%2Eb".encode())
        assert "no domain 'a.b'" in _error(missing, 404, "no-domain")
    finally:
        api.post(f"/v1/jobs/{job_id}/cancel")
        api.get(f"/v1/jobs/{job_id}/wait", params={"timeout": SAFETY})


def test_a_path_is_refused_only_once_the_token_is_right() -> None:
    with running(token=True) as daemon:
        answer = _send(daemon, "GET", b"/v1/jobs/x%2Fwait")
        _error(answer, 401, "auth-failed")
        authorized = f"authorization: Bearer {daemon.token}\r\n".encode()
        _error(_send(daemon, "GET", b"/v1/jobs/x%2Fwait", authorized), 400, "invalid-arg")


def test_a_trailing_slash_is_an_unknown_path_not_a_redirect(
    shared_daemon: DaemonProcess, host: str
) -> None:
    for method, target in (
        ("GET", "/v1/version/"),
        ("GET", "/v1/jobs/"),
        ("GET", "/v1/jobs/x1/"),
        ("POST", "/v1/jobs/x1/cancel/"),
        ("DELETE", "/v1/jobs/x1/"),
        ("POST", f"/v1/hosts/test/{host}/networks/default/start/"),
    ):
        answer = _send(shared_daemon, method, target.encode())
        assert "location" not in answer[1]
        assert "see /openapi.json" in _error(answer, 404, "no-support")


def test_a_405_allows_every_method_of_the_path(shared_daemon: DaemonProcess, host: str) -> None:
    for method, target, allowed in (
        ("PUT", "/v1/jobs/x1", "GET, DELETE"),  # GET is the Gate's plain route
        ("HEAD", "/v1/jobs/x1", "GET, DELETE"),
        ("PUT", f"/v1/hosts/test/{host}/domains/test", "GET, DELETE"),  # two FastAPI routes
        ("GET", "/v1/jobs/x1/cancel", "POST"),
        ("PATCH", "/v1/jobs", "GET"),
    ):
        status, headers, _body = _send(shared_daemon, method, target.encode())
        assert status == 405, (method, target)
        assert headers["allow"] == allowed, (method, target)


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "it is nested too deeply"),
        (b'{"xml": ' + b"1" * 5000 + b"}", "it holds a number of more than 4300 digits"),
        (b'{"xml": ', "the body is not valid JSON (Expecting value)"),
    ],
    ids=["deep", "long-number", "cut"],
)
def test_a_body_that_is_not_json_says_so(
    api: httpx.Client, host: str, body: bytes, said: str
) -> None:
    answer = api.post(
        f"/v1/hosts/test/{host}/domains",
        content=body,
        headers={"content-type": "application/json"},
    )
    assert answer.status_code == 400
    assert answer.json()["code"] == "invalid-arg"
    assert answer.json()["message"].startswith("malformed request: ")
    assert said in answer.json()["message"]
    assert "error parsing the body" not in answer.json()["message"]


@pytest.mark.parametrize(
    ("request_line", "headers", "said"),
    [
        (b"GET /v1/jobs/\xc3\xa9t\xc3\xa9", b"", "Invalid char in url path"),
        (b"FOO /v1/jobs/x1", b"", "Invalid method encountered"),
        (b"GET /v1/jobs/x1", b"content-length: -1\r\n", "Content-Length"),
        (b"GET /v1/jobs/" + b"a" * 200_000, b"", "url is too long"),
        (b"GET /v1/jobs/x1", b"transfer-encoding: gzip\r\n", "Transfer-Encoding"),
        (b"GET http://x:99999/v1/version", b"", "invalid url b'http://x:99999/v1/version'"),
    ],
    ids=[
        "non-ascii-path",
        "unknown-method",
        "bad-content-length",
        "long-url",
        "bad-encoding",
        "bad-url-after-parsing",  # refused by uvicorn's callback: the parser's error says so
    ],
)
def test_a_request_the_http_parser_refuses_gets_the_error_shape(
    shared_daemon: DaemonProcess, request_line: bytes, headers: bytes, said: str
) -> None:
    method, _, target = request_line.partition(b" ")
    answer = _send(shared_daemon, method.decode(), target, headers)
    assert answer[1]["connection"] == "close"
    message = _error(answer, 400, "invalid-arg")
    assert message.startswith("malformed HTTP request (")
    assert said in message


def test_the_request_log_escapes_what_the_client_sent() -> None:
    forged = b"/v1/jobs/x%0Dvirtjobd:%20ERROR:%20FORGED%0A%00%5C%E2%80%A8"
    shown = "/v1/jobs/x\\x0dvirtjobd: ERROR: FORGED\\x0a\\x00\\\\\\u2028"
    with running(token=True, extra=["--log-level", "debug"]) as daemon:
        _error(_send(daemon, "GET", forged), 401, "auth-failed")  # refused ones are logged too
        authorized = f"authorization: Bearer {daemon.token}\r\n".encode()
        _error(_send(daemon, "GET", forged, authorized), 404, "no-job")
        assert daemon.signal(signal.SIGTERM) == 0  # every line is written once it has exited
        with open(daemon.log_path, "rb") as handle:
            log = handle.read().decode()
    lines = [line for line in log.splitlines() if "FORGED" in line]
    assert [line.split(" -> ")[1].split()[0] for line in lines] == ["401", "404"], lines
    for line in lines:
        assert line.startswith(f"virtjobd: DEBUG: virtjob.daemon.requests: GET {shown} -> ")
    assert "\x00" not in log


def test_loggable_escapes_what_could_break_or_fake_a_line() -> None:
    assert loggable("/v1/jobs/a.b-c_d") == "/v1/jobs/a.b-c_d"
    assert loggable("été \u00a0") == "été \u00a0", "printable text is kept"
    assert loggable("a\nb\rc\x00d\x1be\x7ff\x85g\u2028h\u2029") == (
        "a\\x0ab\\x0dc\\x00d\\x1be\\x7ff\\x85g\\u2028h\\u2029"
    )
    assert loggable("a\\x0ab") == "a\\\\x0ab", "a backslash sent is not an escape made"
    assert loggable("\udcff") == "\\udcff"
