"""What a user writes reaches QEMU and the state directory as data, never as syntax or a link.

A domain name is QEMU option text (``-name guest=NAME``): its commas are escaped. A save file
whose XML carries no ``<uuid>`` restores (the restore compares the file's XML text, not a
parse that makes a new UUID each time). QEMU's log and the stored definitions are opened
without following a symlink planted in their place.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

import virtjob
from tests.drivers.qemu.helpers import QemuEnv, assert_same_memory
from virtjob import DomainState
from virtjob.drivers.qemu.workers import DRIVER_NAME
from virtjob.savefile import SaveFileReader, SaveFileWriter


def test_a_name_with_commas_starts(env: QemuEnv) -> None:
    """``a,b`` (and ``a,,b=c``) are defined, started and reported by their names: the commas
    reach QEMU escaped, as one name, not as extra ``-name`` options."""
    for name in ("a,b", "x,,y=z,debug-threads=off"):
        dom = env.conn.define_domain(env.domain_xml(name))
        dom.start()
        assert dom.state() is DomainState.RUNNING
        assert env.conn.lookup_domain(name).name == name
        pid = env.pid(dom)
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        escaped = name.replace(",", ",,")
        assert f"guest={escaped},debug-threads=on".encode() in cmdline
        dom.destroy()
        assert dom.state() is DomainState.SHUTOFF


def _without_uuid(xml: str) -> str:
    stripped, count = re.subn(r"<uuid>[^<]*</uuid>", "", xml)
    assert count == 1, f"expected one <uuid> in {xml}"
    return stripped


def test_a_save_file_without_a_uuid_restores(env: QemuEnv) -> None:
    """A save written by virtjob carries the domain's UUID; one whose XML has none (written
    by hand or another tool) restores too, with a UUID of its own, instead of failing with
    "changed while the restore was queued"."""
    pattern, data = env.write_pattern(4 << 20)
    name = "nouuid"
    dom = env.conn.create_domain(env.domain_xml(name, pattern=pattern))
    saved = Path(env.path("with-uuid.save"))
    dom.save(str(saved))
    with SaveFileReader(str(saved), DRIVER_NAME) as reader:
        assert f"<uuid>{dom.uuid}</uuid>" in reader.xml, "a save always carries the uuid"
        crafted = Path(env.path("without-uuid.save"))
        with SaveFileWriter(str(crafted), DRIVER_NAME, _without_uuid(reader.xml)) as out:
            for chunk in reader.image_chunks():
                out.write_image(chunk)
            out.commit()
    restored = env.conn.restore(str(crafted))
    env.uuids.add(restored.uuid)  # so the teardown finds its QEMU
    assert restored.name == name
    assert restored.uuid != dom.uuid
    assert restored.state() is DomainState.RUNNING
    assert_same_memory(env.memory_at(restored, len(data)), data)


def test_a_symlink_at_the_log_path_is_not_followed(env: QemuEnv, tmp_path: Path) -> None:
    """A symlink planted where a domain's QEMU log goes: the start is refused saying so, and
    the file it points at is left untouched; once it is removed the domain starts."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious\n")
    victim.chmod(0o644)
    log = env.state_dir / "qemu" / "logs" / "linked.log"
    log.symlink_to(victim)
    dom = env.conn.define_domain(env.domain_xml("linked"))
    with pytest.raises(virtjob.OperationFailedError, match="symlink") as refused:
        dom.start()
    assert str(log) in refused.value.message
    assert victim.read_bytes() == b"precious\n"
    assert oct(victim.stat().st_mode & 0o777) == oct(0o644)
    assert dom.state() is DomainState.SHUTOFF
    assert env.qemu_pids() == []
    log.unlink()
    dom.start()
    assert dom.state() is DomainState.RUNNING
    assert log.is_file()
    assert not log.is_symlink()
    assert victim.read_bytes() == b"precious\n"


def test_a_symlinked_definition_is_not_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A definition file that is a symlink (to a valid domain XML elsewhere) is not read
    through: opening the host fails naming the file, instead of defining what it points at."""
    state = tmp_path / "linked-state"
    definitions = state / "qemu" / "domains"
    definitions.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere.xml"
    elsewhere.write_text(
        f"<domain type='qemu'><name>planted</name><uuid>{uuid.uuid4()}</uuid>"
        "<memory unit='MiB'>64</memory><vcpu>1</vcpu>"
        "<os><type arch='x86_64'>hvm</type></os></domain>"
    )
    (definitions / "planted.xml").symlink_to(elsewhere)
    monkeypatch.setenv("VIRTJOB_STATE_DIR", str(state))
    with pytest.raises(virtjob.OperationFailedError, match=r"planted\.xml"):
        virtjob.open("qemu:///session")
