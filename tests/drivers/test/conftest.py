"""Fixtures for the test-driver tests: more connections to the `conn` host at other rates."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import virtjob
from tests.drivers.test.helpers import same_host

FAST = 1 << 36
"""64 GiB/s: every job on a test domain is over in a few milliseconds."""
CRAWL = 16 << 20
"""16 MiB/s: booting a 256 MiB domain takes 4 s, saving 'test' 32 s (long enough to collide)."""


@pytest.fixture
def fast(conn: virtjob.Connection) -> Iterator[virtjob.Connection]:
    """A connection to `conn`'s host whose jobs finish at once (for setting the scene)."""
    with same_host(conn, FAST) as connection:
        yield connection


@pytest.fixture
def crawl(conn: virtjob.Connection) -> Iterator[virtjob.Connection]:
    """A connection to `conn`'s host whose jobs last long enough to collide with or cancel."""
    with same_host(conn, CRAWL) as connection:
        yield connection
