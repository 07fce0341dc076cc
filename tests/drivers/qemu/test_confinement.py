"""A confined host (what virtjobd sets, `Driver.confine`) runs nothing a client's domain XML
names outside what the operator allowed: emulator, image files, extra QEMU arguments.

Every refusal is an `AccessDeniedError` naming the element and what the operator must allow;
it comes when the domain is defined, created, started or restored (a save file carries XML).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import cast

import pytest

import virtjob
from tests.drivers.qemu.helpers import QemuEnv
from virtjob import DomainState
from virtjob.drivers.base import Confinement
from virtjob.drivers.qemu import QemuDriver

MIB = 1 << 20


def confine(env: QemuEnv, **changes: object) -> Confinement:
    """Confine the test's host to its file directory (state directory excluded)."""
    settings: dict[str, object] = {"dirs": (str(env.files),), "excluded": (str(env.state_dir),)}
    settings.update(changes)
    confinement = Confinement(**settings)  # type: ignore[arg-type]
    cast(QemuDriver, env.conn.driver).confine(confinement)
    return confinement


def image(path: Path) -> Path:
    """A 1 MiB raw disk image at `path` (its directory created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(MIB))
    return path


def disk(source: Path | str) -> str:
    """The <disk> element of an image file."""
    return (
        f"<disk type='file' device='disk'><driver name='qemu' type='raw'/>"
        f"<source file='{source}'/><target dev='vda' bus='virtio'/></disk>"
    )


def assert_refused(env: QemuEnv, xml: str, *words: str) -> None:
    """Both define and create refuse `xml` with AccessDeniedError containing `words`."""
    for call in (env.conn.define_domain, env.conn.create_domain_job):
        with pytest.raises(virtjob.AccessDeniedError) as refused:
            call(xml)
        for word in words:
            assert word in refused.value.message
    assert env.conn.list_domains() == []
    assert env.launches() == 0


def test_an_emulator_outside_the_list_is_refused(env: QemuEnv, tmp_path: Path) -> None:
    """<emulator> naming any binary but the default or an allowed one is refused, naming it
    and the daemon option that would allow it; nothing is run."""
    confine(env)
    evil = tmp_path / "evil-emulator"
    evil.write_text("#!/bin/sh\necho ran > " + str(tmp_path / "ran") + "\n")
    evil.chmod(0o700)
    xml = env.domain_xml("emu", devices=f"<emulator>{evil}</emulator>")
    assert_refused(env, xml, f"<emulator>{evil}</emulator>", f"--allow-emulator {evil}", "'emu'")
    assert not (tmp_path / "ran").exists()


def test_the_default_and_allowed_emulators_run(env: QemuEnv, tmp_path: Path) -> None:
    """The driver's default emulator, by its full path, is always allowed; another QEMU
    binary runs once the operator lists it."""
    default = shutil.which("qemu-system-x86_64")
    assert default is not None
    other = tmp_path / "bin" / "my-qemu"
    other.parent.mkdir()
    other.write_text(f'#!/bin/sh\nexec {default} "$@"\n')  # a symlink would be the default
    other.chmod(0o700)
    confine(env)
    by_path = env.conn.create_domain(env.domain_xml("a", devices=f"<emulator>{default}</emulator>"))
    assert by_path.state() is DomainState.RUNNING
    listed = env.domain_xml("b", devices=f"<emulator>{other}</emulator>")
    with pytest.raises(virtjob.AccessDeniedError, match="--allow-emulator"):
        env.conn.create_domain(listed)
    confine(env, emulators=(str(other),))
    assert env.conn.create_domain(listed).state() is DomainState.RUNNING


def test_an_image_outside_the_allowed_directories_is_refused(env: QemuEnv, tmp_path: Path) -> None:
    """A disk image outside the allowed directories, directly or through a symlink inside
    them, is refused naming the disk, the path it resolves to and --allow-dir."""
    confine(env)
    outside = image(tmp_path / "elsewhere" / "disk.raw")
    assert_refused(env, env.domain_xml("d1", devices=disk(outside)), str(outside), "--allow-dir")
    link = env.files / "innocent.raw"
    link.symlink_to(outside)
    assert_refused(env, env.domain_xml("d2", devices=disk(link)), f"resolves to {outside}", "'vda'")


def test_an_image_in_the_state_directory_is_refused(env: QemuEnv, tmp_path: Path) -> None:
    """The daemon's own state directory is never a guest's disk, even inside allowed dirs."""
    confine(env, dirs=(str(tmp_path),))
    inside = image(env.state_dir / "qemu" / "stolen.raw")
    assert_refused(env, env.domain_xml("d3", devices=disk(inside)), "own state directory")


def test_an_image_inside_the_allowed_directories_runs(env: QemuEnv) -> None:
    """A disk image beneath an allowed directory is used (by its resolved path)."""
    confine(env)
    inside = image(env.files / "images" / "disk.raw")
    dom = env.conn.create_domain(env.domain_xml("good", devices=disk(inside)))
    assert dom.state() is DomainState.RUNNING


def test_qemu_arguments_need_the_operators_consent(env: QemuEnv) -> None:
    """<qemu:commandline> is refused unless the confinement allows QEMU arguments."""
    pattern, _ = env.write_pattern(MIB)
    xml = env.domain_xml("args", pattern=pattern)
    confine(env)
    assert_refused(env, xml, "<qemu:commandline>", "--allow-qemu-args", "-device")
    confine(env, qemu_args=True)
    assert env.conn.create_domain(xml).state() is DomainState.RUNNING


def test_an_unknown_nic_model_is_refused(env: QemuEnv) -> None:
    """A NIC model names QEMU device code: only the driver's known models are allowed."""
    confine(env)
    nic = "<interface type='user'><model type='pvpanic'/></interface>"
    assert_refused(env, env.domain_xml("nic", devices=nic), "'pvpanic'", "virtio")


def test_a_definition_made_before_confinement_is_checked_at_start(
    env: QemuEnv, tmp_path: Path
) -> None:
    """A domain defined while the host was unconfined, or whose image moved out from under an
    allowed directory since, is refused when it starts; nothing is launched."""
    images = env.files / "images"
    image(images / "disk.raw")
    dom = env.conn.define_domain(env.domain_xml("moved", devices=disk(images / "disk.raw")))
    confine(env)
    outside = tmp_path / "outside"
    outside.mkdir()
    os.rename(images, outside / "images")
    images.symlink_to(outside / "images")
    with pytest.raises(virtjob.AccessDeniedError, match="resolves to"):
        dom.start_job()
    assert dom.state() is DomainState.SHUTOFF
    assert env.launches() == 0


def test_a_save_file_carrying_forbidden_xml_is_not_restored(env: QemuEnv) -> None:
    """A save file's domain XML is a client's XML too: a restore on a confined host refuses
    one that carries QEMU arguments, before any QEMU starts."""
    pattern, _ = env.write_pattern(MIB)
    dom = env.conn.create_domain(env.domain_xml("saved", pattern=pattern))
    target = env.files / "saved.save"
    dom.save(str(target))
    launched = env.launches()
    confine(env)
    with pytest.raises(virtjob.AccessDeniedError, match="<qemu:commandline>"):
        env.conn.restore_job(str(target))
    assert env.launches() == launched
    assert env.conn.list_domains() == []
    confine(env, qemu_args=True)
    restored = env.conn.restore(str(target))
    assert restored.state() is DomainState.RUNNING
