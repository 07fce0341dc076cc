"""What a domain (virtual machine) is made of: `DomainConfig`, `DiskConfig`, `InterfaceConfig`.

Frozen, hashable dataclasses that check themselves: building one with an invalid value raises
`~virtjob.errors.InvalidArgError`, so every instance can be written out as XML and read back
equal. Use `dataclasses.replace` to derive a changed copy (it is checked again).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from uuid import UUID, uuid4

from virtjob.config.units import check_memory
from virtjob.config.validate import (
    InvalidValue,
    check_absolute_path,
    check_choice,
    check_mac,
    check_name,
    check_token,
    check_vcpus,
    check_xml_text,
)
from virtjob.errors import InvalidArgError

__all__ = [
    "DISK_BUSES",
    "DISK_DEVICES",
    "DISK_FORMATS",
    "DOMAIN_TYPES",
    "INTERFACE_TYPES",
    "OS_TYPES",
    "DiskConfig",
    "DomainConfig",
    "InterfaceConfig",
    "check_disk_target",
    "check_nic_model",
]

DOMAIN_TYPES = ("kvm", "qemu", "test")
"""Accepted ``<domain type=...>`` values: KVM acceleration, plain QEMU (TCG), the test driver."""

OS_TYPES = ("hvm",)
"""Accepted ``<os><type>`` values: full hardware virtualization only."""

DISK_DEVICES = ("disk", "cdrom")
"""Accepted ``<disk device=...>`` values."""

DISK_BUSES = ("virtio", "sata", "scsi", "ide", "usb")
"""Accepted ``<target bus=...>`` values."""

DISK_FORMATS = ("raw", "qcow2")
"""Accepted image formats, ``<driver name='qemu' type=...>``."""

INTERFACE_TYPES = ("user", "network")
"""Accepted ``<interface type=...>`` values: QEMU user networking, or a virtjob network."""

_TARGET = re.compile(r"(?:vd|sd|hd)[a-z]{1,3}")
_NIC_MODEL = re.compile(r"[A-Za-z0-9_-]{1,64}")


def check_disk_target(value: str, what: str) -> str:
    """Check a guest disk name such as 'vda', 'sdb' or 'hdc'; raises `InvalidValue`."""
    if not isinstance(value, str) or not _TARGET.fullmatch(value):
        raise InvalidValue(
            f"{what} {value!r} is not a disk name; use vda, vdb... (virtio), sda... "
            "(sata, scsi, usb) or hda... (ide)"
        )
    return value


def check_nic_model(value: str, what: str) -> str:
    """Check a network card model ('virtio', 'e1000', 'virtio-net-pci'); raises `InvalidValue`."""
    if not isinstance(value, str) or not _NIC_MODEL.fullmatch(value):
        raise InvalidValue(
            f"{what} {value!r} is not a device model; use letters, digits, '_' and '-', "
            "e.g. 'virtio' or 'e1000'"
        )
    return value


def _guarded(check: Callable[[], None]) -> None:
    """Run a dataclass's checks, reporting a bad value as `InvalidArgError`."""
    try:
        check()
    except InvalidValue as exc:
        raise InvalidArgError(str(exc)) from exc


@dataclass(frozen=True, slots=True)
class DiskConfig:
    """One ``<disk type='file'>``: an image file the guest sees as a disk or CD-ROM.

    `source` is an absolute path (it may be '' only for an empty CD-ROM drive), `target` the
    guest name ('vda'). Raises `InvalidArgError` when a value is invalid.
    """

    source: str
    target: str
    bus: str = "virtio"
    device: str = "disk"
    format: str = "raw"
    readonly: bool = False

    def __post_init__(self) -> None:
        _guarded(self._check)

    def _check(self) -> None:
        check_choice(self.device, "DiskConfig.device", DISK_DEVICES)
        if not (self.source == "" and self.device == "cdrom"):
            check_absolute_path(self.source, "DiskConfig.source")
        check_disk_target(self.target, "DiskConfig.target")
        check_choice(self.bus, "DiskConfig.bus", DISK_BUSES)
        check_choice(self.format, "DiskConfig.format", DISK_FORMATS)
        if not isinstance(self.readonly, bool):
            raise InvalidValue("DiskConfig.readonly must be True or False")


@dataclass(frozen=True, slots=True)
class InterfaceConfig:
    """One ``<interface>``: a network card on QEMU user networking or on a virtjob network.

    `type` is 'user' or 'network'; `network` names the network and is required for (and only
    allowed with) type 'network'. `mac` is stored in lowercase. `model` is written as in
    libvirt's ``<model type=...>``: 'virtio' (QEMU's virtio-net-pci), 'e1000', or a QEMU
    device name. Raises `InvalidArgError` when a value is invalid.
    """

    type: str = "user"
    mac: str | None = None
    model: str | None = None
    network: str | None = None

    def __post_init__(self) -> None:
        _guarded(self._check)

    def _check(self) -> None:
        check_choice(self.type, "InterfaceConfig.type", INTERFACE_TYPES)
        if self.mac is not None:
            object.__setattr__(self, "mac", check_mac(self.mac, "InterfaceConfig.mac"))
        if self.model is not None:
            check_nic_model(self.model, "InterfaceConfig.model")
        if self.type == "network":
            if self.network is None:
                raise InvalidValue(
                    "InterfaceConfig.network is required for type 'network'; name the network"
                )
            check_name(self.network, "InterfaceConfig.network")
        elif self.network is not None:
            raise InvalidValue(
                f"InterfaceConfig.network is set for type {self.type!r}; "
                "use type 'network' or leave network None"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class DomainConfig:
    """A domain definition: the parsed form of libvirt-style domain XML.

    Sizes are in bytes (whole KiB, at most 16 TiB); `current_memory` 0 (the default) means
    "equal to `memory`" and is replaced by it, otherwise it must not exceed `memory`. `uuid`
    defaults to a fresh random one. Sequences are stored as tuples. Keyword arguments only.
    Raises `InvalidArgError` when a value is invalid.
    """

    name: str
    uuid: UUID = field(default_factory=uuid4)
    memory: int
    current_memory: int = 0
    vcpus: int = 1
    domain_type: str = "kvm"
    os_type: str = "hvm"
    arch: str | None = None
    machine: str | None = None
    emulator: str | None = None
    disks: tuple[DiskConfig, ...] = ()
    interfaces: tuple[InterfaceConfig, ...] = ()
    qemu_args: tuple[str, ...] = ()
    description: str | None = None

    def __post_init__(self) -> None:
        for name in ("disks", "interfaces", "qemu_args"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.current_memory == 0:
            object.__setattr__(self, "current_memory", self.memory)
        _guarded(self._check)

    def _check(self) -> None:
        check_name(self.name, "DomainConfig.name")
        if not isinstance(self.uuid, UUID):
            raise InvalidValue("DomainConfig.uuid must be a uuid.UUID")
        check_memory(self.memory, "DomainConfig.memory")
        check_memory(self.current_memory, "DomainConfig.current_memory")
        if self.current_memory > self.memory:
            raise InvalidValue(
                f"DomainConfig.current_memory ({self.current_memory} bytes) is larger than "
                f"memory ({self.memory} bytes); lower it or raise memory"
            )
        check_vcpus(self.vcpus, "DomainConfig.vcpus")
        check_choice(self.domain_type, "DomainConfig.domain_type", DOMAIN_TYPES)
        check_choice(self.os_type, "DomainConfig.os_type", OS_TYPES)
        if self.arch is not None:
            check_token(self.arch, "DomainConfig.arch", "x86_64")
        if self.machine is not None:
            check_token(self.machine, "DomainConfig.machine", "q35")
        if self.emulator is not None:
            check_absolute_path(self.emulator, "DomainConfig.emulator")
        targets: set[str] = set()
        for disk in self.disks:
            if not isinstance(disk, DiskConfig):
                raise InvalidValue("DomainConfig.disks must hold DiskConfig objects")
            if disk.target in targets:
                raise InvalidValue(
                    f"DomainConfig.disks has two disks with target {disk.target!r}; "
                    "give each disk its own target"
                )
            targets.add(disk.target)
        for interface in self.interfaces:
            if not isinstance(interface, InterfaceConfig):
                raise InvalidValue("DomainConfig.interfaces must hold InterfaceConfig objects")
        for arg in self.qemu_args:
            check_xml_text(arg, "DomainConfig.qemu_args item")
        if self.description is not None:
            check_xml_text(self.description, "DomainConfig.description")
