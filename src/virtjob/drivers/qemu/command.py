"""Translating a `DomainConfig` into a QEMU command line."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping

from virtjob.config import DiskConfig, DomainConfig, InterfaceConfig
from virtjob.errors import InvalidArgError, NoSupportError, OperationFailedError

DEFAULT_EMULATOR = "qemu-system-x86_64"
DEFAULT_MACHINE = "q35"
NIC_MODELS = {"virtio": "virtio-net-pci", "e1000": "e1000", "rtl8139": "rtl8139"}


def kvm_usable() -> bool:
    """True when /dev/kvm can be opened for reading and writing."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


def find_emulator(config: DomainConfig) -> str:
    """The QEMU binary for `config`; `OperationFailedError` if it is not installed."""
    wanted = config.emulator or DEFAULT_EMULATOR
    found = shutil.which(wanted)
    if found is None:
        raise OperationFailedError(
            f"cannot run domain {config.name!r}: emulator {wanted!r} not found;"
            f" install QEMU (Debian: apt-get install qemu-system-x86) or set <emulator>"
        )
    return found


def build_argv(
    config: DomainConfig,
    *,
    emulator: str,
    accel: str,
    monitor_fd: int,
    incoming: bool = False,
    image_fds: Mapping[str, int] | None = None,
) -> list[str]:
    """The QEMU command line for `config`, paused at start (``-S``), monitor on `monitor_fd`.

    `image_fds` maps disk targets to open image files (a confined host's, see
    `virtjob.drivers.qemu.images`): QEMU is handed each one (``-add-fd``, ``/dev/fdset/N``)
    instead of a path, through a ``-blockdev`` that opens no backing file.

    With `incoming`, QEMU waits for a migration stream (``-incoming defer``) instead of
    booting. Raises `NoSupportError` for devices this driver cannot express, `InvalidArgError`
    for a machine type carrying ``-machine`` options (``,``, ``=``).
    """
    machine = config.machine or DEFAULT_MACHINE
    if "," in machine or "=" in machine:  # a definition stored before commas were refused
        raise InvalidArgError(
            f"domain {config.name!r}: <type machine={machine!r}> would set -machine options;"
            f" give a machine type alone, e.g. 'q35'"
        )
    mib, rest = divmod(config.memory, 1 << 20)
    memory = f"{mib}M" if rest == 0 else f"{config.memory // 1024}k"
    argv = [
        emulator,
        "-name",
        f"guest={_escape(config.name)},debug-threads=on",
        "-uuid",
        str(config.uuid),
        "-machine",
        machine,
        "-accel",
        accel,
        "-m",
        memory,
        "-smp",
        str(config.vcpus),
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-S",
        "-chardev",
        f"socket,id=monitor,fd={monitor_fd}",
        "-mon",
        "chardev=monitor,mode=control",
    ]
    scsi = False
    for index, disk in enumerate(config.disks):
        if disk.bus == "scsi" and not scsi:
            argv += ["-device", "virtio-scsi-pci,id=scsi0"]
            scsi = True
        fd = (image_fds or {}).get(disk.target)
        if fd is None:
            argv += _disk_args(config, disk, index)
        else:
            argv += _fd_disk_args(config, disk, index, fd)
    for index, nic in enumerate(config.interfaces):
        argv += _nic_args(config, nic, index)
    if incoming:
        argv += ["-incoming", "defer"]
    argv += list(config.qemu_args)
    return argv


def _disk_args(config: DomainConfig, disk: DiskConfig, index: int) -> list[str]:
    drive = f"drive-{disk.target}"
    options = [f"if=none,id={drive},format={disk.format},cache=none,aio=threads"]
    if disk.source:
        options.insert(0, f"file={_escape(disk.source)}")
    if disk.readonly or disk.device == "cdrom":
        options.append("readonly=on")
    device = _device(config, disk)
    return ["-drive", ",".join(options), "-device", f"{device},drive={drive},id=disk{index}"]


def _device(config: DomainConfig, disk: DiskConfig) -> str:
    if disk.device == "cdrom":
        return "ide-cd"
    if disk.bus == "virtio":
        return "virtio-blk-pci"
    if disk.bus in ("ide", "sata"):
        return "ide-hd"
    if disk.bus == "scsi":
        return "scsi-hd,bus=scsi0.0"
    raise NoSupportError(
        f"domain {config.name!r}: disk {disk.target} on bus {disk.bus!r} is not supported"
        f" by the qemu driver; use bus virtio, sata, ide or scsi"
    )


def _fd_disk_args(config: DomainConfig, disk: DiskConfig, index: int, fd: int) -> list[str]:
    """A disk whose image QEMU is handed open (fd set ``index + 1``), never by path.

    The format node gets ``"backing": null``: QEMU opens no backing file a qcow2 header names.
    """
    fdset = index + 1
    node = f"drive-{disk.target}"
    readonly = disk.readonly or disk.device == "cdrom"
    cache = {"direct": True, "no-flush": False}
    protocol = {
        "driver": "file",
        "filename": f"/dev/fdset/{fdset}",
        "aio": "threads",
        "cache": cache,
        "read-only": readonly,
    }
    image: dict[str, object] = {
        "driver": disk.format,
        "node-name": node,
        "file": protocol,
        "cache": cache,
        "read-only": readonly,
    }
    if disk.format == "qcow2":
        image["backing"] = None
    return [
        "-add-fd",
        f"fd={fd},set={fdset},opaque=disk-{disk.target}",
        "-blockdev",
        json.dumps(image, separators=(",", ":")),
        "-device",
        f"{_device(config, disk)},drive={node},id=disk{index}",
    ]


def _nic_args(config: DomainConfig, nic: InterfaceConfig, index: int) -> list[str]:
    if nic.type != "user":
        raise NoSupportError(
            f"domain {config.name!r}: interface type {nic.type!r} is not supported by the"
            f" qemu driver yet; use <interface type='user'>"
        )
    model = NIC_MODELS.get(nic.model or "virtio", nic.model or "virtio-net-pci")
    device = f"{model},netdev=net{index},id=nic{index}"
    if nic.mac:
        device += f",mac={nic.mac}"
    return ["-netdev", f"user,id=net{index}", "-device", device]


def _escape(value: str) -> str:
    """Escape user text (a name, a path) for QEMU's comma-separated option syntax: each ','
    doubled, so it cannot end the value and add options of its own."""
    return value.replace(",", ",,")
