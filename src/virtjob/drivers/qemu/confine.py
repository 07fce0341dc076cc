"""What a confined QEMU host lets a domain name: emulator, image files, extra QEMU arguments.

virtjobd confines its hosts (`Driver.confine`) because domain XML comes from clients it does
not trust, and QEMU runs with the daemon's rights. On a confined host `check_domain` refuses,
with `AccessDeniedError` naming the element and what the operator must allow:

- an ``<emulator>`` other than the driver's default (``qemu-system-x86_64`` on ``$PATH``) or
  one of `Confinement.emulators`; the binary run is the operator's path, never the client's;
- a ``<disk>`` ``<source file>`` that does not resolve (symlinks, ``..``) beneath one of
  `Confinement.dirs`, or resolves beneath `Confinement.excluded` (the daemon's state), or is
  not a regular file, or is in a format other than raw and qcow2, or is a qcow2 image whose
  header names a backing file or an external data file (`images`); at launch QEMU is handed
  each image open (race-free), never its path;
- ``<qemu:commandline>`` arguments, unless `Confinement.qemu_args`;
- a NIC ``<model>`` other than the ones the driver knows (a device name picks QEMU code).

The check runs when a domain is defined, created, started or restored (the save file's XML),
and again right before QEMU is launched, so a path swapped in between is still refused.
"""

from __future__ import annotations

import dataclasses
import os
import stat

from virtjob.config import DiskConfig, DomainConfig
from virtjob.drivers.base import Confinement
from virtjob.drivers.qemu import images
from virtjob.drivers.qemu.command import NIC_MODELS
from virtjob.errors import AccessDeniedError
from virtjob.paths import is_inside, shown_path

DAEMON_HINT = "the operator of virtjobd"


def check_domain(
    config: DomainConfig, confinement: Confinement, default_emulator: str | None
) -> tuple[DomainConfig, str | None]:
    """Check `config` against `confinement`; return it with its image paths resolved, and the
    emulator binary to run (None: the default).

    `default_emulator` is the resolved path of the driver's default emulator, if installed.
    Raises `AccessDeniedError` naming the first element that reaches outside.
    """
    emulator = _check_emulator(config, confinement, default_emulator)
    if config.qemu_args and not confinement.qemu_args:
        raise AccessDeniedError(
            f"domain {config.name!r} passes <qemu:commandline> arguments"
            f" ({' '.join(config.qemu_args)[:200]}), which this host does not allow; remove"
            f" <qemu:commandline>, or ask {DAEMON_HINT} to start it with --allow-qemu-args"
        )
    known_models = set(NIC_MODELS) | set(NIC_MODELS.values())
    for index, nic in enumerate(config.interfaces):
        if nic.model is not None and nic.model not in known_models:
            raise AccessDeniedError(
                f"domain {config.name!r}: interface {index} has <model type={nic.model!r}>,"
                f" which this host does not allow; use one of {', '.join(sorted(NIC_MODELS))}"
            )
    disks = tuple(
        dataclasses.replace(disk, source=_check_image(config.name, disk, confinement))
        if disk.source
        else disk
        for disk in config.disks
    )
    return dataclasses.replace(config, disks=disks), emulator


def _check_emulator(
    config: DomainConfig, confinement: Confinement, default_emulator: str | None
) -> str | None:
    if config.emulator is None:
        return None
    allowed = [path for path in (default_emulator, *confinement.emulators) if path]
    wanted = os.path.realpath(config.emulator)
    for path in allowed:
        if config.emulator == path or wanted == os.path.realpath(path):
            return path
    shown = ", ".join(allowed) or "(none: QEMU is not installed)"
    raise AccessDeniedError(
        f"domain {config.name!r} names <emulator>{config.emulator}</emulator>, which this host"
        f" may not run (allowed: {shown}); drop <emulator> to use the default, or ask"
        f" {DAEMON_HINT} to start it with --allow-emulator {config.emulator}"
    )


def _check_image(name: str, disk: DiskConfig, confinement: Confinement) -> str:
    """The resolved path of `disk`'s image; `AccessDeniedError` if it is outside, or if its
    format or header could make QEMU open another file (`images.check_image`)."""
    images.check_format(name, disk)
    source = disk.source
    real = os.path.realpath(source)
    shown = shown_path(source, real)
    where = f"domain {name!r}: the image of disk {disk.target!r}, {shown},"
    if any(is_inside(real, os.path.realpath(d)) for d in confinement.excluded):
        raise AccessDeniedError(
            f"{where} lies in the daemon's own state directory, which guests may never use;"
            f" keep images elsewhere"
        )
    if not any(is_inside(real, os.path.realpath(d)) for d in confinement.dirs):
        allowed = ", ".join(confinement.dirs) or "(none)"
        raise AccessDeniedError(
            f"{where} is outside the directories this host may use ({allowed}); move it into"
            f" one of them, or ask {DAEMON_HINT} to add its directory with --allow-dir"
        )
    try:
        mode = os.stat(real).st_mode
    except FileNotFoundError:
        return real  # QEMU says it is missing when the guest starts
    except OSError as exc:
        raise AccessDeniedError(f"{where} cannot be checked: {exc.strerror}") from exc
    if not stat.S_ISREG(mode):
        raise AccessDeniedError(f"{where} is not a regular file; give an image file (raw or qcow2)")
    images.check_image(name, dataclasses.replace(disk, source=real), confinement)
    return real
