"""`ChangeFeed` and `LocalJobDriver.job_follow`: one thread follows many jobs."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from tests.jobs.conftest import SAFETY, Blocker, in_background, start
from virtjob.errors import NoJobError, OperationInvalidError
from virtjob.jobs import JobKind, LocalJobDriver
from virtjob.jobs.feed import ChangeFeed

MakeBlocker = Callable[..., Blocker]


def test_marks_are_coalesced_and_taken_in_the_order_first_marked() -> None:
    feed = ChangeFeed()
    for job_id in ["b", "a", "b", "a", "c"]:
        feed.mark(job_id)
    assert feed.take(0) == ["b", "a", "c"]
    assert feed.take(0) == []


def test_take_waits_for_a_mark() -> None:
    feed = ChangeFeed()
    taken = in_background(lambda: feed.take(SAFETY))
    feed.mark("x")
    assert taken.result(SAFETY) == ["x"]


def test_a_closed_feed_no_longer_waits_but_hands_out_what_was_marked() -> None:
    feed = ChangeFeed()
    feed.mark("x")
    feed.close()
    assert feed.closed
    assert feed.take(None) == ["x"]
    assert feed.take(None) == []  # returns at once: a closed feed never waits


def test_wake_ends_a_wait_with_nothing_marked_once() -> None:
    feed = ChangeFeed()
    taken = in_background(lambda: feed.take(None))
    feed.wake()
    assert taken.result(SAFETY) == []
    feed.wake()  # before the take: the next take returns at once
    assert feed.take(None) == []
    feed.mark("y")  # the wake was used up: this take returns the mark, not early
    assert feed.take(None) == ["y"]


def test_a_followed_job_marks_its_feed_at_once_and_on_every_change(
    driver: LocalJobDriver, make_blocker: MakeBlocker
) -> None:
    feed = ChangeFeed()
    blocker = make_blocker()
    job = start(driver, blocker)
    assert blocker.started.wait(SAFETY)
    driver.job_follow(job.id, feed)
    assert feed.take(0) == [job.id]
    blocker.release()
    job.wait(SAFETY)
    assert feed.take(0) == [job.id]


def test_a_job_follows_one_feed_a_second_is_refused(
    driver: LocalJobDriver, make_blocker: MakeBlocker
) -> None:
    """job_follow used to replace the job's feed silently, so the first consumer stopped
    hearing of it without a word."""
    first, second = ChangeFeed(), ChangeFeed()
    blocker = make_blocker()
    job = start(driver, blocker)
    driver.job_follow(job.id, first)
    driver.job_follow(job.id, first)  # the same feed again: harmless, it is marked
    with pytest.raises(OperationInvalidError, match=job.id):
        driver.job_follow(job.id, second)
    assert first.take(0) == [job.id]
    blocker.release()
    job.wait(SAFETY)
    assert first.take(0) == [job.id], "the first feed still follows the job"
    assert second.take(0) == []


def test_following_an_unknown_job_raises_no_job(driver: LocalJobDriver) -> None:
    with pytest.raises(NoJobError):
        driver.job_follow("0" * 12, ChangeFeed())


def test_many_jobs_on_one_feed_are_followed_by_one_thread(driver: LocalJobDriver) -> None:
    feed = ChangeFeed()
    release = threading.Event()
    jobs = [
        driver.start_job(JobKind.DOMAIN_SAVE, f"d{n}", lambda ctx: release.wait(SAFETY))
        for n in range(20)
    ]
    for job in jobs:
        driver.job_follow(job.id, feed)
    release.set()
    ended: set[str] = set()
    while len(ended) < len(jobs):
        changed = feed.take(SAFETY)
        assert changed, "every job ends, and marks the feed when it does"
        ended |= {i for i in changed if driver.job_info(i).state.terminal}
