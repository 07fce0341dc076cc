"""docs/api.md, the wire contract written out, cannot drift from `virtjob.api`: its route table
is the route table, its job keys are the document's keys, its status table the statuses."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from virtjob.api import JobDocument
from virtjob.api.errors import HTTP_STATUS
from virtjob.api.routes import API_PREFIX, DAEMON_ROUTES, HOST_ROUTES, JOB_ROUTES, host_base
from virtjob.daemon.models import ERRORS
from virtjob.daemon.routes.table import HOST_PREFIX
from virtjob.jobs import JobInfo

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
ROW = re.compile(r"^\| `(\w+)` \| `([A-Z]+) (/\S*)` \|", re.MULTILINE)


def _text() -> str:
    return DOC.read_text(encoding="utf-8")


def test_the_route_table_matches_the_contract() -> None:
    rows = {name: (method, path) for name, method, path in ROW.findall(_text())}
    expected = {}
    for name, route in DAEMON_ROUTES.items():
        prefix = API_PREFIX + (HOST_PREFIX if name == "close_host" else "")
        expected[name] = (route.method, prefix + route.path)
    for name, route in JOB_ROUTES.items():
        expected[name] = (route.method, API_PREFIX + route.path)
    for name, route in HOST_ROUTES.items():
        expected[name] = (route.method, API_PREFIX + HOST_PREFIX + route.path)
    assert rows == expected


def test_the_host_prefix_matches_the_contract() -> None:
    filled = API_PREFIX + HOST_PREFIX.format(driver="test", instance="default")
    assert filled == host_base("test", "default")


def test_every_key_of_the_job_document_is_described() -> None:
    text = _text()
    keys = [field.name for field in dataclasses.fields(JobDocument)]
    keys += [f"info.{field.name}" for field in dataclasses.fields(JobInfo)]
    missing = [key for key in keys if f"| `{key}` |" not in text]
    assert missing == []


def test_every_error_code_is_in_the_status_table_at_its_status() -> None:
    text = _text()
    for code, status in HTTP_STATUS.items():
        row = re.search(rf"^\| {status} \|.*$", text, re.MULTILINE)
        assert row is not None, status
        assert f"`{code.value}`" in row.group(0), (code, status)


def test_the_status_table_lists_what_every_route_documents() -> None:
    table = {int(status) for status in re.findall(r"^\| (\d{3}) \|", _text(), re.MULTILINE)}
    assert table == set(ERRORS)
