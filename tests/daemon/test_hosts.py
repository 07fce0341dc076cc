"""`virtjob.daemon.hosts`: errors read through a stand-in host name the host asked for."""

from __future__ import annotations

import traceback

import pytest

from virtjob.daemon.hosts import PROTOTYPE, restate
from virtjob.errors import NoDomainError

STAND_IN = f"test:///{PROTOTYPE}"


def _failure() -> NoDomainError:
    """A NoDomainError raised (with a traceback) from an OSError, as a driver would."""
    try:
        try:
            raise OSError(5, "Input/output error")
        except OSError as exc:
            raise NoDomainError(f"no domain 'x' on {STAND_IN}") from exc
    except NoDomainError as exc:
        return exc


def test_restate_names_the_host_and_keeps_the_traceback_and_the_cause() -> None:
    """restate used to copy the error with copy.copy, which keeps neither its traceback nor
    its cause: the daemon's log lost where and why the error arose."""
    original = _failure()
    changed = restate(original, STAND_IN, "test:///h1")
    assert type(changed) is NoDomainError
    assert changed.message == str(changed) == "no domain 'x' on test:///h1"
    assert changed.args == ("no domain 'x' on test:///h1",)
    assert changed.__traceback__ is original.__traceback__
    assert isinstance(changed.__cause__, OSError)
    told = "".join(traceback.format_exception(changed))
    assert "_failure" in told
    assert "Input/output error" in told
    assert original.message == f"no domain 'x' on {STAND_IN}", "the original is unchanged"


@pytest.mark.parametrize(("stand_in", "message"), [(None, STAND_IN), (STAND_IN, "other")])
def test_restate_returns_an_error_that_does_not_name_the_stand_in_as_it_is(
    stand_in: str | None, message: str
) -> None:
    error = NoDomainError(message)
    assert restate(error, stand_in, "test:///h1") is error
