"""What virtjobd answers is what its ``/openapi.json`` publishes, route by route.

The routes return JSON made by `virtjob.api`'s codecs, not by the documenting pydantic models
(`virtjob.daemon.models`): these tests are what keeps the two the same. A tour of a real
daemon calls every route of the published document at least once (successes, then errors) and
checks each answer's status is documented for its route and its body validates against the
schema documented for that status. They also check that every operation of the contract
(`virtjob.api.routes`) has its route, at the table's method and path, and that errors have
one shape whichever layer answers them.
"""

from __future__ import annotations

import json
import os
import re
import signal
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema_rs
import pytest

from tests.daemon.conftest import FAST_RATE, SAFETY, DaemonProcess, new_host, running
from virtjob.api.errors import HTTP_STATUS
from virtjob.api.routes import API_PREFIX, DAEMON_ROUTES, HOST_ROUTES, JOB_ROUTES
from virtjob.daemon.routes.table import HOST_PREFIX, served
from virtjob.errors import VirtError

DOMAIN = (
    "<domain type='test'><name>{name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
    "<os><type>hvm</type></os></domain>"
)
NETWORK = "<network><name>{name}</name><bridge name='{bridge}'/></network>"


class Checker:
    """Calls routes of a daemon and checks each answer against its OpenAPI document."""

    def __init__(self, client: httpx.Client, openapi: dict[str, Any]) -> None:
        self.client = client
        self.openapi = openapi
        self.called: set[tuple[str, str]] = set()
        self.templates = [
            (re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$"), path)
            for path in openapi["paths"]
        ]

    def template(self, path: str) -> str:
        """The documented path template `path` is an instance of (the most literal one)."""
        matches = [template for pattern, template in self.templates if pattern.match(path)]
        assert matches, f"{path} matches no documented path"
        return str(min(matches, key=lambda template: template.count("{")))

    def call(self, method: str, path: str, status: int, body: Any = None, **params: Any) -> Any:
        """Send the request, check the answer has `status` and conforms; return its JSON."""
        url = path.split("?", maxsplit=1)[0]
        template = self.template(url)
        operation = self.openapi["paths"][template].get(method.lower())
        assert operation is not None, f"{method} {template} is not documented"
        response = self.client.request(method, path, json=body, params=params or None)
        assert response.status_code == status, (method, path, response.text)
        self.called.add((method, template))
        documented = operation["responses"].get(str(status))
        assert documented is not None, f"{method} {template}: status {status} is undocumented"
        content = documented.get("content", {})
        if status == 204:
            assert response.content == b""
            return None
        if "text/event-stream" in content:
            assert response.headers["content-type"].startswith("text/event-stream")
            item = content["text/event-stream"]["itemSchema"]["properties"]["data"]
            assert item["contentMediaType"] == "application/json"
            events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
            assert events, f"{method} {path}: no event"
            for event in events:
                self.conforms(item["contentSchema"], json.loads(event), f"{method} {path} event")
            return response.text
        assert response.headers["content-type"] == "application/json"
        data = response.json()
        self.conforms(content["application/json"]["schema"], data, f"{method} {path} -> {status}")
        if status == 202:
            assert data["info"]["state"] == "queued", "built before the job could start"
        return data

    def conforms(self, schema: dict[str, Any], data: Any, what: str) -> None:
        """Assert `data` validates against `schema` (a part of the published document)."""
        root = {**schema, "components": self.openapi["components"]}
        errors = [
            str(error) for error in jsonschema_rs.Draft202012Validator(root).iter_errors(data)
        ]
        assert errors == [], f"{what}: {errors}\n{json.dumps(data)[:500]}"


@pytest.fixture
def checker(shared_daemon: DaemonProcess) -> Iterator[Checker]:
    with shared_daemon.client() as client:
        openapi = client.get("/openapi.json").json()
        yield Checker(client, openapi)


def _wait(check: Checker, job: dict[str, Any]) -> dict[str, Any]:
    final: dict[str, Any] = check.call("GET", f"/v1/jobs/{job['id']}/wait", 200, timeout=SAFETY)
    assert final["info"]["state"] == "succeeded", final
    return final


def test_every_answer_of_every_route_conforms_to_the_published_schema(
    checker: Checker, shared_daemon: DaemonProcess
) -> None:
    check = checker
    host = new_host()
    base = f"/v1/hosts/test/{host}"
    rate = {"rate": FAST_RATE}
    check.call("GET", "/v1/version", 200)
    check.call("GET", base, 200)
    check.call("GET", f"{base}/domains", 200)
    check.call("GET", f"{base}/networks", 200)

    # domains: define, read, a job of each kind, the actions, undefine
    check.call("POST", f"{base}/domains", 201, {"xml": DOMAIN.format(name="d1")})
    check.call("GET", f"{base}/domains/d1", 200)
    check.call("GET", f"{base}/domains/d1/xml", 200)
    started = check.call("POST", f"{base}/domains/d1/start", 202, **rate)
    started = _wait(check, started)
    assert started["result"]["name"] == "d1"
    check.call("POST", f"{base}/domains/d1/suspend", 204)
    check.call("POST", f"{base}/domains/d1/resume", 204)
    check.call("POST", f"{base}/domains/d1/destroy", 204)
    _wait(check, check.call("POST", f"{base}/domains/d1/start", 202, **rate))
    check.call("POST", f"{base}/domains/d1/shutdown", 204, {"force_after": None})
    check.call("DELETE", f"{base}/domains/d1", 204)
    created = check.call(
        "POST", f"{base}/domains/create", 202, {"xml": DOMAIN.format(name="d2")}, **rate
    )
    _wait(check, created)
    target = os.path.join(shared_daemon.files, f"{host}.save")
    _wait(check, check.call("POST", f"{base}/domains/test/save", 202, {"path": target}, **rate))
    restored = _wait(check, check.call("POST", f"{base}/domains/restore", 202, {"path": target}))
    assert restored["result"]["name"] == "test"
    core = os.path.join(shared_daemon.files, f"{host}.core")
    dumped = _wait(check, check.call("POST", f"{base}/domains/test/dump-core", 202, {"path": core}))
    assert dumped["target"] == core

    # networks
    check.call("POST", f"{base}/networks", 201, {"xml": NETWORK.format(name="n1", bridge="vjn1")})
    check.call("GET", f"{base}/networks/n1", 200)
    check.call("GET", f"{base}/networks/n1/xml", 200)
    _wait(check, check.call("POST", f"{base}/networks/n1/start", 202, **rate))
    check.call("POST", f"{base}/networks/n1/destroy", 204)
    check.call("DELETE", f"{base}/networks/n1", 204)
    net = check.call(
        "POST",
        f"{base}/networks/create",
        202,
        {"xml": NETWORK.format(name="n2", bridge="vjn2")},
        **rate,
    )
    _wait(check, net)

    # jobs: the hot read, every job, a host's jobs, cancel, events, destroy
    job_id = dumped["id"]
    assert check.call("GET", f"/v1/jobs/{job_id}", 200) == dumped
    assert job_id in [job["id"] for job in check.call("GET", "/v1/jobs", 200)]
    assert job_id in [job["id"] for job in check.call("GET", f"{base}/jobs", 200)]
    assert check.call("POST", f"/v1/jobs/{job_id}/cancel", 200) == dumped, "a no-op once final"
    events = check.call("GET", f"/v1/jobs/{job_id}/events", 200)
    assert '"state":"succeeded"' in events
    check.call("DELETE", f"/v1/jobs/{job_id}", 204)
    check.call("DELETE", f"/v1/hosts/test/{new_host()}", 204)  # not open: nothing to close

    # errors, from the Gate's neighbours: the plain route, FastAPI's routes and validation
    check.call("GET", f"/v1/jobs/{job_id}", 404)
    check.call("GET", f"/v1/jobs/{job_id}/wait", 404)
    check.call("GET", f"{base}/domains/nosuch", 404)
    check.call("POST", f"{base}/domains", 400, {"xml": "<domain>"})
    check.call("POST", f"{base}/domains/test/save", 403, {"path": str(shared_daemon.base)})
    check.call("DELETE", f"/v1/hosts/test/{host}", 409)  # it holds objects now

    documented = {
        (method.upper(), path)
        for path, operations in check.openapi["paths"].items()
        for method in operations
    }
    assert documented - check.called == set(), "routes the tour did not call"


def test_every_contract_operation_is_served_at_its_table_route(checker: Checker) -> None:
    operations = served(checker.openapi)
    for name, route in HOST_ROUTES.items():
        assert operations.get(name) == (route.method, HOST_PREFIX + route.path), name
    for name, route in JOB_ROUTES.items():
        assert operations.get(name) == (route.method, route.path), name
    for name, route in DAEMON_ROUTES.items():
        prefix = HOST_PREFIX if name == "close_host" else ""
        assert operations.get(name) == (route.method, prefix + route.path), name
    assert operations.get("lookup_job") == operations["job_document"]


def test_each_route_documents_the_answer_its_table_row_names(checker: Checker) -> None:
    table = {**HOST_ROUTES, **JOB_ROUTES, **DAEMON_ROUTES}
    media = {"nothing": set(), "events": {"text/event-stream"}}
    for name, (method, path) in served(checker.openapi).items():
        if name not in table:
            continue  # lookup_job: served by job_document's route
        operation = checker.openapi["paths"][API_PREFIX + path][method.lower()]
        [success] = [answer for status, answer in operation["responses"].items() if status < "4"]
        documented = set(success.get("content", {}))
        assert documented == media.get(table[name].answer, {"application/json"}), name


def _subclasses(cls: type) -> Iterator[type]:
    sub: type
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def test_every_status_an_error_can_have_is_documented_for_every_route(checker: Checker) -> None:
    statuses = set(HTTP_STATUS.values()) | {405}  # NoRouteError's is given per error
    statuses |= {
        status
        for cls in _subclasses(VirtError)
        if isinstance(status := getattr(cls, "http_status", None), int)
    }
    assert {404, 405, 413, 503} <= statuses, "the daemon's own error classes are seen"
    for path, operations in checker.openapi["paths"].items():
        for method, operation in operations.items():
            documented = {int(status) for status in operation["responses"] if status >= "4"}
            assert statuses - documented == set(), (method, path)


def _error(response: httpx.Response) -> tuple[int, str, dict[str, Any]]:
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["content-length"]) == len(response.content)
    body: dict[str, Any] = response.json()
    return response.status_code, response.headers["content-type"], body


def test_errors_have_one_shape_whichever_layer_answers() -> None:
    with running(token=True) as daemon, daemon.client() as api:
        answers = {
            "plain route": api.get("/v1/jobs/nosuch"),
            "FastAPI route": api.get("/v1/jobs/nosuch/wait"),
            "dependency": api.get("/v1/hosts/test/default/domains/nosuch"),
            "validation": api.get("/v1/jobs/nosuch/wait", params={"timeout": "x"}),
            "no such path": api.get("/v1/nowhere"),
        }
        with daemon.client(token="not-the-token") as stranger:
            answers["gate"] = stranger.get("/v1/jobs/nosuch")
    shapes = {}
    for layer, response in answers.items():
        status, content_type, body = _error(response)
        assert set(body) == {"code", "message"}, (layer, body)
        assert body["message"], layer
        shapes[layer] = (status, content_type, body["code"])
    assert shapes["plain route"] == shapes["FastAPI route"] == (404, "application/json", "no-job")
    assert shapes["dependency"][::2] == (404, "no-domain")
    assert shapes["validation"][::2] == (400, "invalid-arg")
    assert shapes["no such path"][::2] == (404, "no-support")
    assert shapes["gate"][::2] == (401, "auth-failed")
    assert answers["gate"].headers["www-authenticate"] == 'Bearer realm="virtjobd"'
    assert answers["plain route"].json()["message"] == answers["FastAPI route"].json()["message"]


def test_debug_logging_tells_each_request_and_job_transition() -> None:
    with running(extra=["--log-level", "debug"]) as daemon:
        host = new_host()
        with daemon.client() as api:
            started = api.post(f"/v1/hosts/test/{host}/networks/default/destroy")
            assert started.status_code == 204
            job = api.post(f"/v1/hosts/test/{host}/networks/default/start").json()
            api.get(f"/v1/jobs/{job['id']}/wait", params={"timeout": SAFETY})
            assert api.get("/v1/jobs/nosuch").status_code == 404
        assert daemon.signal(signal.SIGTERM) == 0  # every line is written once it has exited
        log = daemon.log()
    assert re.search(rf"GET /v1/jobs/{job['id']}/wait\?timeout=\S+ -> 200 in \d+\.\d+ ms", log)
    assert re.search(r"GET /v1/jobs/nosuch -> 404 in \d+\.\d+ ms", log)
    assert f"job {job['id']} (network-start of 'default' on test:///{host}): tracked" in log
    assert f"job {job['id']}: held (nobody has been handed its end yet)" in log
    assert f"job {job['id']}: ended succeeded, recorded" in log
    assert f"job {job['id']}: let go (its end was seen, nobody waits)" in log
