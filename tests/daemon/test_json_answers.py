"""What virtjobd sends is valid JSON: a number JSON cannot carry (NaN, infinity) is refused,
never written as ``NaN``. The engine and the codec refuse such numbers already, so a daemon
cannot be made to meet one; these tests hand one to the serialisers directly."""

from __future__ import annotations

import dataclasses
import json

import pytest

from tests.daemon.conftest import SAFETY
from virtjob.api import JobDocument, encode_job
from virtjob.daemon.answers import dumps, job_json, jobs_json
from virtjob.errors import InternalError
from virtjob.jobs import JobKind, LocalJobDriver


def _document() -> JobDocument:
    engine = LocalJobDriver(max_jobs=1, host="test:///json")
    try:
        job = engine.start_job(JobKind.DOMAIN_SAVE, "d", lambda ctx: None)
        job.wait(SAFETY)
        return job.document()
    finally:
        engine.close(timeout=SAFETY)


def test_a_job_document_json_cannot_carry_is_an_internal_error_naming_the_job() -> None:
    good = _document()
    bad = dataclasses.replace(good, created=float("nan"))
    with pytest.raises(InternalError) as caught:
        job_json(bad)
    assert f"job {good.id} (domain-save of 'd') cannot be sent" in caught.value.message
    assert "this is a bug" in caught.value.message
    assert isinstance(caught.value.__cause__, ValueError), "the cause is kept"
    with pytest.raises(InternalError, match=good.id):
        jobs_json([good, bad])
    assert json.loads(job_json(good)) == encode_job(good)
    assert json.loads(jobs_json([good, good])) == [encode_job(good)] * 2
    assert jobs_json([]) == b"[]"


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
def test_dumps_refuses_what_json_cannot_carry(number: float) -> None:
    with pytest.raises(ValueError, match="not JSON compliant"):
        dumps({"elapsed": number})
