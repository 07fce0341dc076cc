"""What a running test domain costs the process does not depend on the memory it declares."""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

import virtjob
from tests.drivers.test.helpers import same_host
from virtjob.drivers.test import MAX_RATE

PER_DOMAIN = 16 << 10
"""Bytes a running domain may cost at most (its config, records and a seed; was 4 MiB)."""


def _huge(name: str) -> str:
    return (
        f"<domain type='test'><name>{name}</name><memory unit='TiB'>16</memory>"
        f"<vcpu>1</vcpu><os><type>hvm</type></os></domain>"
    )


def _traced_growth(action: object) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        assert callable(action)
        action()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_running_domains_of_16_tib_hold_no_image(conn: virtjob.Connection) -> None:
    """Each running 16 TiB domain used to hold a 4 MiB image (50 of them: +200 MB)."""
    count = 10
    with same_host(conn, MAX_RATE) as fast:
        domains = [fast.define_domain(_huge(f"big{i}")) for i in range(count)]
        warm = fast.define_domain(_huge("warm"))  # first-use costs (imports, caches) land here
        warm.start()

        def start_all() -> None:
            for dom in domains:
                dom.start()

        grown = _traced_growth(start_all)
        assert all(dom.state() is virtjob.DomainState.RUNNING for dom in domains)
    assert grown < count * PER_DOMAIN, f"{grown} bytes for {count} running domains"


def test_a_restored_domain_keeps_a_seed_and_its_very_memory(
    conn: virtjob.Connection, tmp_path: Path
) -> None:
    """A save of this driver is recognised on restore: the domain keeps no copy of the image,
    and a core dump after the restore shows the memory it had before the save."""
    with same_host(conn, MAX_RATE) as fast:
        dom = fast.define_domain(_huge("big"))
        dom.start()
        dom.dump_core(str(tmp_path / "before.core"))
        dom.save(str(tmp_path / "big.save"))
        fast.restore(str(tmp_path / "big.save")).destroy()  # warm up the restore path

        grown = _traced_growth(lambda: fast.restore(str(tmp_path / "big.save")))
        assert grown < PER_DOMAIN, f"{grown} bytes for one restored domain"
        dom.dump_core(str(tmp_path / "after.core"))
    before = (tmp_path / "before.core").read_bytes()
    assert len(before) > 4 << 20  # the image really is 4 MiB
    assert (tmp_path / "after.core").read_bytes() == before
