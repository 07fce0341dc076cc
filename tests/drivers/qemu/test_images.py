"""On a confined host an image in an allowed directory cannot make QEMU open another file.

A qcow2 header can name a backing file and an external data file that QEMU opens by itself;
the images here are real ones made by ``qemu-img``. The host refuses them when the domain is
defined or created, and again from the very file QEMU is handed when it starts (a guest can
write a qcow2 header into its own raw disk). QEMU gets each image as an open file
(``/dev/fdset``), never by path.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

import virtjob
from tests.drivers.qemu.helpers import QemuEnv
from tests.drivers.qemu.test_confinement import confine
from virtjob import DomainState

QEMU_IMG = shutil.which("qemu-img")
pytestmark = pytest.mark.skipif(QEMU_IMG is None, reason="qemu-img is not installed")
MIB = 1 << 20


def qemu_img(*args: str | Path) -> None:
    """Run ``qemu-img`` with `args` (it must succeed)."""
    assert QEMU_IMG is not None
    subprocess.run([QEMU_IMG, *map(str, args)], check=True, capture_output=True)


def disk(source: Path, image_format: str, target: str = "vda", extra: str = "") -> str:
    """The <disk> element of an image file of `image_format`."""
    return (
        f"<disk type='file' device='disk'><driver name='qemu' type='{image_format}'/>"
        f"<source file='{source}'/><target dev='{target}' bus='virtio'/>{extra}</disk>"
    )


def outside_file(tmp_path: Path) -> tuple[Path, bytes]:
    """A file outside the allowed directories, with known contents."""
    outside = tmp_path / "outside" / "precious.raw"
    outside.parent.mkdir()
    data = b"precious outside data\n" * (MIB // 22)
    outside.write_bytes(data)
    return outside, data


def refused(env: QemuEnv, xml: str, *words: str) -> None:
    """Define and create both refuse `xml` with AccessDeniedError containing `words`."""
    for call in (env.conn.define_domain, env.conn.create_domain_job):
        with pytest.raises(virtjob.AccessDeniedError) as error:
            call(xml)
        for word in words:
            assert word in error.value.message
    assert env.conn.list_domains() == []
    assert env.launches() == 0


def test_a_qcow2_backing_file_is_refused(env: QemuEnv, tmp_path: Path) -> None:
    """A qcow2 image whose header names a backing file (here outside the allowed
    directories) is refused; QEMU never runs, so never reads it."""
    outside, data = outside_file(tmp_path)
    overlay = env.files / "overlay.qcow2"
    qemu_img("create", "-f", "qcow2", "-b", outside, "-F", "raw", overlay)
    confine(env)
    refused(env, env.domain_xml("backed", devices=disk(overlay, "qcow2")), "backing file", "'vda'")
    assert outside.read_bytes() == data


def test_a_qcow2_external_data_file_is_refused(env: QemuEnv, tmp_path: Path) -> None:
    """A qcow2 image keeping its data in an external file (outside) is refused: a guest
    write would land in that file."""
    outside, data = outside_file(tmp_path)
    image = env.files / "data.qcow2"
    qemu_img("create", "-f", "qcow2", "-o", f"data_file={outside},data_file_raw=on", image, "1M")
    outside.write_bytes(data)  # qemu-img emptied it: the file an attacker aims at has data
    confine(env)
    refused(env, env.domain_xml("external", devices=disk(image, "qcow2")), "external data file")
    assert outside.read_bytes() == data


def test_a_qcow2_header_written_after_the_definition_is_refused_at_start(
    env: QemuEnv, tmp_path: Path
) -> None:
    """A guest owning a raw image can write a qcow2 header naming a backing file into it; a
    domain defined earlier on the same file as qcow2 is refused when it starts, the header
    being read from the very file QEMU would be handed."""
    outside, data = outside_file(tmp_path)
    shared = env.files / "shared.img"
    qemu_img("create", "-f", "qcow2", shared, "1M")
    confine(env)
    env.conn.define_domain(env.domain_xml("owner", devices=disk(shared, "raw")))
    victim = env.conn.define_domain(env.domain_xml("victim", devices=disk(shared, "qcow2")))
    evil = tmp_path / "evil.qcow2"  # what the raw guest writes to its disk
    qemu_img("create", "-f", "qcow2", "-b", outside, "-F", "raw", evil)
    with shared.open("r+b") as raw_disk:
        raw_disk.write(evil.read_bytes())
    with pytest.raises(virtjob.AccessDeniedError, match="backing file"):
        victim.start()
    assert victim.state() is DomainState.SHUTOFF
    assert env.launches() == 0
    assert outside.read_bytes() == data


def test_plain_raw_and_qcow2_images_boot_from_open_files(env: QemuEnv) -> None:
    """A standalone qcow2 image, a raw one and a read-only raw one in an allowed directory
    boot; QEMU is handed them open (/dev/fdset) and its command line names no image path."""
    images = env.files / "images"
    images.mkdir()
    qcow2 = images / "disk.qcow2"
    qemu_img("create", "-f", "qcow2", qcow2, "4M")
    raw = images / "disk.raw"
    raw.write_bytes(bytes(MIB))
    readonly = images / "ro.raw"
    readonly.write_bytes(bytes(MIB))
    confine(env)
    devices = (
        disk(qcow2, "qcow2")
        + disk(raw, "raw", "vdb")
        + disk(readonly, "raw", "vdc", extra="<readonly/>")
    )
    dom = env.conn.create_domain(env.domain_xml("plain", devices=devices))
    assert dom.state() is DomainState.RUNNING
    command = next(
        line
        for line in (env.state_dir / "qemu" / "logs" / "plain.log").read_text().splitlines()
        if line.startswith("--- ")
    )
    assert "/dev/fdset/1" in command
    assert "/dev/fdset/3" in command
    assert str(images) not in command
    with env.host.lock:
        process = env.host.domains[dom.uuid].process
    assert process is not None
    nodes = process.monitor.execute("query-named-block-nodes")
    formats = {node["node-name"]: node["drv"] for node in nodes}
    assert formats["drive-vda"] == "qcow2"
    assert formats["drive-vdb"] == "raw"
    assert [node["ro"] for node in nodes if node["node-name"] == "drive-vdc"] == [True]
