"""Drivers: one folder per kind of host. `connect_driver` picks one for a parsed URI."""

from __future__ import annotations

from virtjob.drivers.base import Driver
from virtjob.errors import NoSupportError
from virtjob.uri import ConnectURI

LOCAL_DRIVERS = ("test",)


def connect_driver(uri: ConnectURI) -> Driver:
    """Open the driver `uri` names; `NoSupportError` for a driver or transport virtjob lacks."""
    if uri.is_remote:
        raise NoSupportError(
            f"cannot open {uri}: the remote driver ({uri.driver}+{uri.transport}) is not"
            f" available in this version; use a local URI such as {uri.local_uri}"
        )
    if uri.driver == "test":
        from virtjob.drivers.test import connect

        return connect(uri)
    raise NoSupportError(
        f"cannot open {uri}: no driver named {uri.driver!r};"
        f" available drivers: {', '.join(LOCAL_DRIVERS)}"
    )
