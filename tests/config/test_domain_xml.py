"""Domain XML: what is read, how it is written, and an error (with position) for each mistake."""

from __future__ import annotations

import uuid

import pytest

from tests.config import expect_xml_error, position_of
from virtjob.config import (
    QEMU_NAMESPACE,
    DiskConfig,
    DomainConfig,
    InterfaceConfig,
    format_domain_xml,
    parse_domain_xml,
)

FULL = """<domain type='kvm' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>vm1</name>
  <uuid>c7a5fdbd-edaf-9455-926a-d65c16db1809</uuid>
  <description>Build server</description>
  <memory unit='MiB'>512</memory>
  <currentMemory unit='KiB'>262144</currentMemory>
  <vcpu placement='static'>2</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <boot dev='hd'/>
  </os>
  <features><acpi/></features>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none'/>
      <source file='/var/lib/virtjob/images/vm1.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <source file='/srv/iso/install.iso'/>
      <target dev='sda' bus='sata'/>
      <readonly/>
    </disk>
    <interface type='network'>
      <mac address='52:54:00:AB:cd:01'/>
      <source network='default'/>
      <model type='virtio'/>
    </interface>
    <interface type='user'>
      <model type='e1000'/>
    </interface>
    <graphics type='vnc'/>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-device'/>
    <qemu:arg value='virtio-rng-pci'/>
  </qemu:commandline>
</domain>
"""

MINIMAL = "<domain><name>vm1</name><memory>1024</memory></domain>"


def test_full_example_is_read() -> None:
    config = parse_domain_xml(FULL)
    assert config == DomainConfig(
        name="vm1",
        uuid=uuid.UUID("c7a5fdbd-edaf-9455-926a-d65c16db1809"),
        memory=512 * 1024**2,
        current_memory=256 * 1024**2,
        vcpus=2,
        domain_type="kvm",
        os_type="hvm",
        arch="x86_64",
        machine="q35",
        emulator="/usr/bin/qemu-system-x86_64",
        disks=(
            DiskConfig("/var/lib/virtjob/images/vm1.qcow2", "vda", "virtio", "disk", "qcow2"),
            DiskConfig("/srv/iso/install.iso", "sda", "sata", "cdrom", "raw", readonly=True),
        ),
        interfaces=(
            InterfaceConfig("network", "52:54:00:ab:cd:01", "virtio", "default"),
            InterfaceConfig("user", model="e1000"),
        ),
        qemu_args=("-device", "virtio-rng-pci"),
        description="Build server",
    )


def test_full_example_is_written_canonically() -> None:
    assert format_domain_xml(parse_domain_xml(FULL)) == (
        f"<domain type='kvm' xmlns:qemu='{QEMU_NAMESPACE}'>\n"
        "  <name>vm1</name>\n"
        "  <uuid>c7a5fdbd-edaf-9455-926a-d65c16db1809</uuid>\n"
        "  <description>Build server</description>\n"
        "  <memory unit='KiB'>524288</memory>\n"
        "  <currentMemory unit='KiB'>262144</currentMemory>\n"
        "  <vcpu placement='static'>2</vcpu>\n"
        "  <os>\n"
        "    <type arch='x86_64' machine='q35'>hvm</type>\n"
        "  </os>\n"
        "  <devices>\n"
        "    <emulator>/usr/bin/qemu-system-x86_64</emulator>\n"
        "    <disk type='file' device='disk'>\n"
        "      <driver name='qemu' type='qcow2'/>\n"
        "      <source file='/var/lib/virtjob/images/vm1.qcow2'/>\n"
        "      <target dev='vda' bus='virtio'/>\n"
        "    </disk>\n"
        "    <disk type='file' device='cdrom'>\n"
        "      <driver name='qemu' type='raw'/>\n"
        "      <source file='/srv/iso/install.iso'/>\n"
        "      <target dev='sda' bus='sata'/>\n"
        "      <readonly/>\n"
        "    </disk>\n"
        "    <interface type='network'>\n"
        "      <mac address='52:54:00:ab:cd:01'/>\n"
        "      <source network='default'/>\n"
        "      <model type='virtio'/>\n"
        "    </interface>\n"
        "    <interface type='user'>\n"
        "      <model type='e1000'/>\n"
        "    </interface>\n"
        "  </devices>\n"
        "  <qemu:commandline>\n"
        "    <qemu:arg value='-device'/>\n"
        "    <qemu:arg value='virtio-rng-pci'/>\n"
        "  </qemu:commandline>\n"
        "</domain>\n"
    )


def test_minimal_document_gets_defaults() -> None:
    config = parse_domain_xml(MINIMAL)
    assert config.name == "vm1"
    assert isinstance(config.uuid, uuid.UUID)
    assert config.uuid.version == 4
    assert config.memory == config.current_memory == 1024 * 1024
    assert (config.vcpus, config.domain_type, config.os_type) == (1, "kvm", "hvm")
    assert (config.arch, config.machine, config.emulator, config.description) == (None,) * 4
    assert (config.disks, config.interfaces, config.qemu_args) == ((), (), ())
    assert parse_domain_xml(MINIMAL).uuid != config.uuid


def test_minimal_document_is_written_with_everything_explicit() -> None:
    config = parse_domain_xml(MINIMAL)
    assert format_domain_xml(config) == (
        "<domain type='kvm'>\n"
        "  <name>vm1</name>\n"
        f"  <uuid>{config.uuid}</uuid>\n"
        "  <memory unit='KiB'>1024</memory>\n"
        "  <currentMemory unit='KiB'>1024</currentMemory>\n"
        "  <vcpu placement='static'>1</vcpu>\n"
        "  <os>\n"
        "    <type>hvm</type>\n"
        "  </os>\n"
        "  <devices/>\n"
        "</domain>\n"
    )


def test_whitespace_around_values_is_ignored() -> None:
    text = (
        "<domain type='qemu'>\n  <name>\n    vm1\n  </name>\n"
        "  <uuid> C7A5FDBDEDAF9455926AD65C16DB1809 </uuid>\n"
        "  <memory unit='GiB'>\n 1\n</memory>\n  <vcpu> 4 </vcpu>\n"
        "  <os><type> hvm </type></os>\n</domain>"
    )
    config = parse_domain_xml(text)
    assert (config.name, config.memory, config.vcpus) == ("vm1", 1024**3, 4)
    assert config.uuid == uuid.UUID("c7a5fdbd-edaf-9455-926a-d65c16db1809")
    assert config.domain_type == "qemu"


def test_disk_bus_defaults_from_the_target_name_like_libvirt() -> None:
    text = MINIMAL.replace(
        "</memory>",
        "</memory><devices>"
        "<disk><source file='/a.img'/><target dev='vda'/></disk>"
        "<disk type='file'><source file='/b.img'/><target dev='sdb'/></disk>"
        "<disk type='file' device='cdrom'><target dev='hdc'/></disk>"
        "</devices>",
    )
    disks = parse_domain_xml(text).disks
    assert [(d.target, d.bus, d.format, d.device) for d in disks] == [
        ("vda", "virtio", "raw", "disk"),
        ("sdb", "scsi", "raw", "disk"),
        ("hdc", "ide", "raw", "cdrom"),
    ]
    assert disks[2].source == ""  # an empty CD-ROM drive
    written = format_domain_xml(parse_domain_xml(text))
    cdrom = written[written.index("device='cdrom'") :]
    assert "<source" not in cdrom[: cdrom.index("</disk>")]


def test_qemu_args_with_any_prefix_and_special_characters() -> None:
    text = (
        f"<domain xmlns:x='{QEMU_NAMESPACE}'><name>vm1</name><memory>1024</memory>"
        "<x:commandline><x:arg value='-append'/><x:arg value='a&amp;b &lt;c&gt; &apos;q&apos;'/>"
        "<x:env name='A' value='B'/></x:commandline>"
        "<commandline><arg value='ignored: not in the qemu namespace'/></commandline></domain>"
    )
    config = parse_domain_xml(text)
    assert config.qemu_args == ("-append", "a&b <c> 'q'")
    assert parse_domain_xml(format_domain_xml(config)) == config


def test_unknown_elements_and_attributes_are_ignored() -> None:
    text = MINIMAL.replace(
        "</memory>",
        "</memory><clock offset='utc'/><on_poweroff>destroy</on_poweroff>"
        "<devices><disk type='file' snapshot='no'><source file='/a' index='1'/>"
        "<target dev='vda'/><serial>X</serial></disk><video/></devices>",
    ).replace("<domain>", "<domain id='5' type='test'>")
    config = parse_domain_xml(text)
    assert config.domain_type == "test"
    assert config.disks == (DiskConfig("/a", "vda"),)


# --- errors -------------------------------------------------------------------------------


def _with(old: str, new: str) -> str:
    assert old in FULL
    return FULL.replace(old, new, 1)


def _error(text: str, needle: str, *words: str, occurrence: int = 0) -> None:
    expect_xml_error(parse_domain_xml, text, position_of(text, needle, occurrence), *words)


def test_missing_name() -> None:
    _error(_with("<name>vm1</name>", ""), "<domain", "<domain> has no <name>", "add <name>")


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("", "empty"),
        ("a/b", "contains '/'"),
        ("a b", "whitespace"),
        ("a\u200bb", "U+200B"),
        (".hidden", "starts with '.'"),
        ("-rf", "starts with '-'"),
        ("n" * 65, "at most 64"),
    ],
)
def test_bad_name(name: str, words: str) -> None:
    _error(_with("<name>vm1</name>", f"<name>{name}</name>"), "<name>", "<name>", words)


def test_two_names() -> None:
    text = _with("<name>vm1</name>", "<name>vm1</name><name>vm2</name>")
    _error(text, "<name>", "<name> appears more than once", occurrence=1)


@pytest.mark.parametrize("value", ["nope", "c7a5fdbd-edaf-9455-926a", "", "g" * 32])
def test_bad_uuid(value: str) -> None:
    text = _with("c7a5fdbd-edaf-9455-926a-d65c16db1809", value)
    _error(text, "<uuid>", "<uuid>", "is not a UUID", "leave <uuid> out")


def test_missing_memory() -> None:
    text = _with("<memory unit='MiB'>512</memory>", "")
    text = text.replace("<currentMemory unit='KiB'>262144</currentMemory>", "")
    _error(text, "<domain", "<domain> has no <memory>", "<memory unit='MiB'>512</memory>")


@pytest.mark.parametrize(
    ("element", "words"),
    [
        ("<memory unit='MiB'>lots</memory>", ["<memory> 'lots'", "not a positive whole number"]),
        ("<memory unit='MiB'>-5</memory>", ["not a positive whole number"]),
        ("<memory unit='MiB'>0</memory>", ["positive size"]),
        ("<memory unit='MiB'>2.5</memory>", ["not a positive whole number"]),
        ("<memory unit='b'>1000</memory>", ["not a whole number of KiB"]),
        ("<memory unit='TiB'>17</memory>", ["16 TiB limit"]),
        ("<memory>99999999999999999999999</memory>", ["far too large"]),
    ],
)
def test_bad_memory_points_at_the_element(element: str, words: list[str]) -> None:
    _error(_with("<memory unit='MiB'>512</memory>", element), "<memory", "<memory>", *words)


def test_bad_unit_points_at_the_attribute() -> None:
    text = _with("<memory unit='MiB'>", "<memory unit='MiBs'>")
    _error(text, "unit='MiBs'", "<memory> unit 'MiBs' is unknown", "KiB", "GiB")


def test_bad_current_memory_unit() -> None:
    text = _with("<currentMemory unit='KiB'>", "<currentMemory unit='pages'>")
    _error(text, "unit='pages'", "<currentMemory> unit 'pages'")


def test_current_memory_larger_than_memory() -> None:
    text = _with("262144</currentMemory>", "1048576</currentMemory>")
    _error(
        text,
        "<currentMemory",
        "<currentMemory> (1048576 KiB) is larger than <memory> (524288 KiB)",
        "lower <currentMemory> or raise <memory>",
    )


@pytest.mark.parametrize(
    ("vcpu", "words"),
    [("two", "not a whole number"), ("0", "from 1 to 4096"), ("5000", "from 1 to 4096")],
)
def test_bad_vcpu(vcpu: str, words: str) -> None:
    text = _with("<vcpu placement='static'>2</vcpu>", f"<vcpu>{vcpu}</vcpu>")
    _error(text, "<vcpu", "<vcpu>", words)


def test_bad_domain_type() -> None:
    text = _with("<domain type='kvm'", "<domain type='xen'")
    _error(text, "type='xen'", "<domain> type 'xen' is not supported", "'kvm'", "'qemu'", "'test'")


def test_bad_os_type() -> None:
    text = _with(">hvm</type>", ">linux</type>")
    _error(text, "<type arch", "<os><type> 'linux' is not supported", "'hvm'")


@pytest.mark.parametrize(
    ("attribute", "value"),
    [("arch", "x 86"), ("machine", ""), ("machine", "q35,smm=off"), ("machine", "pc,accel=tcg")],
)
def test_bad_arch_and_machine(attribute: str, value: str) -> None:
    old = "x86_64" if attribute == "arch" else "q35"
    text = _with(f"{attribute}='{old}'", f"{attribute}='{value}'")
    _error(text, f"{attribute}=", f"<type> {attribute}", "not a valid identifier")


def test_relative_emulator() -> None:
    text = _with("/usr/bin/qemu-system-x86_64<", "qemu-system-x86_64<")
    _error(text, "<emulator>", "<emulator> 'qemu-system-x86_64' is not an absolute path")


@pytest.mark.parametrize("disk_type", ["block", "network", "volume", "dir"])
def test_unsupported_disk_type(disk_type: str) -> None:
    text = _with("<disk type='file' device='cdrom'>", f"<disk type='{disk_type}' device='cdrom'>")
    _error(
        text,
        f"type='{disk_type}'",
        f"<disk type='{disk_type}'> is not supported",
        "only type='file'",
    )


def test_bad_disk_device() -> None:
    text = _with("device='cdrom'", "device='floppy'")
    _error(text, "device='floppy'", "<disk> device 'floppy' is not supported", "'cdrom'")


def test_bad_image_format() -> None:
    text = _with("type='qcow2'", "type='vmdk'")
    _error(text, "type='vmdk'", "<driver> type (image format) 'vmdk'", "'qcow2'", "'raw'")


def test_bad_driver_name() -> None:
    text = _with("<driver name='qemu'", "<driver name='tap'")
    _error(text, "name='tap'", "<driver> name 'tap' is not supported", "name='qemu'")


def test_disk_without_source() -> None:
    text = _with("<source file='/var/lib/virtjob/images/vm1.qcow2'/>", "")
    _error(text, "<disk", "<disk> has no <source file='...'/>")


def test_disk_source_without_file() -> None:
    text = _with("<source file='/var/lib/virtjob/images/vm1.qcow2'/>", "<source dev='/dev/sda'/>")
    _error(text, "<source dev", "<disk> has no <source file='...'/>")


def test_relative_disk_source() -> None:
    text = _with("file='/var/lib/virtjob/images/vm1.qcow2'", "file='vm1.qcow2'")
    _error(text, "file='vm1", "<source> file 'vm1.qcow2' is not an absolute path")


def test_disk_without_target() -> None:
    text = _with("<target dev='vda' bus='virtio'/>", "")
    _error(text, "<disk", "<disk> has no <target> element", "<target dev='vda'")


def test_target_without_dev() -> None:
    text = _with("<target dev='vda' bus='virtio'/>", "<target bus='virtio'/>")
    _error(text, "<target bus", "<target> has no dev= attribute")


@pytest.mark.parametrize("dev", ["vd", "nvme0n1", "VDA", "vda1"])
def test_bad_target_dev(dev: str) -> None:
    text = _with("dev='vda'", f"dev='{dev}'")
    _error(text, f"dev='{dev}'", f"<target> dev {dev!r} is not a disk name", "vda")


def test_bad_target_bus() -> None:
    text = _with("bus='virtio'", "bus='xen'")
    _error(text, "bus='xen'", "<target> bus 'xen' is not supported", "'sata'")


def test_duplicate_target() -> None:
    text = _with("dev='sda'", "dev='vda'")
    _error(text, "dev='vda'", "<target> dev 'vda' is used by an earlier disk", occurrence=1)


@pytest.mark.parametrize("kind", ["bridge", "direct", "ethernet"])
def test_unsupported_interface_type(kind: str) -> None:
    text = _with("<interface type='user'>", f"<interface type='{kind}'>")
    _error(text, f"type='{kind}'", f"<interface type='{kind}'> is not supported", "type='user'")


def test_interface_without_type() -> None:
    text = _with("<interface type='user'>", "<interface>")
    _error(text, "<interface>", "<interface> has no type= attribute")


@pytest.mark.parametrize(
    ("mac", "words"),
    [
        ("52:54:00:ab:cd", "not a MAC address"),
        ("52-54-00-ab-cd-01", "not a MAC address"),
        ("52:54:00:ab:cd:0g", "not a MAC address"),
        ("01:00:5e:00:00:01", "multicast"),
    ],
)
def test_bad_mac(mac: str, words: str) -> None:
    text = _with("52:54:00:AB:cd:01", mac)
    _error(text, "address=", "<mac> address", words)


def test_mac_without_address() -> None:
    text = _with("<mac address='52:54:00:AB:cd:01'/>", "<mac/>")
    _error(text, "<mac/>", "<mac> has no address= attribute")


def test_network_interface_without_source() -> None:
    text = _with("<source network='default'/>", "")
    _error(text, "<interface type='network'>", "<interface> has no <source> element")


def test_bad_network_name() -> None:
    text = _with("network='default'", "network='a/b'")
    _error(text, "network='a/b'", "<source> network 'a/b' contains '/'")


def test_bad_nic_model() -> None:
    text = _with("<model type='e1000'/>", "<model type='e1000;rm'/>")
    _error(text, "type='e1000;rm'", "<model> type 'e1000;rm' is not a device model")


def test_qemu_arg_without_value() -> None:
    text = _with("<qemu:arg value='-device'/>", "<qemu:arg/>")
    _error(text, "<qemu:arg/>", "<qemu:arg> has no value= attribute")
