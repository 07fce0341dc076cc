"""The job document and its codec (`virtjob.api.document`, `virtjob.api.codec`): what every
job looks like on the wire, in virtjobd's store and in ``virtjob --json``."""

from __future__ import annotations

import json
import math
import threading
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from virtjob.api import (
    SCHEMA_VERSION,
    JobDocument,
    decode_info,
    decode_job,
    encode_info,
    encode_job,
)
from virtjob.api.document import decode_stored_job
from virtjob.drivers.base import DomainRef, NetworkRef
from virtjob.errors import InternalError, OperationFailedError, XMLError
from virtjob.jobs import JobContext, JobInfo, JobKind, JobOutcome, JobState, LocalJobDriver
from virtjob.jobs.job import Job
from virtjob.jobs.local import hold_new_jobs

RUNNING = JobInfo(JobState.RUNNING, True, 1.5, 3.0, 33.0, 10, 30, False)
GOOD: dict[str, Any] = encode_info(RUNNING)


def _document(**changes: Any) -> JobDocument:
    values: dict[str, Any] = {
        "id": "0709b89a8e31",
        "host": "test:///default",
        "kind": JobKind.DOMAIN_SAVE,
        "subject": "test",
        "info": RUNNING,
        "target": "/srv/vm/test.save",
        "created": 1796110800.0,
        "started": 1796110800.5,
    }
    return JobDocument(**{**values, **changes})


@pytest.mark.parametrize(
    "info",
    [
        RUNNING,
        JobInfo(JobState.QUEUED, False, 0.0, None, None, None, None, False),
        JobInfo(JobState.CANCELLED, False, 2.0, 0.0, None, None, None, True),
    ],
)
def test_job_info_round_trips_through_json(info: JobInfo) -> None:
    assert decode_info(json.loads(json.dumps(encode_info(info)))) == info


finite = st.floats(min_value=0, max_value=1e12, allow_nan=False, allow_infinity=False)


@given(
    state=st.sampled_from(JobState),
    bounded=st.booleans(),
    elapsed=finite,
    remaining=st.none() | finite,
    percent=st.none() | st.floats(min_value=0, max_value=100),
    processed=st.none() | st.integers(min_value=0, max_value=1 << 62),
    cancel=st.booleans(),
)
def test_every_job_info_round_trips(
    state: JobState,
    bounded: bool,
    elapsed: float,
    remaining: float | None,
    percent: float | None,
    processed: int | None,
    cancel: bool,
) -> None:
    info = JobInfo(state, bounded, elapsed, remaining, percent, processed, processed, cancel)
    assert decode_info(json.loads(json.dumps(encode_info(info)))) == info


def _with(**changes: Any) -> dict[str, Any]:
    return {**GOOD, **changes}


def _without(key: str) -> dict[str, Any]:
    return {k: v for k, v in GOOD.items() if k != key}


@pytest.mark.parametrize(
    "data",
    [
        _without("state"),
        _without("elapsed"),
        _without("cancel_requested"),
        _with(state="paused"),
        _with(state=None),
        _with(elapsed="soon"),
        _with(elapsed=None),
        _with(elapsed=math.nan),
        _with(remaining=math.inf),
        _with(remaining="a while"),
        _with(percent=[50]),
        _with(percent=True),
        _with(processed="many"),
        _with(processed=1.5),
        _with(bounded=1),
        {},
        None,
        "running",
        [1, 2, 3],
    ],
)
def test_a_malformed_job_info_is_an_internal_error_naming_the_field(data: Any) -> None:
    with pytest.raises(InternalError, match="malformed job info"):
        decode_info(data)


def test_a_job_document_round_trips_with_its_result() -> None:
    ref = DomainRef("test", uuid.uuid4())
    done = JobInfo(JobState.SUCCEEDED, True, 2.0, 0.0, 100.0, 30, 30, False)
    document = _document(kind=JobKind.DOMAIN_RESTORE, info=done, result=ref, ended=1.0)
    data = json.loads(json.dumps(encode_job(document)))
    assert data["result"] == {"type": "domain", "name": "test", "uuid": str(ref.uuid)}
    assert data["schema"] == SCHEMA_VERSION
    again = decode_job(data)
    assert again == document
    assert again.outcome == JobOutcome(JobState.SUCCEEDED, ref, None)


def test_a_failed_job_document_keeps_its_error_class_and_position() -> None:
    failed = JobInfo(JobState.FAILED, False, 0.1, 0.0, None, None, None, False)
    document = _document(info=failed, error=XMLError("bad <domain>", 3, 7))
    again = decode_job(json.loads(json.dumps(encode_job(document))))
    assert isinstance(again.error, XMLError)
    assert (again.error.message, again.error.line, again.error.column) == ("bad <domain>", 3, 7)
    outcome = again.outcome
    assert outcome is not None
    assert outcome.error is again.error


def test_a_network_result_is_a_network_ref() -> None:
    ref = NetworkRef("lab", uuid.uuid4())
    done = JobInfo(JobState.SUCCEEDED, False, 1.0, 0.0, 100.0, None, None, False)
    document = _document(kind=JobKind.NETWORK_CREATE, subject="lab", info=done, result=ref)
    assert decode_job(encode_job(document)).result == ref


def test_keys_a_newer_peer_adds_are_ignored_and_missing_ones_take_their_default() -> None:
    data = encode_job(_document())
    data["priority"] = 7
    data["info"]["phase"] = "finishing"
    del data["target"], data["ended"]
    again = decode_job(data)
    assert again.target is None
    assert again.ended is None
    assert again.info == RUNNING


def test_a_document_without_schema_is_virtjob_0_1s_schema_1() -> None:
    data = encode_job(_document())
    del data["schema"]
    assert decode_job(data).schema == 1
    assert decode_stored_job(data).schema == 1
    assert decode_job(encode_job(_document())).schema == SCHEMA_VERSION == 2


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("id", None),
        ("kind", "domain-migrate"),
        ("info", "running"),
        ("result", {"type": "volume", "name": "x", "uuid": str(uuid.uuid4())}),
        ("result", {"type": "domain", "name": "x", "uuid": "not-a-uuid"}),
        ("error", "it broke"),
        ("created", "yesterday"),
        ("started", math.inf),
        ("schema", "2"),
    ],
)
def test_a_malformed_job_document_is_an_internal_error(key: str, value: Any) -> None:
    data = encode_job(_document())
    data[key] = value
    with pytest.raises(InternalError, match=f"malformed job .*{key}"):
        decode_job(data)
    with pytest.raises(InternalError, match="stored job is damaged"):
        decode_stored_job(data)


def test_an_unknown_error_code_still_decodes_keeping_the_code() -> None:
    failed = JobInfo(JobState.FAILED, False, 0.1, 0.0, None, None, None, False)
    data = encode_job(_document(info=failed, error=OperationFailedError("disk full")))
    data["error"]["code"] = "quota-exceeded"
    error = decode_job(data).error
    assert isinstance(error, InternalError)
    assert "quota-exceeded" in error.message


def test_a_number_past_the_float_range_is_malformed_not_an_overflow() -> None:
    with pytest.raises(InternalError, match=r"malformed job info.*elapsed"):
        decode_info(_with(elapsed=10**400))


def test_a_failed_job_without_a_recorded_error_raises_internal_error_from_result() -> None:
    class NoErrorDriver(LocalJobDriver):
        """Reports the failed outcome a v1 store row without an error code migrates to."""

        def job_outcome(self, job_id: str) -> JobOutcome | None:
            return JobOutcome(JobState.FAILED, None, None)

    driver = NoErrorDriver()
    try:
        job: Job[object] = driver.start_job(JobKind.DOMAIN_SAVE, "vm", lambda ctx: None)
        with pytest.raises(InternalError, match="no error was recorded"):
            job.result(timeout=10)
    finally:
        driver.close()


def test_a_document_says_when_its_job_last_progressed() -> None:
    """`progressed`: the wall-clock time its percent last advanced, None before it reports
    any; carried by the codec like every other field."""
    driver = LocalJobDriver()
    gate = threading.Event()

    def worker(ctx: JobContext) -> None:
        ctx.initialize()
        ctx.update(percent=40.0)
        gate.wait(30)

    try:
        with hold_new_jobs():
            job: Job[object] = driver.start_job(JobKind.DOMAIN_SAVE, "vm", worker)
            assert job.document().progressed is None  # queued: no progress yet
        info = next(i for i in job.watch(0.0) if i.percent == 40.0)
        document = job.document()
        assert document.started is not None
        assert document.progressed is not None
        assert document.started <= document.progressed <= document.started + info.elapsed
        again = decode_job(json.loads(json.dumps(encode_job(document))))
        assert again.progressed == document.progressed
    finally:
        gate.set()
        driver.close()
