"""The 202 answer of a job route shows the job queued, built before the job may run: a job
that ends, or is destroyed, the instant the hold lets it go still answers 202 with its id.

The instant between the hold's end and the rest of the handler is too short to hit by chance
(hundreds of starts never do), so the test makes it happen: a profile hook on the request's
thread, called as `hold_new_jobs` returns, lets the job run to its end and destroys it there,
before the handler goes on. The daemon's own `start_job` runs over a real `Service`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from tests.daemon.conftest import SAFETY
from virtjob import JobState
from virtjob.daemon.routes.hosts import start_job
from virtjob.daemon.service import Service, Settings
from virtjob.jobs import Job
from virtjob.jobs.local import hold_new_jobs

HOLD = hold_new_jobs.__wrapped__.__code__  # type: ignore[attr-defined]


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    opened = Service.open(Settings(state_dir=str(tmp_path / "state")))
    try:
        yield opened
    finally:
        opened.finish_shutdown()


def test_a_job_gone_as_the_hold_ends_still_answers_202_queued(service: Service) -> None:
    started: list[Job] = []
    ended: list[JobState] = []

    def at_hold_end(frame: FrameType, event: str, _arg: Any) -> None:
        if event == "return" and frame.f_code is HOLD and started and not ended:
            ended.append(started[0].wait(SAFETY).state)  # the job runs to its end, now
            service.recorder.destroy(started[0].id)  # and a client destroys it

    with service.hosts.changing("test", "answer", {"rate": str(1 << 40)}) as host:
        ref = host.driver.lookup_network("default")
        host.driver.network_destroy(ref)

        def start() -> Job:
            started.append(host.driver.start_network_job(ref))
            return started[0]

        sys.setprofile(at_hold_end)
        try:
            answer = start_job(service, host, start)
        finally:
            sys.setprofile(None)
    assert ended == [JobState.SUCCEEDED], "the job ended before the handler went on"
    assert answer.status_code == 202
    document = json.loads(bytes(answer.body))
    assert document["id"] == started[0].id
    assert document["kind"] == "network-start"
    assert document["subject"] == "default"
    assert document["info"]["state"] == "queued"
