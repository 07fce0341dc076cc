"""The pure pieces: exit codes, formatting, the JSON shape of a job, the progress line."""

from __future__ import annotations

import pytest

from virtjob.api import SCHEMA_VERSION, encode_job
from virtjob.cli.output import (
    ExitCode,
    exit_code_for,
    format_bytes,
    format_duration,
    format_percent,
    job_json,
    xml_error_message,
)
from virtjob.cli.progress import RateMeter, progress_line
from virtjob.errors import (
    AuthError,
    ConnectError,
    InvalidArgError,
    JobCancelledError,
    JobTimeoutError,
    NoDomainError,
    NoJobError,
    NoNetworkError,
    OperationFailedError,
    OperationInvalidError,
    VirtError,
    XMLError,
)
from virtjob.jobs import JobContext, JobInfo, JobKind, JobState, LocalJobDriver


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (NoDomainError("x"), ExitCode.NOT_FOUND),
        (NoNetworkError("x"), ExitCode.NOT_FOUND),
        (NoJobError("x"), ExitCode.NOT_FOUND),
        (JobCancelledError("x"), ExitCode.CANCELLED),
        (JobTimeoutError("x"), ExitCode.TIMEOUT),
        (ConnectError("x"), ExitCode.CONNECT),
        (AuthError("x"), ExitCode.CONNECT),
        (OperationFailedError("x"), ExitCode.FAILED),
        (OperationInvalidError("x"), ExitCode.FAILED),
        (InvalidArgError("x"), ExitCode.FAILED),
        (XMLError("x"), ExitCode.FAILED),
    ],
)
def test_exit_codes(error: VirtError, code: ExitCode) -> None:
    assert exit_code_for(error) is code


def test_formatting() -> None:
    assert format_bytes(0) == "0 B"
    assert format_bytes(1023) == "1023 B"
    assert format_bytes(512 << 20) == "512.0 MiB"
    assert format_bytes(3 << 40) == "3.0 TiB"
    assert format_duration(None) == "-:--"
    assert format_duration(1.4) == "0:01"
    assert format_duration(61) == "1:01"
    assert format_duration(3725) == "1:02:05"
    assert format_percent(None) == "?%"
    assert format_percent(47.5) == "47.5%"


def test_xml_error_location() -> None:
    located = XMLError("line 3, column 1: malformed XML: expected '>'", 3, 1)
    assert xml_error_message("a.xml", located) == "a.xml:3:1: malformed XML: expected '>'"
    assert xml_error_message("a.xml", XMLError("no name")) == "a.xml: no name"


def _info(state: JobState, elapsed: float, processed: int | None) -> JobInfo:
    return JobInfo(state, True, elapsed, 1.0, 50.0, processed, 100, False)


def test_rate_meter_uses_recent_samples_then_the_whole_run() -> None:
    meter = RateMeter()
    assert meter.rate(_info(JobState.RUNNING, 0.0, 0)) is None
    for second in range(10):
        meter.add(_info(JobState.RUNNING, float(second), second * second))
    rate = meter.rate(_info(JobState.RUNNING, 9.0, 81))
    assert rate is not None
    assert 14 <= rate <= 16
    assert meter.rate(_info(JobState.SUCCEEDED, 10.0, 100)) == 10.0


def test_job_json_and_progress_line_for_each_end() -> None:
    driver = LocalJobDriver(max_jobs=2)
    try:

        def ok(ctx: JobContext) -> None:
            ctx.initialize(eta=1.0)
            ctx.update(percent=100.0, processed=4096, total=4096)

        def bad(ctx: JobContext) -> None:
            raise OperationFailedError("disk full on /var")

        done = driver.start_job(JobKind.DOMAIN_DUMP_CORE, "web", ok)
        failed = driver.start_job(JobKind.DOMAIN_SAVE, "web", bad)
        done.wait(10)
        doc = job_json(done)
        assert doc == encode_job(done.document())  # the daemon's shape, not one of its own
        # the keys docs/cli.md shows (more may be added, never taken away)
        assert set(doc) >= {
            "schema",
            "id",
            "host",
            "kind",
            "subject",
            "info",
            "result",
            "error",
            "target",
            "created",
            "started",
            "ended",
        }
        assert set(doc["info"]) >= {
            "state",
            "bounded",
            "percent",
            "elapsed",
            "remaining",
            "processed",
            "total",
            "cancel_requested",
        }
        assert doc["schema"] == SCHEMA_VERSION == 2
        assert doc["info"]["state"] == "succeeded"
        assert doc["result"] is None
        assert doc["error"] is None
        assert doc["created"] <= doc["started"] <= doc["ended"]
        failed.wait(10)
        failure = job_json(failed)
        assert failure["info"]["state"] == "failed"
        assert failure["error"] == {"code": "operation-failed", "message": "disk full on /var"}
        line = progress_line(done, done.info(), 2048.0)
        assert line.startswith(f"job {done.id} domain-dump-core web: succeeded 100.0% 4.0 KiB")
        assert "2.0 KiB/s" in line
        assert "ETA" not in line
    finally:
        driver.close()
