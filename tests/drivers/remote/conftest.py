"""The remote-driver tests use the real daemon fixtures of tests/daemon."""

from tests.daemon.conftest import (  # noqa: F401 - fixtures re-exported for this directory
    conn,
    daemon,
    host,
    shared_daemon,
    slow_conn,
)
