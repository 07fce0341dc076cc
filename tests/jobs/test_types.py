"""JobState, JobKind, JobInfo and the error tree of `virtjob.errors`."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from virtjob.errors import (
    ErrorCode,
    InternalError,
    JobTimeoutError,
    OperationFailedError,
    VirtError,
    XMLError,
    error_from_code,
)
from virtjob.jobs import JobInfo, JobKind, JobState


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
    """A JobInfo snapshot cannot be changed after it is made (its JSON form is tested with
    the codec, tests/api/test_document.py)."""
    info = JobInfo(JobState.RUNNING, True, 1.5, 3.0, 33.0, 10, 30, False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.percent = 50.0  # type: ignore[misc]


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
