"""Domains on a real QEMU host: define, start, suspend, resume, shutdown, destroy, undefine,
and a state that follows the QEMU process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import virtjob
from tests.drivers.qemu.helpers import QemuEnv, assert_same_memory, state_or_gone, wait_until
from virtjob import DomainState, JobKind, JobState

LIST_DOMAINS = """
import json, sys, virtjob
with virtjob.open(sys.argv[1]) as conn:
    print(json.dumps(sorted(d.name for d in conn.list_domains())))
"""


def domains_seen_by_a_new_host(env: QemuEnv) -> list[str]:
    """The domains another process finds in the state directory: what survives this host."""
    done = subprocess.run(
        [sys.executable, "-c", LIST_DOMAINS, f"qemu:///session?accel={env.accel}"],
        env={**os.environ, "VIRTJOB_STATE_DIR": str(env.state_dir)},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    names: list[str] = json.loads(done.stdout)
    return names


def test_define_start_suspend_resume_shutdown_destroy_undefine(env: QemuEnv) -> None:
    """The whole life of a persistent domain, its definition on disk at every step."""
    conn = env.conn
    definition = env.state_dir / "qemu" / "domains" / "web.xml"
    dom = conn.define_domain(env.domain_xml("web"))
    assert definition.is_file()
    assert dom.state() is DomainState.SHUTOFF
    assert dom.id is None
    assert dom.is_persistent()
    assert domains_seen_by_a_new_host(env) == ["web"]

    job = dom.start_job()
    assert job.kind is JobKind.DOMAIN_START
    assert job.subject == "web"
    assert job.result(timeout=30) == dom
    assert job.info().state is JobState.SUCCEEDED
    assert job.info().percent == 100
    job.destroy()
    assert dom.state() is DomainState.RUNNING
    first_id = dom.id
    assert first_id is not None
    pid = env.pid(dom)
    assert env.qemu_pids() == [pid]
    with pytest.raises(virtjob.OperationInvalidError, match="already running"):
        dom.start_job()

    dom.suspend()
    assert dom.state() is DomainState.PAUSED
    with pytest.raises(virtjob.OperationInvalidError, match="paused"):
        dom.suspend()
    dom.resume()
    assert dom.state() is DomainState.RUNNING
    with pytest.raises(virtjob.OperationInvalidError, match="running"):
        dom.resume()

    # No OS answers the ACPI request: the connection's ?shutdown_timeout=1 has the host kill
    # QEMU 1 s later and say so (a plain connection only asks: see test_shutdown.py).
    dom.shutdown()
    wait_until(lambda: dom.state() is DomainState.SHUTOFF, "the forced power-off")
    assert dom.id is None
    assert env.qemu_pids() == []
    with pytest.raises(virtjob.OperationInvalidError, match="not running"):
        dom.shutdown()

    dom.start()
    assert dom.state() is DomainState.RUNNING
    assert dom.id not in (None, first_id)
    dom.destroy()
    assert dom.state() is DomainState.SHUTOFF
    assert env.qemu_pids() == []
    with pytest.raises(virtjob.OperationInvalidError, match="not running"):
        dom.destroy()
    for action in (dom.suspend, dom.resume):
        with pytest.raises(virtjob.OperationInvalidError, match="not running"):
            action()

    dom.undefine()
    assert not definition.exists()
    with pytest.raises(virtjob.NoDomainError):
        dom.state()
    assert conn.list_domains() == []
    assert domains_seen_by_a_new_host(env) == []


def test_redefining_updates_the_stored_definition(env: QemuEnv) -> None:
    """Defining the same name and UUID again replaces the XML on disk; a clash is refused."""
    xml = env.domain_xml("web", memory_mib=128)
    dom = env.conn.define_domain(xml)
    env.conn.define_domain(xml.replace(">128<", ">192<"))
    stored = (env.state_dir / "qemu" / "domains" / "web.xml").read_text()
    assert "<memory unit='KiB'>196608</memory>" in stored
    assert dom.info().memory == 192 << 20
    with pytest.raises(virtjob.OperationInvalidError, match="already exists"):
        env.conn.define_domain(env.domain_xml("web"))
    assert domains_seen_by_a_new_host(env) == ["web"]


def test_undefining_a_running_domain_leaves_it_transient(env: QemuEnv) -> None:
    """Undefine removes the XML file at once; the guest runs on until destroyed, then is gone."""
    dom = env.conn.define_domain(env.domain_xml("web"))
    dom.start()
    dom.undefine()
    assert not (env.state_dir / "qemu" / "domains" / "web.xml").exists()
    assert dom.state() is DomainState.RUNNING
    assert not dom.is_persistent()
    with pytest.raises(virtjob.OperationInvalidError, match="transient"):
        dom.undefine()
    dom.destroy()
    with pytest.raises(virtjob.NoDomainError):
        dom.state()
    assert env.qemu_pids() == []


def test_create_boots_a_transient_domain_that_destroy_removes(env: QemuEnv) -> None:
    """create_domain_job reports progress to 100 % and yields a running transient domain."""
    job = env.conn.create_domain_job(env.domain_xml("tmp"))
    assert job.kind is JobKind.DOMAIN_CREATE
    infos = list(job.watch(interval=0))
    assert infos[-1].state is JobState.SUCCEEDED
    assert infos[-1].percent == 100
    dom = job.domain()
    assert dom is not None
    assert dom.name == "tmp"
    assert dom.state() is DomainState.RUNNING
    assert not dom.is_persistent()
    assert not (env.state_dir / "qemu" / "domains" / "tmp.xml").exists()
    with pytest.raises(virtjob.OperationInvalidError, match="already exists"):
        env.conn.create_domain_job(env.domain_xml("tmp"))
    dom.destroy()
    assert state_or_gone(dom) is None
    assert env.conn.list_domains() == []
    assert env.qemu_pids() == []


@pytest.mark.parametrize("persistent", [True, False], ids=["persistent", "transient"])
def test_killed_qemu_shows_at_once(env: QemuEnv, persistent: bool) -> None:
    """kill -9 of an idle guest's QEMU: a persistent domain turns CRASHED (and can start
    again), a transient one disappears."""
    xml = env.domain_xml("victim")
    if persistent:
        dom = env.conn.define_domain(xml)
        dom.start()
    else:
        dom = env.conn.create_domain(xml)
    os.kill(env.pid(dom), signal.SIGKILL)
    # Nothing in the public API announces a QEMU's death: poll the state, bounded.
    if persistent:
        wait_until(lambda: dom.state() is DomainState.CRASHED, "the domain to show CRASHED", 5)
        assert dom.id is None
        dom.start()
        assert dom.state() is DomainState.RUNNING
    else:
        wait_until(lambda: state_or_gone(dom) is None, "the transient domain to vanish", 5)
        assert env.conn.list_domains() == []
    assert env.qemu_pids() == ([env.pid(dom)] if persistent else [])


def test_dump_of_a_paused_domain_leaves_it_paused(env: QemuEnv) -> None:
    """A core dump keeps the domain's state: a paused guest stays paused."""
    guest = env.create("sleepy", pattern_mib=1)
    guest.dom.suspend()
    assert_same_memory(env.memory_at(guest.dom, len(guest.pattern)), guest.pattern)
    assert guest.dom.state() is DomainState.PAUSED
    guest.dom.resume()
    assert guest.dom.state() is DomainState.RUNNING


def test_bad_domain_xml_starts_no_qemu(env: QemuEnv, tmp_path: Path) -> None:
    """Malformed XML is an XMLError at the call; nothing is launched."""
    with pytest.raises(virtjob.XMLError):
        env.conn.create_domain_job("<domain><name>x</name>")
    with pytest.raises(virtjob.XMLError):
        env.conn.define_domain("<network/>")
    assert env.launches() == 0
    assert env.conn.list_domains() == []
