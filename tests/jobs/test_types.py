"""JobState, JobKind, JobInfo and the error tree of `virtjob.errors`."""

from __future__ import annotations

import dataclasses
import pickle
from typing import Any

import pytest

from virtjob.errors import (
    ErrorCode,
    InternalError,
    InvalidArgError,
    JobTimeoutError,
    OperationFailedError,
    VirtError,
    XMLError,
    error_from_code,
)
from virtjob.jobs import JobInfo, JobKind, JobState

GOOD: dict[str, Any] = {
    "state": "running",
    "bounded": True,
    "elapsed": 1.5,
    "remaining": 3.0,
    "percent": 33.0,
    "processed": 10,
    "total": 30,
    "cancel_requested": False,
}


def test_terminal_states_are_exactly_the_three_final_ones() -> None:
    """SUCCEEDED, FAILED and CANCELLED are terminal; QUEUED and RUNNING are not."""
    assert {s for s in JobState if s.terminal} == {
        JobState.SUCCEEDED,
        JobState.FAILED,
        JobState.CANCELLED,
    }


def test_job_kinds_cover_the_seven_variants_and_what_they_yield() -> None:
    """Create/start/restore kinds yield a domain, network create/start a network, others none."""
    assert {k.name for k in JobKind} >= {
        "DOMAIN_CREATE",
        "DOMAIN_START",
        "DOMAIN_SAVE",
        "DOMAIN_RESTORE",
        "DOMAIN_DUMP_CORE",
        "NETWORK_CREATE",
        "NETWORK_START",
    }
    assert {k for k in JobKind if k.yields_domain} == {
        JobKind.DOMAIN_CREATE,
        JobKind.DOMAIN_START,
        JobKind.DOMAIN_RESTORE,
    }
    assert {k for k in JobKind if k.yields_network} == {
        JobKind.NETWORK_CREATE,
        JobKind.NETWORK_START,
    }


def test_job_info_is_immutable() -> None:
    """A JobInfo snapshot cannot be changed after it is made."""
    info = JobInfo.from_dict(GOOD)
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.percent = 50.0  # type: ignore[misc]


@pytest.mark.parametrize(
    "info",
    [
        JobInfo(JobState.RUNNING, True, 1.5, 3.0, 33.0, 10, 30, False),
        JobInfo(JobState.QUEUED, False, 0.0, None, None, None, None, False),
        JobInfo(JobState.CANCELLED, False, 2.0, 0.0, None, None, None, True),
    ],
)
def test_job_info_round_trips_through_a_dict(info: JobInfo) -> None:
    """from_dict(to_dict(info)) gives back an equal snapshot."""
    assert JobInfo.from_dict(info.to_dict()) == info


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
        _with(remaining="a while"),
        _with(percent=[50]),
        _with(processed="many"),
        _with(total=1.5j),
        {},
    ],
)
def test_job_info_from_malformed_dict_raises_invalid_arg(data: dict[str, Any]) -> None:
    """A missing key, an unknown state or a non-numeric number is an InvalidArgError."""
    with pytest.raises(InvalidArgError, match="malformed job info"):
        JobInfo.from_dict(data)


@pytest.mark.parametrize("data", [None, "running", [1, 2, 3], 42])
def test_job_info_from_non_mapping_raises_invalid_arg(data: Any) -> None:
    """Something that is not a mapping at all is an InvalidArgError, not a TypeError."""
    with pytest.raises(InvalidArgError):
        JobInfo.from_dict(data)


@pytest.mark.parametrize("code", list(ErrorCode))
def test_error_from_code_builds_the_class_carrying_that_code(code: ErrorCode) -> None:
    """Every ErrorCode maps back to a VirtError subclass with that code and the message."""
    error = error_from_code(code.value, "domain 'x' is on fire; put it out")
    assert isinstance(error, VirtError)
    assert error.code is code
    assert error.message == "domain 'x' is on fire; put it out"
    assert str(error) == error.message
    assert type(error)(error.message).code is code  # each class is built from a message alone


def test_every_error_code_has_its_own_class() -> None:
    """No two codes share a class, so a code identifies the error exactly."""
    classes = {type(error_from_code(code.value, "m")) for code in ErrorCode}
    assert len(classes) == len(ErrorCode)


def test_error_from_unknown_code_is_internal_error_keeping_the_code() -> None:
    """An unknown code gives an InternalError whose message keeps the code and the text."""
    error = error_from_code("flux-capacitor", "it broke")
    assert type(error) is InternalError
    assert error.code is ErrorCode.INTERNAL_ERROR
    assert "flux-capacitor" in error.message
    assert "it broke" in error.message


def test_job_timeout_error_is_both_virt_error_and_timeout_error() -> None:
    """JobTimeoutError can be caught as VirtError or as the builtin TimeoutError."""
    error = JobTimeoutError("job 1 still running")
    assert isinstance(error, VirtError)
    assert isinstance(error, TimeoutError)
    assert error.code is ErrorCode.OPERATION_TIMEOUT


def test_xml_error_keeps_line_and_column_through_pickle() -> None:
    """XMLError carries its position, also across a process boundary."""
    error = XMLError("unclosed tag <domain>", line=3, column=7)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.message, copy.line, copy.column) == ("unclosed tag <domain>", 3, 7)
    assert XMLError("no position").line is None


def test_virt_error_repr_names_the_class() -> None:
    """repr() shows the class and the message, for logs."""
    assert repr(OperationFailedError("disk full")) == "OperationFailedError('disk full')"
