"""The ``qemu`` driver: real QEMU/KVM guests, one ``qemu-system-x86_64`` process per domain.

``qemu:///session`` keeps its domain definitions in the state directory it is handed
(default `virtjob.defaults.state_dir`: ``$VIRTJOB_STATE_DIR``, else
``~/.local/share/virtjob``; virtjobd hands it its ``--state-dir``) and runs guests as children
of this process, spoken to over QMP with the ``qemu.qmp`` library. Each guest runs as its
``<domain type>`` says (``kvm``: KVM,
refused when ``/dev/kvm`` is not usable; ``qemu``: TCG); ``?accel=tcg`` emulates every guest
of the host, ``?accel=kvm`` insists that KVM be usable. All connections of a process to one
state directory share one host: an ``accel`` that contradicts the open host is refused, and
virtjobd refuses ``accel`` from its clients altogether (`HOST_PARAMS`).
``shutdown`` only asks the guest (ACPI); with ``?shutdown_timeout=SECONDS`` every shutdown on
the connection kills QEMU (logged) when the guest has not powered off by then, as
``shutdown(force_after=SECONDS)`` does. Guests die with the process that runs them; to keep
guests and jobs across processes, run them in ``virtjobd`` and connect with
``qemu+unix:///session``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import MappingProxyType

from virtjob import defaults
from virtjob.drivers.qemu.command import kvm_usable
from virtjob.drivers.qemu.driver import QemuDriver
from virtjob.drivers.qemu.host import get_host
from virtjob.errors import InvalidArgError
from virtjob.uri import ConnectURI

HOST_PARAMS: Mapping[str, str] = MappingProxyType(
    {
        "accel": "the operator sets it with virtjobd --qemu-accel; without it each guest runs"
        " as its <domain type> says: type='kvm' under KVM, type='qemu' under TCG emulation",
    }
)
"""URI parameters that configure the shared host (every connection's guests and jobs) rather
than one connection, each with what a client can do instead. virtjobd refuses them from its
clients: on a daemon the host's settings are its operator's, never the first client's."""

__all__ = ["HOST_PARAMS", "QemuDriver", "connect"]


def _shutdown_timeout(uri: ConnectURI) -> float | None:
    """``?shutdown_timeout=SECONDS``: the connection's default `force_after`, None if absent.

    Raises `InvalidArgError` when it is not a number of seconds above 0 and below a day.
    """
    timeout_text = uri.params.get("shutdown_timeout")
    if timeout_text is None:
        return None
    try:
        shutdown_timeout = float(timeout_text)
    except ValueError:
        shutdown_timeout = -1.0
    if not 0 < shutdown_timeout < 86400:
        raise InvalidArgError(
            f"shutdown_timeout={timeout_text!r} in {uri} is not a number of seconds"
        )
    return shutdown_timeout


def connect(uri: ConnectURI, state_dir: str | None = None) -> QemuDriver:
    """Open ``qemu:///session`` on `state_dir` (default: `virtjob.defaults.state_dir`).

    Raises `InvalidArgError` for another path, a bad parameter, or a state directory that
    cannot be created.
    """
    if uri.path != "/session":
        raise InvalidArgError(f"{uri} names no QEMU host virtjob knows; use qemu:///session")
    unknown = set(uri.params) - {"accel", "shutdown_timeout"}
    if unknown:
        raise InvalidArgError(
            f"unknown parameter {sorted(unknown)[0]!r} in {uri};"
            f" the qemu driver takes 'accel' and 'shutdown_timeout'"
        )
    accel = uri.params.get("accel") or None
    if accel is not None and accel not in ("kvm", "tcg"):
        raise InvalidArgError(f"accel={accel!r} in {uri}: use 'kvm' or 'tcg'")
    if accel == "kvm" and not kvm_usable():
        raise InvalidArgError(f"{uri} asks for KVM but /dev/kvm is not usable here; use accel=tcg")
    shutdown_timeout = _shutdown_timeout(uri)
    directory = os.path.abspath(state_dir or defaults.state_dir())
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise InvalidArgError(
            f"cannot use state directory {directory}: {exc.strerror}; set"
            f" ${defaults.STATE_DIR_ENV} to a directory of yours"
        ) from exc
    return QemuDriver(get_host(directory, accel, str(uri)), str(uri), shutdown_timeout)
