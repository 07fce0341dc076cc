"""job-list reads each listed job once, and a job destroyed since the listing is left out
rather than failing the whole command (exit 4)."""

from __future__ import annotations

from pathlib import Path

import virtjob
from virtjob.cli.jobs import _documents


def test_a_job_destroyed_after_the_listing_is_left_out(tmp_path: Path) -> None:
    with virtjob.open("test:///cli-job-list") as conn:
        dom = conn.lookup_domain("test")
        first = dom.dump_core_job(str(tmp_path / "one.core"))
        first.wait(30)
        second = dom.dump_core_job(str(tmp_path / "two.core"))
        second.wait(30)
        listed = conn.list_jobs()
        first.destroy()
        documents = _documents(listed)
        assert [d.id for d in documents] == [second.id]
        assert documents[0].info.state is virtjob.JobState.SUCCEEDED
        second.destroy()
