"""Domain XML: `parse_domain_xml` reads libvirt-style ``<domain>`` documents into
`DomainConfig`, `format_domain_xml` writes one back in canonical form.

The supported subset is described in ``docs/xml.md``; unknown elements and attributes are
ignored, as libvirt does, while a known one with an unsupported value is an `XMLError`.
"""

from __future__ import annotations

import re

from lxml import etree

from virtjob.config.domain import (
    DISK_BUSES,
    DISK_DEVICES,
    DISK_FORMATS,
    DOMAIN_TYPES,
    INTERFACE_TYPES,
    OS_TYPES,
    DiskConfig,
    DomainConfig,
    InterfaceConfig,
    check_disk_target,
    check_nic_model,
)
from virtjob.config.elements import read_name, read_uuid, stripped_text
from virtjob.config.parser import Document, parse_document
from virtjob.config.units import KIB, parse_memory, unit_multiplier
from virtjob.config.validate import (
    MAX_VCPUS,
    check_absolute_path,
    check_choice,
    check_mac,
    check_name,
    check_token,
    check_vcpus,
)
from virtjob.config.writer import Node, render

__all__ = ["QEMU_NAMESPACE", "format_domain_xml", "parse_domain_xml"]

QEMU_NAMESPACE = "http://libvirt.org/schemas/domain/qemu/1.0"
"""The namespace of libvirt's ``<qemu:commandline>`` extension."""

_COMMANDLINE = f"{{{QEMU_NAMESPACE}}}commandline"
_ARG = f"{{{QEMU_NAMESPACE}}}arg"
_BUS_BY_PREFIX = {"vd": "virtio", "sd": "scsi", "hd": "ide"}
_INTEGER = re.compile(r"-?[0-9]+")


def _read_memory(document: Document, element: etree._Element, what: str) -> int:
    """Bytes of a ``<memory>``-like element; raises `XMLError` at the unit or the element."""
    unit = element.get("unit")
    if unit is not None:
        document.check(element, "unit", lambda: unit_multiplier(unit, f"{what} unit"))
    text = element.text or ""
    return document.check(element, None, lambda: parse_memory(text, unit, what))


def _read_vcpus(document: Document, element: etree._Element) -> int:
    """The ``<vcpu>`` count; raises `XMLError` unless it is a whole number in range.

    A number too large to be a count (however many digits) is out of range, like 5000.
    """
    text = stripped_text(element)
    if not _INTEGER.fullmatch(text):
        raise document.error(
            element, f"<vcpu> {text[:24]!r} is not a whole number; write e.g. <vcpu>2</vcpu>"
        )
    digits = text.lstrip("-").lstrip("0") or "0"
    if len(digits) > len(str(MAX_VCPUS)):  # no int() of a huge string: it is out of range
        shown = text if len(text) <= 24 else f"{text[:24]}..."
        raise document.error(
            element,
            f"<vcpu> is {shown}, out of range; give a count from 1 to {MAX_VCPUS}",
        )
    return document.check(element, None, lambda: check_vcpus(int(text), "<vcpu>"))


def _read_disk(document: Document, disk: etree._Element) -> DiskConfig:
    """One ``<disk>``; raises `XMLError` for an unsupported type or an invalid value."""
    disk_type = disk.get("type", "file")
    if disk_type != "file":
        raise document.error(
            disk,
            f"<disk type='{disk_type}'> is not supported; only type='file' is (a disk image "
            "named by <source file='/path/to/image'/>)",
            "type",
        )
    device = disk.get("device", "disk")
    document.check(disk, "device", lambda: check_choice(device, "<disk> device", DISK_DEVICES))
    image_format = "raw"
    driver = document.child(disk, "driver")
    if driver is not None:
        driver_name = driver.get("name", "qemu")
        if driver_name != "qemu":
            raise document.error(
                driver,
                f"<driver> name {driver_name!r} is not supported; use name='qemu'",
                "name",
            )
        image_format = driver.get("type", "raw")
        document.check(
            driver,
            "type",
            lambda: check_choice(image_format, "<driver> type (image format)", DISK_FORMATS),
        )
    source_element = document.child(disk, "source")
    source_file = None if source_element is None else source_element.get("file")
    if source_element is not None and source_file is not None:
        source = document.check(
            source_element, "file", lambda: check_absolute_path(source_file, "<source> file")
        )
    elif device == "cdrom":
        source = ""  # an empty CD-ROM drive
    else:
        raise document.error(
            disk if source_element is None else source_element,
            "<disk> has no <source file='...'/>; add the absolute path of the image file",
        )
    target = document.require_child(disk, "target", "<target dev='vda' bus='virtio'/>")
    dev = document.require_attribute(target, "dev", "dev='vda'")
    document.check(target, "dev", lambda: check_disk_target(dev, "<target> dev"))
    bus = target.get("bus", _BUS_BY_PREFIX[dev[:2]])
    document.check(target, "bus", lambda: check_choice(bus, "<target> bus", DISK_BUSES))
    readonly = document.child(disk, "readonly") is not None
    return document.check(
        disk, None, lambda: DiskConfig(source, dev, bus, device, image_format, readonly)
    )


def _read_interface(document: Document, interface: etree._Element) -> InterfaceConfig:
    """One ``<interface>``; raises `XMLError` for an unsupported type or an invalid value."""
    kind = document.require_attribute(interface, "type", "type='network'")
    if kind not in INTERFACE_TYPES:
        raise document.error(
            interface,
            f"<interface type='{kind}'> is not supported; use type='network' (with "
            "<source network='default'/>) or type='user'",
            "type",
        )
    mac = None
    mac_element = document.child(interface, "mac")
    if mac_element is not None:
        address = document.require_attribute(mac_element, "address", "address='52:54:00:12:34:56'")
        mac = document.check(mac_element, "address", lambda: check_mac(address, "<mac> address"))
    model = None
    model_element = document.child(interface, "model")
    if model_element is not None:
        model_type = document.require_attribute(model_element, "type", "type='virtio'")
        model = document.check(
            model_element, "type", lambda: check_nic_model(model_type, "<model> type")
        )
    network = None
    if kind == "network":
        source = document.require_child(interface, "source", "<source network='default'/>")
        network_name = document.require_attribute(source, "network", "network='default'")
        network = document.check(
            source, "network", lambda: check_name(network_name, "<source> network")
        )
    return document.check(interface, None, lambda: InterfaceConfig(kind, mac, model, network))


def _read_qemu_args(document: Document, root: etree._Element) -> tuple[str, ...]:
    """The values of every ``<qemu:arg>`` in the ``<qemu:commandline>`` elements, in order."""
    args: list[str] = []
    for commandline in document.children(root, _COMMANDLINE):
        for arg in document.children(commandline, _ARG):
            args.append(document.require_attribute(arg, "value", "value='-device'"))
    return tuple(args)


def parse_domain_xml(data: str | bytes) -> DomainConfig:
    """Parse a libvirt-style ``<domain>`` document (str or UTF-8 bytes) into a `DomainConfig`.

    A document without ``<uuid>`` gets a new random one. Raises `XMLError`, with the line and
    column of the problem, for an unsafe or malformed document, a missing ``<name>`` or
    ``<memory>``, a bad value, or an unsupported device type. Raises
    `InvalidArgError` when `data` is neither str nor bytes.
    """
    document = parse_document(data, "domain")
    root = document.root
    domain_type = root.get("type", "kvm")
    document.check(root, "type", lambda: check_choice(domain_type, "<domain> type", DOMAIN_TYPES))
    name = read_name(document, root, "vm1")
    domain_uuid = read_uuid(document, root)
    memory_element = document.require_child(root, "memory", "<memory unit='MiB'>512</memory>")
    memory = _read_memory(document, memory_element, "<memory>")
    current_memory = memory
    current_element = document.child(root, "currentMemory")
    if current_element is not None:
        current_memory = _read_memory(document, current_element, "<currentMemory>")
        if current_memory > memory:
            raise document.error(
                current_element,
                f"<currentMemory> ({current_memory // KIB} KiB) is larger than <memory> "
                f"({memory // KIB} KiB); lower <currentMemory> or raise <memory>",
            )
    vcpu_element = document.child(root, "vcpu")
    vcpus = 1 if vcpu_element is None else _read_vcpus(document, vcpu_element)
    os_type, arch, machine = "hvm", None, None
    os_element = document.child(root, "os")
    type_element = None if os_element is None else document.child(os_element, "type")
    if type_element is not None:
        os_type = stripped_text(type_element)
        document.check(type_element, None, lambda: check_choice(os_type, "<os><type>", OS_TYPES))
        arch = type_element.get("arch")
        if arch is not None:
            document.check(type_element, "arch", lambda: check_token(arch, "<type> arch", "x86_64"))
        machine = type_element.get("machine")
        if machine is not None:
            document.check(
                type_element, "machine", lambda: check_token(machine, "<type> machine", "q35")
            )
    description_element = document.child(root, "description")
    description = None if description_element is None else description_element.text or ""
    emulator = None
    disks: list[DiskConfig] = []
    interfaces: list[InterfaceConfig] = []
    devices = document.child(root, "devices")
    if devices is not None:
        emulator_element = document.child(devices, "emulator")
        if emulator_element is not None:
            path = emulator_element.text or ""
            emulator = document.check(
                emulator_element, None, lambda: check_absolute_path(path, "<emulator>")
            )
        targets: set[str] = set()
        for disk_element in document.children(devices, "disk"):
            disk = _read_disk(document, disk_element)
            if disk.target in targets:
                target = document.children(disk_element, "target")[0]
                raise document.error(
                    target,
                    f"<target> dev {disk.target!r} is used by an earlier disk too; "
                    "give each disk its own target",
                    "dev",
                )
            targets.add(disk.target)
            disks.append(disk)
        interfaces = [_read_interface(document, i) for i in document.children(devices, "interface")]
    qemu_args = _read_qemu_args(document, root)
    return document.check(
        root,
        None,
        lambda: DomainConfig(
            name=name,
            uuid=domain_uuid,
            memory=memory,
            current_memory=current_memory,
            vcpus=vcpus,
            domain_type=domain_type,
            os_type=os_type,
            arch=arch,
            machine=machine,
            emulator=emulator,
            disks=tuple(disks),
            interfaces=tuple(interfaces),
            qemu_args=qemu_args,
            description=description,
        ),
    )


def _disk_node(disk: DiskConfig) -> Node:
    node = Node("disk", {"type": "file", "device": disk.device})
    node.add("driver", {"name": "qemu", "type": disk.format})
    if disk.source:
        node.add("source", {"file": disk.source})
    node.add("target", {"dev": disk.target, "bus": disk.bus})
    if disk.readonly:
        node.add("readonly")
    return node


def _interface_node(interface: InterfaceConfig) -> Node:
    node = Node("interface", {"type": interface.type})
    if interface.mac is not None:
        node.add("mac", {"address": interface.mac})
    if interface.network is not None:
        node.add("source", {"network": interface.network})
    if interface.model is not None:
        node.add("model", {"type": interface.model})
    return node


def format_domain_xml(config: DomainConfig) -> str:
    """Write `config` as canonical, pretty-printed domain XML (memory in KiB).

    `parse_domain_xml` reads the result back to an equal `DomainConfig`. Raises nothing.
    """
    root = Node("domain", {"type": config.domain_type})
    if config.qemu_args:
        root.attributes["xmlns:qemu"] = QEMU_NAMESPACE
    root.add("name", text=config.name)
    root.add("uuid", text=str(config.uuid))
    if config.description is not None:
        root.add("description", text=config.description)
    root.add("memory", {"unit": "KiB"}, str(config.memory // KIB))
    root.add("currentMemory", {"unit": "KiB"}, str(config.current_memory // KIB))
    root.add("vcpu", {"placement": "static"}, str(config.vcpus))
    os_type: dict[str, str] = {}
    if config.arch is not None:
        os_type["arch"] = config.arch
    if config.machine is not None:
        os_type["machine"] = config.machine
    root.add("os").add("type", os_type, config.os_type)
    devices = root.add("devices")
    if config.emulator is not None:
        devices.add("emulator", text=config.emulator)
    devices.children.extend(_disk_node(disk) for disk in config.disks)
    devices.children.extend(_interface_node(interface) for interface in config.interfaces)
    if config.qemu_args:
        commandline = root.add("qemu:commandline")
        for arg in config.qemu_args:
            commandline.add("qemu:arg", {"value": arg})
    return render(root)
