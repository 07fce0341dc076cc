"""Bad input to the test driver: each is refused with its own error class and changes nothing.

Every test compares a snapshot of the whole host (domains, networks, their states and XML,
and the job list) before and after the refused call.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import virtjob
from tests.drivers.test.helpers import (
    DEFAULT_NET_UUID,
    LAB,
    TEST_UUID,
    WEB,
    domain_xml,
    host_view,
    network_xml,
)
from tests.mounts import tmpfs
from virtjob import JobState
from virtjob.savefile import HEADER_SIZE, MAGIC

Call = Callable[[virtjob.Connection, str], object]

XML_CALLS: dict[str, Call] = {
    "define_domain": lambda c, x: c.define_domain(x),
    "create_domain_job": lambda c, x: c.create_domain_job(x),
    "create_domain": lambda c, x: c.create_domain(x),
    "define_network": lambda c, x: c.define_network(x),
    "create_network_job": lambda c, x: c.create_network_job(x),
}
DOMAIN_CALLS = ["define_domain", "create_domain_job", "create_domain"]
NETWORK_CALLS = ["define_network", "create_network_job"]


def refused(
    conn: virtjob.Connection, error: type[virtjob.VirtError], call: Callable[[], object]
) -> virtjob.VirtError:
    """Run `call`, check it raises `error` and leaves the host exactly as it was."""
    before = host_view(conn)
    with pytest.raises(error) as caught:
        call()
    assert host_view(conn) == before
    return caught.value


# -- XML ------------------------------------------------------------------------------------------

MALFORMED_DOMAIN = "<domain type='test'>\n  <name>web</name>\n  <memory>1024</memory\n</domain>"
MALFORMED_NETWORK = "<network>\n  <name>lab<name>\n</network>"


@pytest.mark.parametrize("call", DOMAIN_CALLS + NETWORK_CALLS)
def test_malformed_xml_is_an_xml_error_with_its_position(
    conn: virtjob.Connection, call: str
) -> None:
    """Malformed XML gives XMLError with a 1-based line and column, and changes nothing."""
    text = MALFORMED_DOMAIN if call in DOMAIN_CALLS else MALFORMED_NETWORK
    err = refused(conn, virtjob.XMLError, lambda: XML_CALLS[call](conn, text))
    assert isinstance(err, virtjob.XMLError)
    assert err.line is not None
    assert err.line >= 2
    assert err.column is not None
    assert err.column >= 1
    assert err.message.startswith(f"line {err.line}, column {err.column}:")
    assert "malformed" in err.message


BOMB = """<?xml version="1.0"?>
<!DOCTYPE {root} [
  <!ENTITY a "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa">
  <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
  <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
  <!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">
  <!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">
  <!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;">
  <!ENTITY g "&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;">
]>
<{root}><name>bomb</name><description>&g;</description>{body}</{root}>"""


@pytest.mark.timeout(5)
@pytest.mark.parametrize("call", DOMAIN_CALLS + NETWORK_CALLS)
def test_entity_bomb_is_refused(conn: virtjob.Connection, call: str) -> None:
    """A "billion laughs" document is refused with XMLError instead of being expanded."""
    if call in DOMAIN_CALLS:
        text = BOMB.format(root="domain", body="<memory>1024</memory><os><type>hvm</type></os>")
    else:
        text = BOMB.format(root="network", body="")
    err = refused(conn, virtjob.XMLError, lambda: XML_CALLS[call](conn, text))
    assert "DOCTYPE" in err.message


@pytest.mark.parametrize("call", DOMAIN_CALLS + NETWORK_CALLS)
def test_missing_name_is_refused(conn: virtjob.Connection, call: str) -> None:
    """A document without <name> is an XMLError that says <name> is missing."""
    if call in DOMAIN_CALLS:
        text = "<domain type='test'><memory>1024</memory><os><type>hvm</type></os></domain>"
    else:
        text = "<network><bridge name='virbr9'/></network>"
    err = refused(conn, virtjob.XMLError, lambda: XML_CALLS[call](conn, text))
    assert "<name>" in err.message


@pytest.mark.parametrize("unit", ["parsecs", "MiBs", "-1"])
@pytest.mark.parametrize("call", DOMAIN_CALLS)
def test_bad_memory_unit_is_refused(conn: virtjob.Connection, call: str, unit: str) -> None:
    """An unknown memory unit is an XMLError naming the unit attribute."""
    text = f"<domain><name>web</name><memory unit='{unit}'>4</memory></domain>"
    err = refused(conn, virtjob.XMLError, lambda: XML_CALLS[call](conn, text))
    assert "unit" in err.message
    assert unit in err.message


@pytest.mark.parametrize("value", ["1.5", "-4", "lots", "1023"])
def test_bad_memory_values_are_refused(conn: virtjob.Connection, value: str) -> None:
    """Memory that is not a whole number of KiB is refused, naming <memory>."""
    text = f"<domain><name>web</name><memory unit='b'>{value}</memory></domain>"
    err = refused(conn, virtjob.XMLError, lambda: conn.define_domain(text))
    assert "memory" in err.message


# -- duplicates -----------------------------------------------------------------------------------


@pytest.mark.parametrize("call", DOMAIN_CALLS)
def test_duplicate_domain_name_is_refused(conn: virtjob.Connection, call: str) -> None:
    """A new domain may not take the name of an existing one (with another UUID)."""
    err = refused(
        conn, virtjob.OperationInvalidError, lambda: XML_CALLS[call](conn, domain_xml("test"))
    )
    assert "'test'" in err.message
    assert "already exists" in err.message


@pytest.mark.parametrize("call", DOMAIN_CALLS)
def test_duplicate_domain_uuid_is_refused(conn: virtjob.Connection, call: str) -> None:
    """A new domain may not take the UUID of an existing one (under another name)."""
    text = domain_xml("other", uuid_text=TEST_UUID)
    err = refused(conn, virtjob.OperationInvalidError, lambda: XML_CALLS[call](conn, text))
    assert TEST_UUID in err.message
    assert "'test'" in err.message


@pytest.mark.parametrize("call", DOMAIN_CALLS)
def test_duplicate_of_a_defined_shut_off_domain_is_refused(
    conn: virtjob.Connection, call: str
) -> None:
    """Names and UUIDs of defined, shut-off domains are taken too."""
    conn.define_domain(WEB)
    err = refused(
        conn, virtjob.OperationInvalidError, lambda: XML_CALLS[call](conn, domain_xml("web"))
    )
    assert "'web'" in err.message


def test_creating_a_defined_domain_under_its_own_identity_is_refused(
    conn: virtjob.Connection,
) -> None:
    """create_domain_job with the very XML of a defined domain is refused (use start_job)."""
    conn.define_domain(WEB)
    err = refused(conn, virtjob.OperationInvalidError, lambda: conn.create_domain_job(WEB))
    assert "'web'" in err.message


@pytest.mark.parametrize("call", NETWORK_CALLS)
def test_duplicate_network_name_is_refused(conn: virtjob.Connection, call: str) -> None:
    """A new network may not take the name of an existing one."""
    text = network_xml("default", "virbr9")
    err = refused(conn, virtjob.OperationInvalidError, lambda: XML_CALLS[call](conn, text))
    assert "'default'" in err.message
    assert "already exists" in err.message


@pytest.mark.parametrize("call", NETWORK_CALLS)
def test_duplicate_network_uuid_is_refused(conn: virtjob.Connection, call: str) -> None:
    """A new network may not take the UUID of an existing one."""
    text = network_xml("other", "virbr9", uuid_text=DEFAULT_NET_UUID)
    err = refused(conn, virtjob.OperationInvalidError, lambda: XML_CALLS[call](conn, text))
    assert DEFAULT_NET_UUID in err.message
    assert "'default'" in err.message


def test_creating_a_network_on_a_bridge_in_use_is_refused(conn: virtjob.Connection) -> None:
    """Two active networks cannot share a bridge."""
    text = network_xml("other", "virbr0")
    err = refused(conn, virtjob.OperationInvalidError, lambda: conn.create_network_job(text))
    assert "virbr0" in err.message
    assert "'default'" in err.message


# -- unknown objects ------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["nope", "00000000-0000-4000-8000-000000000000", "Test"])
def test_unknown_domain_is_no_domain_error(conn: virtjob.Connection, key: str) -> None:
    """Looking up a domain that does not exist names what was asked for."""
    err = refused(conn, virtjob.NoDomainError, lambda: conn.lookup_domain(key))
    assert repr(key) in err.message


@pytest.mark.parametrize("key", ["nope", "00000000-0000-4000-8000-000000000000"])
def test_unknown_network_is_no_network_error(conn: virtjob.Connection, key: str) -> None:
    """Looking up a network that does not exist names what was asked for."""
    err = refused(conn, virtjob.NoNetworkError, lambda: conn.lookup_network(key))
    assert repr(key) in err.message


def test_unknown_job_is_no_job_error(conn: virtjob.Connection) -> None:
    """Looking up a job id that never existed is NoJobError naming the id."""
    err = refused(conn, virtjob.NoJobError, lambda: conn.lookup_job("0123456789ab"))
    assert "'0123456789ab'" in err.message


def test_a_job_of_another_host_is_unknown(conn: virtjob.Connection, tmp_path: Path) -> None:
    """Job ids belong to their host: another host does not know them."""
    with virtjob.open(f"test:///bad-input-other-host?rate={1 << 36}") as other:
        job = other.lookup_domain("test").dump_core_job(str(tmp_path / "other.core"))
        job.wait(timeout=10)
        refused(conn, virtjob.NoJobError, lambda: conn.lookup_job(job.id))
        job.destroy()


DOMAIN_OPS: dict[str, Callable[[virtjob.Domain, Path], object]] = {
    "start_job": lambda d, p: d.start_job(),
    "save_job": lambda d, p: d.save_job(str(p / "x.save")),
    "dump_core_job": lambda d, p: d.dump_core_job(str(p / "x.core")),
    "destroy": lambda d, p: d.destroy(),
    "shutdown": lambda d, p: d.shutdown(),
    "suspend": lambda d, p: d.suspend(),
    "resume": lambda d, p: d.resume(),
    "undefine": lambda d, p: d.undefine(),
    "state": lambda d, p: d.state(),
    "xml": lambda d, p: d.xml(),
}


@pytest.mark.parametrize("op", DOMAIN_OPS)
def test_handle_on_a_removed_domain_is_no_domain_error(
    conn: virtjob.Connection, tmp_path: Path, op: str
) -> None:
    """Every call on the handle of a domain that has gone raises NoDomainError naming it."""
    dom = conn.define_domain(WEB)
    dom.undefine()
    err = refused(conn, virtjob.NoDomainError, lambda: DOMAIN_OPS[op](dom, tmp_path))
    assert "'web'" in err.message
    assert list(tmp_path.iterdir()) == []


NETWORK_OPS: dict[str, Callable[[virtjob.Network], object]] = {
    "start_job": lambda n: n.start_job(),
    "destroy": lambda n: n.destroy(),
    "undefine": lambda n: n.undefine(),
    "is_active": lambda n: n.is_active(),
    "xml": lambda n: n.xml(),
}


@pytest.mark.parametrize("op", NETWORK_OPS)
def test_handle_on_a_removed_network_is_no_network_error(conn: virtjob.Connection, op: str) -> None:
    """Every call on the handle of a network that has gone raises NoNetworkError naming it."""
    net = conn.define_network(LAB)
    net.undefine()
    err = refused(conn, virtjob.NoNetworkError, lambda: NETWORK_OPS[op](net))
    assert "'lab'" in err.message


# -- operations in the wrong state ----------------------------------------------------------------


def test_starting_a_running_domain_is_refused(conn: virtjob.Connection) -> None:
    """start_job on a running domain is refused at once, saying it is running."""
    dom = conn.lookup_domain("test")
    err = refused(conn, virtjob.OperationInvalidError, dom.start_job)
    assert "'test'" in err.message
    assert "running" in err.message


def test_starting_a_paused_domain_is_refused(conn: virtjob.Connection) -> None:
    """start_job on a paused domain is refused too."""
    dom = conn.lookup_domain("test")
    dom.suspend()
    err = refused(conn, virtjob.OperationInvalidError, dom.start_job)
    assert "paused" in err.message


@pytest.mark.parametrize("op", ["save_job", "dump_core_job", "destroy", "shutdown", "suspend"])
def test_operations_on_a_shut_off_domain_are_refused(
    conn: virtjob.Connection, tmp_path: Path, op: str
) -> None:
    """What needs a running domain is refused on a shut-off one, saying to start it."""
    dom = conn.define_domain(WEB)
    err = refused(conn, virtjob.OperationInvalidError, lambda: DOMAIN_OPS[op](dom, tmp_path))
    assert "'web'" in err.message
    assert "shutoff" in err.message
    assert list(tmp_path.iterdir()) == []


def test_resuming_a_running_domain_is_refused(conn: virtjob.Connection) -> None:
    """resume needs a paused domain."""
    err = refused(conn, virtjob.OperationInvalidError, conn.lookup_domain("test").resume)
    assert "not paused" in err.message


@pytest.mark.parametrize("op", ["suspend", "shutdown"])
def test_suspend_and_shutdown_of_a_paused_domain_are_refused(
    conn: virtjob.Connection, tmp_path: Path, op: str
) -> None:
    """A paused domain cannot be paused again or shut down cleanly."""
    dom = conn.lookup_domain("test")
    dom.suspend()
    err = refused(conn, virtjob.OperationInvalidError, lambda: DOMAIN_OPS[op](dom, tmp_path))
    assert "paused" in err.message


def test_undefining_a_transient_domain_is_refused(conn: virtjob.Connection) -> None:
    """A transient domain has no definition to remove."""
    web = conn.create_domain(WEB)
    err = refused(conn, virtjob.OperationInvalidError, web.undefine)
    assert "transient" in err.message


def test_starting_an_active_network_is_refused(conn: virtjob.Connection) -> None:
    """start_job on an active network is refused at once."""
    err = refused(conn, virtjob.OperationInvalidError, conn.lookup_network("default").start_job)
    assert "'default'" in err.message
    assert "already active" in err.message


def test_destroying_an_inactive_network_is_refused(conn: virtjob.Connection) -> None:
    """destroy needs an active network."""
    net = conn.define_network(LAB)
    err = refused(conn, virtjob.OperationInvalidError, net.destroy)
    assert "'lab'" in err.message


# -- restore of bad files -------------------------------------------------------------------------


@pytest.fixture
def save_file(conn: virtjob.Connection, tmp_path: Path) -> bytes:
    """The bytes of a real save of the transient domain 'web' (gone from the host afterwards)."""
    web = conn.create_domain(WEB)
    path = tmp_path / "good.save"
    web.save(str(path))
    data = path.read_bytes()
    path.unlink()
    return data


def flip(data: bytes, offset: int, mask: int = 0x10) -> bytes:
    """`data` with the bits of `mask` flipped in the byte at `offset`."""
    out = bytearray(data)
    out[offset] ^= mask
    return bytes(out)


def xml_offset(data: bytes, needle: bytes) -> int:
    """The offset of `needle` inside the XML part of a save file."""
    return HEADER_SIZE + data[HEADER_SIZE:].index(needle)


@pytest.mark.parametrize(
    ("name", "make", "words"),
    [
        ("truncated", lambda d: d[:-1], "truncated"),
        ("header-truncated", lambda d: d[: HEADER_SIZE // 2], "truncated"),
        ("empty", lambda d: b"", "not a virtjob save file"),
        ("trailing", lambda d: d + b"\0", "unexpected bytes"),
        ("magic", lambda d: flip(d, 0), "not a virtjob save file"),
        ("version", lambda d: flip(d, len(MAGIC)), "version"),
        ("driver", lambda d: flip(d, len(MAGIC) + 4), "driver"),
        ("xml-length", lambda d: flip(d, len(MAGIC) + 20), "truncated|unexpected bytes"),
        ("xml-length-high", lambda d: flip(d, len(MAGIC) + 23), "bad XML length"),
        ("image-length", lambda d: flip(d, len(MAGIC) + 24), "truncated|unexpected bytes"),
        ("image-length-high", lambda d: flip(d, len(MAGIC) + 31), "truncated"),
        ("xml-syntax", lambda d: flip(d, xml_offset(d, b"<domain")), "XML"),
        ("foreign", lambda d: b"\x7fELF" + bytes(200), "not a virtjob save file"),
        ("foreign-text", lambda d: WEB.encode(), "not a virtjob save file"),
    ],
)
def test_bad_save_files_are_refused_at_once(
    conn: virtjob.Connection,
    tmp_path: Path,
    save_file: bytes,
    name: str,
    make: Callable[[bytes], bytes],
    words: str,
) -> None:
    """A truncated, foreign, or header/XML-corrupted file is refused before any job exists."""
    path = tmp_path / f"{name}.save"
    path.write_bytes(make(save_file))
    err = refused(conn, virtjob.InvalidArgError, lambda: conn.restore_job(str(path)))
    assert str(path) in err.message
    assert re.search(words, err.message)


def test_missing_save_file_is_refused(conn: virtjob.Connection, tmp_path: Path) -> None:
    """Restoring from a path with no file names the path."""
    path = tmp_path / "none.save"
    err = refused(conn, virtjob.InvalidArgError, lambda: conn.restore_job(str(path)))
    assert str(path) in err.message
    assert "does not exist" in err.message


def test_directory_is_not_a_save_file(conn: virtjob.Connection, tmp_path: Path) -> None:
    """Restoring from a directory is refused."""
    err = refused(conn, virtjob.InvalidArgError, lambda: conn.restore_job(str(tmp_path)))
    assert "directory" in err.message


@pytest.mark.parametrize(
    "where",
    ["image-start", "image-end", "checksum-field", "xml-text"],
)
def test_corruption_found_by_the_checksum_fails_the_job(
    conn: virtjob.Connection, tmp_path: Path, save_file: bytes, where: str
) -> None:
    """A bit flipped where only the checksum can see it fails the restore job; nothing is
    restored and the domain stays absent."""
    offsets = {
        "image-start": len(save_file) - (len(save_file) - HEADER_SIZE) // 4,
        "image-end": len(save_file) - 1,
        "checksum-field": HEADER_SIZE - 1,
        # 262144 KiB becomes 362144 KiB: still valid XML, only the checksum tells.
        "xml-text": xml_offset(save_file, b"262144</memory>"),
    }
    path = tmp_path / "flipped.save"
    path.write_bytes(flip(save_file, offsets[where], 0x01))
    before = host_view(conn)
    job = conn.restore_job(str(path))
    assert job.wait(timeout=10).state is JobState.FAILED
    error = job.error()
    assert isinstance(error, virtjob.InvalidArgError)
    assert "checksum" in error.message
    assert str(path) in error.message
    assert job.domain() is None
    job.destroy()
    assert host_view(conn) == before
    with pytest.raises(virtjob.NoDomainError):
        conn.lookup_domain("web")


def test_xml_flip_into_a_clash_blames_the_file(
    conn: virtjob.Connection, tmp_path: Path, save_file: bytes
) -> None:
    """A flipped bit that renames the saved domain onto another's UUID is reported as a
    corrupted file (InvalidArgError), not as a clash with the host."""
    conn.define_domain(WEB)  # 'web' exists again, shut off, with the file's UUID
    path = tmp_path / "renamed.save"
    path.write_bytes(flip(save_file, xml_offset(save_file, b"<name>web") + 7))
    err = refused(conn, virtjob.InvalidArgError, lambda: conn.restore_job(str(path)))
    assert "checksum" in err.message


def test_restore_into_a_running_domain_is_refused(conn: virtjob.Connection, tmp_path: Path) -> None:
    """A save of a domain that is running again cannot be restored over it."""
    dom = conn.lookup_domain("test")
    path = tmp_path / "t.save"
    dom.save(str(path))
    dom.start()
    err = refused(conn, virtjob.OperationInvalidError, lambda: conn.restore_job(str(path)))
    assert "'test'" in err.message
    assert "running" in err.message


# -- save and dump targets ------------------------------------------------------------------------


@contextlib.contextmanager
def immutable_directory(path: Path) -> Iterator[Path]:
    """A directory made immutable with chattr +i (not writable even by root); skips if the
    filesystem or the capabilities do not allow it."""
    path.mkdir()
    chattr = shutil.which("chattr")
    if chattr is None:
        pytest.skip("chattr is not installed: cannot make a directory root cannot write to")
    done = subprocess.run([chattr, "+i", str(path)], capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"chattr +i failed ({done.stderr.decode().strip()}): no immutable directory")
    try:
        yield path
    finally:
        subprocess.run([chattr, "-i", str(path)], check=True)


SAVE_OPS: dict[str, Callable[[virtjob.Domain, str], object]] = {
    "save_job": lambda d, p: d.save_job(p),
    "save": lambda d, p: d.save(p),
    "dump_core_job": lambda d, p: d.dump_core_job(p),
    "dump_core": lambda d, p: d.dump_core(p),
}


@pytest.mark.parametrize("op", SAVE_OPS)
def test_target_in_a_missing_directory_is_refused(
    conn: virtjob.Connection, tmp_path: Path, op: str
) -> None:
    """A save or dump into a directory that does not exist is refused at once."""
    path = str(tmp_path / "missing" / "x.save")
    err = refused(
        conn, virtjob.InvalidArgError, lambda: SAVE_OPS[op](conn.lookup_domain("test"), path)
    )
    assert path in err.message
    assert "does not exist" in err.message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("op", SAVE_OPS)
def test_target_under_a_regular_file_is_refused(
    conn: virtjob.Connection, tmp_path: Path, op: str
) -> None:
    """A path whose 'directory' is a regular file is refused at once."""
    (tmp_path / "file").write_text("x")
    path = str(tmp_path / "file" / "x.save")
    err = refused(
        conn, virtjob.InvalidArgError, lambda: SAVE_OPS[op](conn.lookup_domain("test"), path)
    )
    assert path in err.message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


@contextlib.contextmanager
def read_only_mount(path: Path) -> Iterator[Path]:
    """An empty directory on a read-only file system (a tmpfs mounted ``ro``), which refuses
    new files even to root (EROFS); skips if this process may not mount one."""
    path.mkdir()
    with tmpfs(path, "ro,size=64k", "a read-only tmpfs"):
        yield path


@pytest.mark.parametrize("op", SAVE_OPS)
def test_target_on_a_read_only_file_system_is_refused(
    conn: virtjob.Connection, tmp_path: Path, op: str
) -> None:
    """A read-only file system refuses new files even to root: a save or dump there is
    refused at once."""
    with read_only_mount(tmp_path / "ro") as directory:
        path = str(directory / "x.save")
        err = refused(
            conn, virtjob.InvalidArgError, lambda: SAVE_OPS[op](conn.lookup_domain("test"), path)
        )
        assert path in err.message
        assert "not writable" in err.message
        assert list(directory.iterdir()) == []


@pytest.mark.parametrize("op", SAVE_OPS)
def test_target_in_an_immutable_directory_is_refused(
    conn: virtjob.Connection, tmp_path: Path, op: str
) -> None:
    """A directory made immutable (chattr +i) is not writable even for root: refused at once."""
    with immutable_directory(tmp_path / "ro") as directory:
        path = str(directory / "x.save")
        err = refused(
            conn, virtjob.InvalidArgError, lambda: SAVE_OPS[op](conn.lookup_domain("test"), path)
        )
        assert "not writable" in err.message
        assert list(directory.iterdir()) == []


@pytest.mark.parametrize("op", SAVE_OPS)
def test_target_that_is_a_directory_is_refused(
    conn: virtjob.Connection, tmp_path: Path, op: str
) -> None:
    """A save or dump onto an existing directory is refused at once."""
    err = refused(
        conn,
        virtjob.InvalidArgError,
        lambda: SAVE_OPS[op](conn.lookup_domain("test"), str(tmp_path)),
    )
    assert "is a directory" in err.message


# -- wrong argument types -------------------------------------------------------------------------

BAD_PATHS: list[object] = [42, None, b"/tmp/x.save", "", "a\0b", ["/tmp/x"]]


@pytest.mark.parametrize("path", BAD_PATHS)
@pytest.mark.parametrize("op", ["save_job", "dump_core_job", "restore_job"])
def test_path_that_is_not_a_string_is_refused(
    conn: virtjob.Connection, op: str, path: object
) -> None:
    """save, dump and restore take a path string; anything else is InvalidArgError."""
    dom = conn.lookup_domain("test")
    calls: dict[str, Callable[[], object]] = {
        "save_job": lambda: dom.save_job(path),  # type: ignore[arg-type]
        "dump_core_job": lambda: dom.dump_core_job(path),  # type: ignore[arg-type]
        "restore_job": lambda: conn.restore_job(path),  # type: ignore[arg-type]
    }
    err = refused(conn, virtjob.InvalidArgError, calls[op])
    assert "path" in err.message


@pytest.mark.parametrize("xml", [42, None, ["<domain/>"], b"\xff\xfe<domain/>"])
@pytest.mark.parametrize("call", DOMAIN_CALLS + NETWORK_CALLS)
def test_xml_that_is_not_a_string_is_refused(
    conn: virtjob.Connection, call: str, xml: object
) -> None:
    """XML is a string (or UTF-8 bytes); anything else is InvalidArgError."""
    err = refused(conn, virtjob.InvalidArgError, lambda: XML_CALLS[call](conn, xml))  # type: ignore[arg-type]
    assert "XML" in err.message


@pytest.mark.parametrize("key", [42, None, "", b"test"])
def test_lookup_keys_that_are_not_strings_are_refused(
    conn: virtjob.Connection, key: object
) -> None:
    """lookup_domain/network/job take non-empty strings."""
    for lookup, word in [
        (conn.lookup_domain, "domain"),
        (conn.lookup_network, "network"),
        (conn.lookup_job, "job"),
    ]:
        err = refused(conn, virtjob.InvalidArgError, lambda f=lookup: f(key))  # type: ignore[misc]
        assert word in err.message
