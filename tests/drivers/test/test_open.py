"""`virtjob.open` with test-driver URIs: which hosts it reaches and what it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

import virtjob
from virtjob.drivers.test import DEFAULT_RATE, MAX_RATE


@pytest.mark.parametrize(
    ("uri", "words"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("default", "malformed"),
        ("test:/default", "malformed"),
        ("test+ftp:///default", "unknown transport"),
        ("test://example.com/default", "without a network transport"),
        ("test:///", "no path"),
        ("test://", "no path"),
        ("test:///default#frag", "fragment"),
        ("test:///default?rate=1&rate=2", "repeats parameter 'rate'"),
        ("test:///default?rate", "rate"),
        ("test:///default?foo=1", "unknown parameter 'foo'"),
        ("test:///default?rate=1&socket=/tmp/s", "unknown parameter 'socket'"),
        ("test:///default?rate=0", "not a positive whole number"),
        ("test:///default?rate=-5", "not a positive whole number"),
        ("test:///default?rate=1.5", "not a positive whole number"),
        ("test:///default?rate=fast", "not a positive whole number"),
        ("test:///default?rate=%C2%B2", "not a positive whole number"),
        ("test:///default?rate=%D9%A1%D9%A2", "not a positive whole number"),
        ("test:///default?rate=000", "not a positive whole number"),
        (f"test:///default?rate={MAX_RATE + 1}", "not a positive whole number"),
        (f"test:///default?rate={'9' * 400}", "not a positive whole number"),
        (f"test:///default?rate={'9' * 5000}", "not a positive whole number"),
        ("test:///a/b", "must name one host"),
    ],
)
def test_bad_uris_are_invalid_arguments(uri: str, words: str) -> None:
    """A malformed URI, or a test URI with an unknown parameter or a bad rate, is refused with
    InvalidArgError saying what is wrong."""
    with pytest.raises(virtjob.InvalidArgError) as caught:
        virtjob.open(uri)
    assert words in caught.value.message


@pytest.mark.parametrize("rate", ["1", "007", str(MAX_RATE)])
def test_extreme_but_valid_rates_are_accepted(rate: str) -> None:
    """Any whole number of bytes per second from 1 to MAX_RATE is a valid rate."""
    with virtjob.open(f"test:///open-extreme?rate={rate}") as conn:
        assert conn.lookup_domain("test").is_active()


def test_fastest_rate_runs_jobs_at_once(tmp_path: Path) -> None:
    """At MAX_RATE the pacing arithmetic stays finite and a save is instant."""
    with virtjob.open(f"test:///open-fastest?rate={MAX_RATE}") as conn:
        conn.lookup_domain("test").save(str(tmp_path / "t.save"))
        assert conn.restore(str(tmp_path / "t.save")).is_active()


@pytest.mark.parametrize("uri", [42, b"test:///default"])
def test_uri_that_is_not_a_string_is_an_invalid_argument(uri: object) -> None:
    """virtjob.open takes a string."""
    with pytest.raises(virtjob.InvalidArgError):
        virtjob.open(uri)  # type: ignore[arg-type]


@pytest.mark.parametrize("uri", ["xen:///system", "vbox:///session", "bhyve:///system"])
def test_unknown_driver_is_no_support(uri: str) -> None:
    """A well-formed URI for a driver this build lacks is NoSupportError naming the driver."""
    with pytest.raises(virtjob.NoSupportError) as caught:
        virtjob.open(uri)
    assert repr(uri.split(":", maxsplit=1)[0]) in caught.value.message
    assert "test" in caught.value.message


def test_default_uri_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """virtjob.open() with no URI opens $VIRTJOB_DEFAULT_URI."""
    monkeypatch.setenv("VIRTJOB_DEFAULT_URI", "test:///open-from-env?rate=12345")
    with virtjob.open() as conn:
        assert conn.uri == "test:///open-from-env?rate=12345"
        assert [d.name for d in conn.list_domains()] == ["test"]


def test_bad_default_uri_in_the_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad $VIRTJOB_DEFAULT_URI is refused like a bad argument."""
    monkeypatch.setenv("VIRTJOB_DEFAULT_URI", "test:///default?speed=1")
    with pytest.raises(virtjob.InvalidArgError, match="speed"):
        virtjob.open()


def test_host_names_separate_hosts_and_params_do_not() -> None:
    """Connections to one NAME share a host whatever their parameters; other names do not."""
    with (
        virtjob.open("test:///open-shared") as one,
        virtjob.open("test:///open-shared?rate=1") as two,
        virtjob.open("test:///open-apart") as apart,
    ):
        one.lookup_domain("test").destroy()
        assert two.lookup_domain("test").state() is virtjob.DomainState.SHUTOFF
        assert apart.lookup_domain("test").state() is virtjob.DomainState.RUNNING


def test_rate_parameter_sets_the_pace_of_jobs(tmp_path: Path) -> None:
    """Without ?rate the default pace applies: saving 'test' (512 MiB) is estimated at ~2 s;
    with a rate of 1 GiB/s, at ~0.5 s."""
    estimates: list[float] = []
    for uri in ("test:///open-rate", f"test:///open-rate?rate={1 << 30}"):
        with virtjob.open(uri) as conn:
            job = conn.lookup_domain("test").dump_core_job(str(tmp_path / "rate.core"))
            first = next(i for i in job.watch(interval=0) if i.remaining is not None)
            assert first.remaining is not None
            estimates.append(first.remaining)
            job.cancel()
            job.wait(timeout=5)
    expected = (512 << 20) / DEFAULT_RATE
    assert estimates[0] == pytest.approx(expected, rel=0.1)
    assert estimates[1] == pytest.approx(0.5, rel=0.1)
