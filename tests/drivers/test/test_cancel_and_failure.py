"""A cancelled or failed job leaves nothing half-done: no file, no domain, the prior state."""

from __future__ import annotations

import contextlib
import resource
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import virtjob
from tests.drivers.test.helpers import LAB, WEB, cancel_at, host_view, same_host
from virtjob import DomainState, JobState


def core_image(path: Path) -> bytes:
    """The memory image inside a test-driver core file."""
    data = path.read_bytes()
    xml_length = int.from_bytes(data[18:22], "little")
    return data[22 + xml_length :]


SECOND = 1.0
"""How long the jobs to cancel last: long enough to cancel at a chosen percent, short enough
that waiting for that percent costs little."""


@contextlib.contextmanager
def lasting(conn: virtjob.Connection, work: int) -> Iterator[virtjob.Connection]:
    """Another connection to `conn`'s host whose job of `work` simulated bytes lasts `SECOND`."""
    with same_host(conn, int(work / SECOND)) as connection:
        yield connection


MIB = 1 << 20
TEST_MEMORY = 512 * MIB
WEB_MEMORY = 256 * MIB
BOOT_WORK = WEB_MEMORY // 4
NETWORK_WORK = 64 * MIB


def assert_cancelled(job: virtjob.Job, info: virtjob.JobInfo) -> None:
    """`job` ended CANCELLED, and says so through every call."""
    assert info.state is JobState.CANCELLED
    assert info.cancel_requested
    assert job.error() is None
    assert job.domain() is None
    assert job.network() is None
    with pytest.raises(virtjob.JobCancelledError, match=job.id):
        job.result()


@pytest.mark.parametrize("percent", [0, 30, 60])
@pytest.mark.parametrize("paused", [False, True], ids=["running", "paused"])
def test_cancelled_save_leaves_no_file_and_the_domain_as_it_was(
    fast: virtjob.Connection,
    tmp_path: Path,
    paused: bool,
    percent: int,
) -> None:
    """A save cancelled part-way leaves no file (not even a hidden partial one), and the
    domain in its prior state with the same instance and the same memory."""
    dom = fast.lookup_domain("test")
    if paused:
        dom.suspend()
    dom.dump_core(str(tmp_path / "before.core"))
    before = host_view(fast)
    with lasting(fast, TEST_MEMORY) as slow:
        job = slow.lookup_domain("test").save_job(str(tmp_path / "test.save"))
    assert_cancelled(job, cancel_at(job, percent))
    job.destroy()
    assert host_view(fast) == before
    assert dom.state() is (DomainState.PAUSED if paused else DomainState.RUNNING)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["before.core"]
    dom.dump_core(str(tmp_path / "after.core"))
    assert core_image(tmp_path / "after.core") == core_image(tmp_path / "before.core")


def test_cancelled_save_of_a_transient_domain_keeps_it(
    fast: virtjob.Connection, tmp_path: Path
) -> None:
    """A transient domain whose save is cancelled goes on running (it does not disappear)."""
    fast.create_domain(WEB)
    with lasting(fast, WEB_MEMORY) as slow:
        job = slow.lookup_domain("web").save_job(str(tmp_path / "web.save"))
    assert_cancelled(job, cancel_at(job, 10))
    web = fast.lookup_domain("web")
    assert (web.state(), web.is_persistent()) == (DomainState.RUNNING, False)
    assert list(tmp_path.iterdir()) == []


def test_cancelled_save_keeps_an_older_file_at_the_target(
    fast: virtjob.Connection, tmp_path: Path
) -> None:
    """Cancelling a save over an existing file leaves that file untouched."""
    target = tmp_path / "test.save"
    target.write_bytes(b"an older save")
    with lasting(fast, TEST_MEMORY) as slow:
        job = slow.lookup_domain("test").save_job(str(target))
    assert_cancelled(job, cancel_at(job, 20))
    assert target.read_bytes() == b"an older save"
    assert [p.name for p in tmp_path.iterdir()] == ["test.save"]


@pytest.mark.parametrize("paused", [False, True], ids=["running", "paused"])
def test_cancelled_dump_leaves_no_file_and_the_state(
    fast: virtjob.Connection, tmp_path: Path, paused: bool
) -> None:
    """A cancelled core dump leaves no file and the domain as it was."""
    dom = fast.lookup_domain("test")
    if paused:
        dom.suspend()
    before = host_view(fast)
    with lasting(fast, TEST_MEMORY) as slow:
        job = slow.lookup_domain("test").dump_core_job(str(tmp_path / "test.core"))
    assert_cancelled(job, cancel_at(job, 40))
    job.destroy()
    assert host_view(fast) == before
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("percent", [0, 50])
def test_cancelled_restore_of_a_transient_domain_leaves_no_domain(
    fast: virtjob.Connection, tmp_path: Path, percent: int
) -> None:
    """A cancelled restore of a domain that no longer exists leaves none; the file stays."""
    saved = tmp_path / "web.save"
    fast.create_domain(WEB).save(str(saved))
    data = saved.read_bytes()
    before = host_view(fast)
    with lasting(fast, WEB_MEMORY) as slow:
        job = slow.restore_job(str(saved))
    assert_cancelled(job, cancel_at(job, percent))
    job.destroy()
    assert host_view(fast) == before
    with pytest.raises(virtjob.NoDomainError):
        fast.lookup_domain("web")
    assert saved.read_bytes() == data
    assert fast.restore(str(saved)).state() is DomainState.RUNNING


def test_cancelled_restore_of_a_persistent_domain_leaves_it_shut_off(
    fast: virtjob.Connection, tmp_path: Path
) -> None:
    """A cancelled restore of a defined domain leaves it defined and shut off."""
    saved = tmp_path / "test.save"
    dom = fast.lookup_domain("test")
    dom.save(str(saved))
    before = host_view(fast)
    with lasting(fast, TEST_MEMORY) as slow:
        job = slow.restore_job(str(saved))
    assert_cancelled(job, cancel_at(job, 30))
    job.destroy()
    assert host_view(fast) == before
    assert (dom.state(), dom.id, dom.is_persistent()) == (DomainState.SHUTOFF, None, True)


def test_restore_cancelled_while_verifying_leaves_no_domain(
    fast: virtjob.Connection, tmp_path: Path
) -> None:
    """A restore cancelled before it reports progress (still checking the file) stops too."""
    saved = tmp_path / "web.save"
    fast.create_domain(WEB).save(str(saved))
    with lasting(fast, WEB_MEMORY) as slow:
        job = slow.restore_job(str(saved))
    job.cancel()
    assert_cancelled(job, job.wait(timeout=5))
    with pytest.raises(virtjob.NoDomainError):
        fast.lookup_domain("web")


def test_cancelled_create_leaves_no_domain(fast: virtjob.Connection) -> None:
    """A cancelled create leaves no domain, and the name is free for the next create."""
    before = host_view(fast)
    with lasting(fast, BOOT_WORK) as slow:
        job = slow.create_domain_job(WEB)
    assert_cancelled(job, cancel_at(job, 25))
    job.destroy()
    assert host_view(fast) == before
    assert fast.create_domain(WEB).state() is DomainState.RUNNING


def test_cancelled_start_leaves_the_domain_shut_off(fast: virtjob.Connection) -> None:
    """A cancelled start leaves the defined domain shut off, without an id."""
    web = fast.define_domain(WEB)
    before = host_view(fast)
    with lasting(fast, BOOT_WORK) as slow:
        job = slow.lookup_domain("web").start_job()
    assert_cancelled(job, cancel_at(job, 25))
    job.destroy()
    assert host_view(fast) == before
    assert (web.state(), web.id) == (DomainState.SHUTOFF, None)


def test_cancelled_network_create_leaves_no_network(fast: virtjob.Connection) -> None:
    """A cancelled network create leaves no network, and its bridge free."""
    before = host_view(fast)
    with lasting(fast, NETWORK_WORK) as slow:
        job = slow.create_network_job(LAB)
    assert_cancelled(job, cancel_at(job, 25))
    job.destroy()
    assert host_view(fast) == before
    assert fast.create_network(LAB).is_active()


def test_cancelled_network_start_leaves_it_inactive(fast: virtjob.Connection) -> None:
    """A cancelled network start leaves the defined network inactive."""
    net = fast.define_network(LAB)
    with lasting(fast, NETWORK_WORK) as slow:
        job = slow.lookup_network("lab").start_job()
    assert_cancelled(job, cancel_at(job, 25))
    assert (net.is_active(), net.is_persistent()) == (False, True)


def test_cancel_after_success_changes_nothing(fast: virtjob.Connection, tmp_path: Path) -> None:
    """Cancelling a job that already succeeded is a no-op: its effects stay."""
    dom = fast.lookup_domain("test")
    job = dom.save_job(str(tmp_path / "t.save"))
    assert job.wait(timeout=10).state is JobState.SUCCEEDED
    job.cancel()
    assert job.info().state is JobState.SUCCEEDED
    assert dom.state() is DomainState.SHUTOFF
    assert (tmp_path / "t.save").is_file()


# -- failures -----------------------------------------------------------------------------------

MEDIUM = 512 << 20
"""Saving the 256 MiB 'web' takes half a second: time enough to pull the rug mid-save."""


@pytest.fixture
def medium(fast: virtjob.Connection) -> Iterator[virtjob.Connection]:
    """A connection whose jobs on 'web' take about a second and are not cancelled."""
    with same_host(fast, MEDIUM) as connection:
        yield connection


def remove_directory_at(job: virtjob.Job, directory: Path, percent: float) -> virtjob.JobInfo:
    """Remove `directory` (and the partial file in it) once `job` is `percent` done."""
    for info in job.watch(interval=0):
        if info.percent is not None and info.percent >= percent and directory.exists():
            assert [p.name.startswith(".") for p in directory.iterdir()] == [True]
            shutil.rmtree(directory)
    return job.wait(timeout=10)


JOBS: dict[str, Callable[[virtjob.Domain, str], virtjob.Job]] = {
    "save": lambda d, p: d.save_job(p),
    "dump": lambda d, p: d.dump_core_job(p),
}


@pytest.mark.parametrize("paused", [False, True], ids=["running", "paused"])
@pytest.mark.parametrize("kind", JOBS)
def test_directory_removed_mid_job_fails_it_and_leaves_the_domain(
    fast: virtjob.Connection,
    medium: virtjob.Connection,
    tmp_path: Path,
    kind: str,
    paused: bool,
) -> None:
    """When the target directory disappears during a save or dump, the job FAILS with an
    OperationFailedError naming the path, and the domain keeps its state and memory."""
    web = fast.create_domain(WEB)
    if paused:
        web.suspend()
    web.dump_core(str(tmp_path / "before.core"))
    before = host_view(fast)
    directory = tmp_path / "out"
    directory.mkdir()
    target = directory / f"web.{kind}"
    job = JOBS[kind](medium.lookup_domain("web"), str(target))
    info = remove_directory_at(job, directory, 20)
    assert info.state is JobState.FAILED
    error = job.error()
    assert isinstance(error, virtjob.OperationFailedError)
    assert str(target) in error.message
    with pytest.raises(virtjob.OperationFailedError):
        job.result()
    job.destroy()
    assert host_view(fast) == before
    assert not directory.exists()
    web.dump_core(str(tmp_path / "after.core"))
    assert core_image(tmp_path / "after.core") == core_image(tmp_path / "before.core")


@contextlib.contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """Make writes past `limit` bytes fail with EFBIG (like a full disk) in this process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


@pytest.mark.parametrize("kind", JOBS)
def test_write_error_mid_job_fails_it_and_leaves_no_file(
    fast: virtjob.Connection, tmp_path: Path, kind: str
) -> None:
    """A write that fails part-way (file size limit: EFBIG, as on a full disk) fails the job
    with OperationFailedError and leaves no file and the domain running."""
    fast.create_domain(WEB)  # its image is 64 KiB: past the limit below
    before = host_view(fast)
    target = tmp_path / f"web.{kind}"
    with file_size_limit(16 << 10):
        job = JOBS[kind](fast.lookup_domain("web"), str(target))
        info = job.wait(timeout=10)
    assert info.state is JobState.FAILED
    error = job.error()
    assert isinstance(error, virtjob.OperationFailedError)
    assert str(target) in error.message
    assert "too large" in error.message
    job.destroy()
    assert host_view(fast) == before
    assert list(tmp_path.iterdir()) == []
