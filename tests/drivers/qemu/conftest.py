"""Fixtures for the QEMU-driver tests: a fresh host per test, and a check that it left nothing.

Every test here runs real ``qemu-system-x86_64`` processes; it is marked ``qemu`` and skipped
(with the reason) only when that binary is missing. The accelerator is ``$VIRTJOB_TEST_ACCEL``
(``kvm`` or ``tcg``), else KVM when ``/dev/kvm`` is usable, else TCG.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import virtjob
from tests.drivers.qemu.helpers import (
    ACCEL_ENV,
    BIG_MEMORY_MIB,
    BIG_PATTERN_MIB,
    Guest,
    QemuEnv,
    partials,
)
from tests.mounts import tmpfs
from virtjob.drivers.qemu.command import kvm_usable

QEMU = shutil.which("qemu-system-x86_64")
HERE = Path(__file__).parent


def chosen_accel() -> str:
    """The accelerator the tests run guests with."""
    wanted = os.environ.get(ACCEL_ENV, "").strip().lower()
    if not wanted:
        return "kvm" if kvm_usable() else "tcg"
    if wanted not in ("kvm", "tcg"):
        raise pytest.UsageError(f"${ACCEL_ENV}={wanted!r}: use 'kvm' or 'tcg'")
    return wanted


def pytest_report_header() -> str:
    """Say which QEMU and accelerator the QEMU-driver tests use."""
    return f"qemu driver tests: {QEMU or 'qemu-system-x86_64 not found'}, accel={chosen_accel()}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test of this directory ``qemu``; skip them all when QEMU is not installed."""
    skip = pytest.mark.skip(reason="qemu-system-x86_64 is not installed (not on $PATH)")
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.qemu)
            if QEMU is None:
                item.add_marker(skip)


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty ``$VIRTJOB_STATE_DIR``: this test's own QEMU host."""
    directory = tmp_path / "state"
    monkeypatch.setenv("VIRTJOB_STATE_DIR", str(directory))
    return directory


@pytest.fixture
def accel() -> str:
    """The accelerator, failing (not skipping) when KVM is demanded but unusable."""
    wanted = chosen_accel()
    if wanted == "kvm" and not kvm_usable():
        pytest.fail(f"${ACCEL_ENV}=kvm but /dev/kvm is not usable here; use tcg")
    return wanted


@pytest.fixture
def env(state_dir: Path, tmp_path: Path, accel: str) -> Iterator[QemuEnv]:
    """A connection to this test's host, and on teardown a check that nothing is left.

    Teardown cancels the host's unfinished jobs, destroys every running domain, then asserts
    that no QEMU process of the test's domains is alive and no hidden partial file remains.
    """
    files = tmp_path / "files"
    files.mkdir()
    uri = f"qemu:///session?accel={accel}&shutdown_timeout=1"
    with virtjob.open(uri) as conn:
        qemu = QemuEnv(conn, accel, state_dir, files)
        yield qemu
        host = qemu.host
        jobs = host.jobs.list_jobs()
        for job in jobs:
            job.cancel()
        for job in jobs:
            job.wait(timeout=30)
        with host.lock:
            processes = [d.process for d in host.domains.values() if d.process is not None]
        for process in processes:
            process.kill()
    assert qemu.qemu_pids() == [], "a QEMU process of this test outlived it"
    assert partials(tmp_path) == [], "a partial file was left behind"
    shutil.rmtree(files)  # saves and dumps are big; the state directory (logs) stays


@pytest.fixture
def big(env: QemuEnv) -> Guest:
    """A running 256 MiB guest whose RAM is mostly random bytes (`BIG_PATTERN_MIB` MiB)."""
    return env.create("big", memory_mib=BIG_MEMORY_MIB, pattern_mib=BIG_PATTERN_MIB)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs mounted for this test (needs the right to mount: root)."""
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    with tmpfs(mountpoint, "size=8m,mode=0700", "an 8 MiB tmpfs to fill up"):
        yield mountpoint
        assert partials(mountpoint) == [], "a partial file was left on the full disk"
