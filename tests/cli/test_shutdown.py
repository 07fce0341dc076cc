"""``shutdown`` only asks the guest; ``--force-after SECONDS`` is the explicit, reported fallback
(issue 10, finding 18). The QEMU side, with a guest that ignores the request, is in
tests/drivers/qemu/test_shutdown.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import virtjob
from tests.cli.conftest import Invoke
from tests.cli.helpers import Daemon, run, running_daemon, write
from virtjob import DomainState
from virtjob.cli.output import ExitCode
from virtjob.drivers.qemu.command import kvm_usable
from virtjob.errors import InvalidArgError


def test_shutdown_asks_and_force_after_reports_how_it_ended(invoke: Invoke) -> None:
    asked = invoke("shutdown", "test")
    assert (asked.code, asked.out) == (0, "Domain 'test' is being shutdown\n")
    assert invoke("domstate", "test").out == "shutoff\n"  # the simulated guest obeys at once
    assert invoke("start", "test").code == 0
    forced = invoke("shutdown", "test", "--force-after", "0.5")
    assert (forced.code, forced.out) == (0, "Domain 'test' has been shut down\n")
    assert invoke("domstate", "test").out == "shutoff\n"
    assert "--force-after SECONDS" in invoke("shutdown", "--help").out


@pytest.mark.parametrize("bad", ["-1", "nan", "inf", "3601", "soon", ""])
def test_force_after_out_of_range_is_a_usage_error(invoke: Invoke, bad: str) -> None:
    result = invoke("shutdown", "test", "--force-after", bad)
    assert result.code == ExitCode.USAGE
    assert "--force-after" in result.err
    assert invoke("domstate", "test").out == "running\n"  # refused before the guest was asked


@pytest.mark.parametrize("bad", [-1, -0.001, float("nan"), float("inf"), 3600.5, "5", True, None])
def test_the_api_refuses_a_bad_force_after_before_asking(uri: str, bad: object) -> None:
    with virtjob.open(uri) as conn:
        dom = conn.lookup_domain("test")
        if bad is None:  # None is the default: only ask
            dom.shutdown(force_after=None)
            assert dom.state() is DomainState.SHUTOFF
            return
        with pytest.raises(InvalidArgError, match=r"force_after=.*give 0 to 3600"):
            dom.shutdown(force_after=bad)  # type: ignore[arg-type]
        assert dom.state() is DomainState.RUNNING
        dom.shutdown(force_after=0)  # obeyed at once
        assert dom.state() is DomainState.SHUTOFF


def test_shutdown_with_force_after_through_the_daemon(daemon: Daemon) -> None:
    uri = daemon.uri()
    result = run("-c", uri, "shutdown", "test", "--force-after", "2")
    assert (result.code, result.out, result.err) == (0, "Domain 'test' has been shut down\n", "")
    assert json.loads(run("-c", uri, "dominfo", "test", "--json").out)["state"] == "shutoff"
    with virtjob.open(uri) as conn:
        dom = conn.lookup_domain("test")
        dom.start()
        driver = conn.driver  # past Domain's own check: the daemon checks the body too
        with pytest.raises(InvalidArgError, match="force_after"):
            driver.domain_shutdown(conn.driver.lookup_domain("test"), -1)
        assert dom.state() is DomainState.RUNNING
        dom.shutdown()
        assert dom.state() is DomainState.SHUTOFF


@pytest.mark.qemu
@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="QEMU is not installed")
def test_a_deaf_qemu_guest_through_the_daemon(tmp_path: Path) -> None:
    """A guest with no OS ignores the power button: only --force-after stops it, and says so."""
    kind = "kvm" if kvm_usable() else "qemu"
    xml = write(
        tmp_path / "deaf.xml",
        f"<domain type='{kind}'><name>deaf</name><memory unit='MiB'>128</memory>"
        "<vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os></domain>",
    )
    with running_daemon(VIRTJOB_STATE_DIR=str(tmp_path / "qemu-state")) as daemon:
        uri = f"qemu+unix:///session?socket={daemon.socket}"
        try:
            assert run("-c", uri, "define", xml).code == 0
            assert run("-c", uri, "start", "deaf").code == 0
            asked = run("-c", uri, "shutdown", "deaf")
            assert (asked.code, asked.out) == (0, "Domain 'deaf' is being shutdown\n")
            assert run("-c", uri, "domstate", "deaf").out == "running\n"
            forced = run("-c", uri, "shutdown", "deaf", "--force-after", "0.5")
            assert forced.code == 0, forced.err
            assert forced.out == (
                "Domain 'deaf' did not power off within 0.5 s of the shutdown request;"
                " it was forced off\n"
            )
            assert run("-c", uri, "domstate", "deaf").out == "shutoff\n"
        finally:
            run("-c", uri, "destroy", "deaf")
