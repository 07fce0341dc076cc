"""Fixtures shared by the whole suite."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

import virtjob

_hosts = itertools.count(1)


@pytest.fixture
def conn() -> Iterator[virtjob.Connection]:
    """A connection to a fresh test:/// host of its own, fast enough for quick tests.

    At 4 GiB/s the 512 MiB domain `test` saves in an eighth of a second.
    """
    with virtjob.open(f"test:///t{next(_hosts)}?rate={4 << 30}") as connection:
        yield connection


@pytest.fixture
def slow_conn(conn: virtjob.Connection) -> Iterator[virtjob.Connection]:
    """A second connection to the same host as `conn`, whose jobs take seconds (to cancel them)."""
    name = conn.uri.split("?")[0]
    with virtjob.open(f"{name}?rate={64 << 20}") as connection:
        yield connection
