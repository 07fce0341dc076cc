"""Drivers: one folder per kind of host. `connect_driver` picks one for a parsed URI."""

from __future__ import annotations

from virtjob.drivers.base import Driver
from virtjob.errors import NoSupportError
from virtjob.uri import ConnectURI

LOCAL_DRIVERS = ("test", "qemu")


def connect_driver(uri: ConnectURI) -> Driver:
    """Open the driver `uri` names; `NoSupportError` for a driver or transport virtjob lacks."""
    if uri.is_remote:
        from virtjob.drivers.remote import connect as connect_remote

        return connect_remote(uri)
    if uri.driver == "test":
        from virtjob.drivers.test import connect

        return connect(uri)
    if uri.driver == "qemu":
        from virtjob.drivers.qemu import connect as connect_qemu

        return connect_qemu(uri)
    raise NoSupportError(
        f"cannot open {uri}: no driver named {uri.driver!r};"
        f" available drivers: {', '.join(LOCAL_DRIVERS)}"
    )
