"""The configuration dataclasses: defaults, normalisation, and checks on direct construction."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from virtjob.config import (
    DhcpRange,
    DiskConfig,
    DomainConfig,
    InterfaceConfig,
    NetworkConfig,
)
from virtjob.errors import InvalidArgError

MIB = 1024**2


def test_domain_defaults() -> None:
    config = DomainConfig(name="vm1", memory=512 * MIB)
    assert config.current_memory == 512 * MIB
    assert config.uuid.version == 4
    assert (config.vcpus, config.domain_type, config.os_type) == (1, "kvm", "hvm")
    assert DomainConfig(name="vm1", memory=512 * MIB).uuid != config.uuid


def test_domain_is_frozen_hashable_and_has_slots() -> None:
    config = DomainConfig(name="vm1", memory=MIB)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.name = "vm2"  # type: ignore[misc]
    assert not hasattr(config, "__dict__")
    assert hash(config) == hash(dataclasses.replace(config))


def test_replace_keeps_and_checks() -> None:
    config = DomainConfig(name="vm1", memory=512 * MIB, current_memory=256 * MIB)
    bigger = dataclasses.replace(config, memory=1024 * MIB, vcpus=4)
    assert (bigger.memory, bigger.current_memory, bigger.vcpus) == (1024 * MIB, 256 * MIB, 4)
    assert bigger.uuid == config.uuid
    with pytest.raises(InvalidArgError, match=r"current_memory .* is larger than memory"):
        dataclasses.replace(config, memory=128 * MIB)
    with pytest.raises(InvalidArgError, match=r"DomainConfig\.name"):
        dataclasses.replace(config, name="a/b")


def test_keyword_only_construction() -> None:
    with pytest.raises(TypeError):
        DomainConfig("vm1", uuid.uuid4(), MIB)  # type: ignore[call-arg]


def test_sequences_become_tuples_and_macs_lowercase() -> None:
    config = DomainConfig(
        name="vm1",
        memory=MIB,
        disks=[DiskConfig("/a.img", "vda")],  # type: ignore[arg-type]
        interfaces=[InterfaceConfig("user", mac="52:54:00:AA:BB:CC")],  # type: ignore[arg-type]
        qemu_args=["-S"],  # type: ignore[arg-type]
    )
    assert config.disks == (DiskConfig("/a.img", "vda"),)
    assert config.qemu_args == ("-S",)
    assert config.interfaces[0].mac == "52:54:00:aa:bb:cc"
    assert config.interfaces[0] == InterfaceConfig("user", mac="52:54:00:aa:bb:cc")


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"memory": 0}, "positive"),
        ({"memory": 1000}, "whole number of KiB"),
        ({"memory": 17 * 1024**4}, "16 TiB"),
        ({"memory": True}, "integer"),
        ({"vcpus": 0}, "from 1 to 4096"),
        ({"domain_type": "xen"}, "'kvm'"),
        ({"os_type": "linux"}, "'hvm'"),
        ({"arch": "x 86"}, "identifier"),
        ({"machine": ""}, "identifier"),
        ({"emulator": "qemu"}, "absolute path"),
        ({"description": "bell\x07"}, r"U\+0007"),
        ({"qemu_args": ("ok", "nul\x00")}, r"U\+0000"),
        ({"uuid": "c7a5fdbd-edaf-9455-926a-d65c16db1809"}, "uuid.UUID"),
        ({"disks": (DiskConfig("/a", "vda"), DiskConfig("/b", "vda"))}, "two disks"),
        ({"disks": ("/a",)}, "DiskConfig objects"),
        ({"interfaces": ("user",)}, "InterfaceConfig objects"),
    ],
)
def test_domain_checks(changes: dict[str, object], words: str) -> None:
    fields: dict[str, object] = {"name": "vm1", "memory": MIB, **changes}
    with pytest.raises(InvalidArgError, match=words):
        DomainConfig(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("vm1.img", "vda"), "absolute path"),
        (("", "vda"), "absolute path"),
        (("/a", "xda"), "not a disk name"),
        (("/a", "vda", "floppy"), "bus"),
        (("/a", "vda", "virtio", "lun"), "device"),
        (("/a", "vda", "virtio", "disk", "vmdk"), "format"),
    ],
)
def test_disk_checks(args: tuple[str, ...], words: str) -> None:
    with pytest.raises(InvalidArgError, match=words):
        DiskConfig(*args)  # type: ignore[arg-type]


def test_empty_cdrom_is_allowed() -> None:
    assert DiskConfig("", "sda", "sata", "cdrom", readonly=True).source == ""


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"type": "bridge"}, "type"),
        ({"type": "network"}, "required"),
        ({"type": "user", "network": "default"}, "leave network None"),
        ({"mac": "ff:ff:ff:ff:ff:ff"}, "multicast"),
        ({"model": "virtio net"}, "device model"),
    ],
)
def test_interface_checks(fields: dict[str, str], words: str) -> None:
    with pytest.raises(InvalidArgError, match=words):
        InterfaceConfig(**fields)


def test_network_defaults_and_properties() -> None:
    config = NetworkConfig(
        name="default",
        ip_address="10.1.2.1",
        netmask="255.255.254.0",
        dhcp=DhcpRange("10.1.2.10", "10.1.3.200"),
    )
    assert config.uuid.version == 4
    assert config.prefix == 23
    assert str(config.ip_network) == "10.1.2.0/23"
    assert config.forward_mode is None


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"name": ""}, "empty"),
        ({"bridge": "br 0"}, "bridge name"),
        ({"forward_mode": "bridge"}, "'nat'"),
        ({"domain_name": "a_b"}, "DNS"),
        ({"ip_address": "10.0.0.1", "netmask": None}, "give both or neither"),
        ({"ip_address": "10.0.0.1", "netmask": "0.255.255.255"}, "not a netmask"),
        ({"ip_address": "10.0.0.255", "netmask": "255.255.255.0"}, "broadcast"),
        ({"dhcp": DhcpRange("10.0.0.2", "10.0.0.3")}, "needs ip_address"),
        (
            {
                "ip_address": "10.0.0.1",
                "netmask": "255.255.255.0",
                "dhcp": DhcpRange("10.0.1.2", "10.0.1.3"),
            },
            "outside",
        ),
    ],
)
def test_network_checks(changes: dict[str, object], words: str) -> None:
    fields: dict[str, object] = {"name": "net", **changes}
    with pytest.raises(InvalidArgError, match=words):
        NetworkConfig(**fields)  # type: ignore[arg-type]


def test_dhcp_range_checks_and_normalises() -> None:
    assert DhcpRange("10.0.0.2", "10.0.0.2") == DhcpRange("10.0.0.2", "10.0.0.2")
    with pytest.raises(InvalidArgError, match="swap them"):
        DhcpRange("10.0.0.9", "10.0.0.2")
    with pytest.raises(InvalidArgError, match="IPv4"):
        DhcpRange("10.0.0.x", "10.0.0.2")
