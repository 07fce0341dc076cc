"""Drivers: one folder per kind of host. `connect_driver` picks one for a parsed URI."""

from __future__ import annotations

from collections.abc import Mapping

from virtjob.drivers.base import Driver
from virtjob.errors import NoSupportError
from virtjob.uri import ConnectURI

LOCAL_DRIVERS = ("test", "qemu")


def connect_driver(uri: ConnectURI, *, state_dir: str | None = None) -> Driver:
    """Open the driver `uri` names; `NoSupportError` for a driver or transport virtjob lacks.

    `state_dir` is where a driver that keeps files (QEMU) keeps them; None: the default
    (`virtjob.defaults.state_dir`). virtjobd passes its own ``--state-dir``.
    """
    if uri.is_remote:
        from virtjob.drivers.remote import connect as connect_remote

        return connect_remote(uri)
    if uri.driver == "test":
        from virtjob.drivers.test import connect

        return connect(uri)
    if uri.driver == "qemu":
        from virtjob.drivers.qemu import connect as connect_qemu

        return connect_qemu(uri, state_dir)
    raise NoSupportError(
        f"cannot open {uri}: no driver named {uri.driver!r};"
        f" available drivers: {', '.join(LOCAL_DRIVERS)}"
    )


def host_params(driver: str) -> Mapping[str, str]:
    """The URI parameters of local driver `driver` that configure its shared host rather than
    one connection (its module's ``HOST_PARAMS``), each with what a client can do instead;
    empty for a driver that declares none or that virtjob lacks. Raises nothing."""
    if driver == "qemu":
        from virtjob.drivers.qemu import HOST_PARAMS

        return HOST_PARAMS
    return {}
