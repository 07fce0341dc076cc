"""Property-based checks of the whole API against its own OpenAPI schema (schemathesis).

A real daemon on a loopback port (schemathesis speaks TCP), with a bounded number of examples
per operation: no request, however malformed, may make the daemon answer with a 5xx, and every
answer's body must conform to the schema the document gives for its status (the answers are
made by `virtjob.api`'s codecs, the schema by `virtjob.daemon.models`: this keeps them one).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance

from tests.daemon.conftest import DaemonProcess, running

MAX_EXAMPLES = 50


@pytest.fixture(scope="module")
def schema_daemon() -> Iterator[DaemonProcess]:
    with running(tcp=True, extra=["--max-hosts", "10000"]) as daemon:
        yield daemon


@pytest.fixture(scope="module")
def auth(schema_daemon: DaemonProcess) -> dict[str, str]:
    return {"authorization": f"Bearer {schema_daemon.token}"}


def test_no_server_errors(schema_daemon: DaemonProcess, auth: dict[str, str]) -> None:
    """Every operation, MAX_EXAMPLES generated requests each: never a 5xx answer."""
    api = schemathesis.openapi.from_url(f"{schema_daemon.url}/openapi.json", headers=auth)
    failures: list[str] = []
    operations = 0
    for result in api.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def check(case: schemathesis.Case) -> None:  # type: ignore[type-arg]
            case.call_and_validate(
                headers=auth,
                checks=[not_a_server_error, response_schema_conformance],
                timeout=30,
            )

        try:
            check()
        except Exception as exc:
            failures.append(f"{operation.label}: {exc}")
    assert operations > 20
    assert failures == []
