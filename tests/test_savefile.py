"""The save-file format: what a writer commits, what a reader accepts and what it refuses."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mounts import tmpfs
from virtjob import savefile
from virtjob.errors import InvalidArgError, OperationFailedError
from virtjob.savefile import (
    HEADER_SIZE,
    PARTIAL_MARK,
    AtomicFile,
    SaveFileReader,
    SaveFileWriter,
    check_target,
)

XML = "<domain><name>t</name></domain>"


def write_save(path: Path, image: bytes, driver: str = "test") -> None:
    """Write a complete save file holding `image`, in three pieces."""
    with SaveFileWriter(str(path), driver, XML) as out:
        third = len(image) // 3
        for piece in (image[:third], image[third : 2 * third], image[2 * third :]):
            out.write_image(piece)
        out.commit()


def test_round_trip_keeps_xml_and_image(tmp_path: Path) -> None:
    """What a writer commits, a reader verifies and hands back byte for byte."""
    image = os.urandom(3 * 1024 * 1024 + 17)
    target = tmp_path / "dom.save"
    write_save(target, image)
    assert target.stat().st_size == HEADER_SIZE + len(XML) + len(image)
    seen: list[int] = []
    with SaveFileReader(str(target), "test") as reader:
        assert reader.xml == XML
        assert reader.header.image_length == len(image)
        assert reader.verify(progress=seen.append)
        assert b"".join(reader.image_chunks(size=4096)) == image
    assert seen == sorted(seen)
    assert seen[-1] == len(image)


def test_uncommitted_writer_leaves_nothing(tmp_path: Path) -> None:
    """Leaving the writer without commit removes its partial file; no target appears."""
    target = tmp_path / "dom.save"
    with SaveFileWriter(str(target), "test", XML) as out:
        out.write_image(b"x" * 1000)
        assert any(PARTIAL_MARK in name for name in os.listdir(tmp_path))
    assert os.listdir(tmp_path) == []


def test_failed_save_keeps_an_older_file_at_the_target(tmp_path: Path) -> None:
    """An aborted save does not touch a file already at the target path."""
    target = tmp_path / "dom.save"
    target.write_bytes(b"older")
    out = SaveFileWriter(str(target), "test", XML)
    out.write_image(b"new")
    out.abort()
    assert target.read_bytes() == b"older"
    assert os.listdir(tmp_path) == ["dom.save"]


def test_empty_and_foreign_files_are_refused(tmp_path: Path) -> None:
    """A file that does not start with the magic is not a save file."""
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    foreign = tmp_path / "foreign"
    foreign.write_bytes(b"\x7fELF" + bytes(200))
    for path in (empty, foreign):
        with pytest.raises(InvalidArgError, match="not a virtjob save file"):
            SaveFileReader(str(path), "test")


def test_file_from_another_driver_is_refused(tmp_path: Path) -> None:
    """A qemu save cannot be restored through the test driver, and the message says where to."""
    target = tmp_path / "dom.save"
    write_save(target, b"abc", driver="qemu")
    with pytest.raises(InvalidArgError, match="written by the 'qemu' driver"):
        SaveFileReader(str(target), "test")


def test_newer_format_version_is_refused(tmp_path: Path) -> None:
    """A file whose format version this virtjob does not read says so."""
    target = tmp_path / "dom.save"
    write_save(target, b"abc")
    data = bytearray(target.read_bytes())
    data[8:12] = (99).to_bytes(4, "little")
    target.write_bytes(bytes(data))
    with pytest.raises(InvalidArgError, match="format version 99"):
        SaveFileReader(str(target), "test")


@pytest.mark.parametrize("keep", [5, HEADER_SIZE - 1, HEADER_SIZE + 3, -1])
def test_truncated_files_are_refused_on_open(tmp_path: Path, keep: int) -> None:
    """Cutting the file anywhere (inside the header, the XML or the image) is noticed at open."""
    target = tmp_path / "dom.save"
    write_save(target, os.urandom(5000))
    data = target.read_bytes()
    target.write_bytes(data[:keep])
    with pytest.raises(InvalidArgError, match=r"truncated|not a virtjob save file"):
        SaveFileReader(str(target), "test")


def test_trailing_bytes_are_refused(tmp_path: Path) -> None:
    """Bytes after the declared image mean the file is not what was written."""
    target = tmp_path / "dom.save"
    write_save(target, b"abc")
    with target.open("ab") as extra:
        extra.write(b"junk")
    with pytest.raises(InvalidArgError, match="unexpected bytes"):
        SaveFileReader(str(target), "test")


@pytest.mark.parametrize("where", ["xml", "image", "checksum"])
def test_any_flipped_bit_fails_verification(tmp_path: Path, where: str) -> None:
    """A single flipped bit in the XML, the image or the checksum fails verify()."""
    target = tmp_path / "dom.save"
    image = os.urandom(100_000)
    write_save(target, image)
    data = bytearray(target.read_bytes())
    offset = {"xml": HEADER_SIZE + 3, "image": len(data) - 777, "checksum": HEADER_SIZE - 1}[where]
    data[offset] ^= 0x10
    target.write_bytes(bytes(data))
    with (
        SaveFileReader(str(target), "test") as reader,
        pytest.raises(InvalidArgError, match="checksum mismatch"),
    ):
        reader.verify()


def test_verify_stops_when_cancelled(tmp_path: Path) -> None:
    """verify() returns False as soon as its cancel check says so."""
    target = tmp_path / "dom.save"
    write_save(target, os.urandom(3 << 20))
    with SaveFileReader(str(target), "test") as reader:
        assert reader.verify(cancelled=lambda: True) is False


def test_missing_file_and_directory_are_refused(tmp_path: Path) -> None:
    """A path with no file, or a directory, is named in the error."""
    with pytest.raises(InvalidArgError, match="does not exist"):
        SaveFileReader(str(tmp_path / "nope"), "test")
    with pytest.raises(InvalidArgError, match="is a directory"):
        SaveFileReader(str(tmp_path), "test")


def test_check_target_refuses_missing_and_unusable_places(tmp_path: Path) -> None:
    """A target in a missing directory, under a file, or that is a directory is refused."""
    with pytest.raises(InvalidArgError, match="does not exist"):
        check_target(str(tmp_path / "no" / "x.save"), "a save")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(InvalidArgError, match="does not exist"):
        check_target(str(blocker / "x.save"), "a save")
    with pytest.raises(InvalidArgError, match="is a directory"):
        check_target(str(tmp_path), "a save")
    check_target(str(tmp_path / "ok.save"), "a save")


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs of this test's own, filled up (needs the right to mount: root)."""
    mountpoint = tmp_path / "full"
    mountpoint.mkdir()
    with tmpfs(mountpoint, "size=64k,mode=0700", "a small tmpfs to fill up"):
        with open(mountpoint / "filler", "wb", buffering=0) as filler, contextlib.suppress(OSError):
            while True:
                filler.write(b"\0" * 4096)
        yield mountpoint


def test_full_disk_is_an_operation_failure(full_disk: Path) -> None:
    """Writing to a full disk raises OperationFailedError naming ENOSPC and leaves nothing."""

    def fill(target: Path) -> None:
        with AtomicFile(str(target)) as out:
            for _ in range(64):
                out.write(b"x" * 4096)
            out.commit()

    with pytest.raises(OperationFailedError, match="No space left"):
        fill(full_disk / "x")
    assert sorted(os.listdir(full_disk)) == ["filler"]


@pytest.mark.timeout(10)
def test_a_fifo_is_refused_at_once_as_a_save_file(tmp_path: Path) -> None:
    """Reading a FIFO would wait for a writer forever: the reader refuses it at once."""
    fifo = tmp_path / "pipe.save"
    os.mkfifo(fifo)
    with pytest.raises(InvalidArgError, match="FIFO"):
        SaveFileReader(str(fifo), "test")


def test_a_save_over_an_older_one_keeps_its_mode(tmp_path: Path) -> None:
    """A save replacing an older save file keeps that file's permission bits."""
    target = tmp_path / "dom.save"
    write_save(target, b"old")
    target.chmod(0o644)
    write_save(target, b"new image")
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    with SaveFileReader(str(target), "test") as reader:
        assert reader.header.image_length == len(b"new image")


def test_verify_hands_every_piece_of_the_image_to_its_sink(tmp_path: Path) -> None:
    """verify(sink=...) reads the image once, checking and handing it over together."""
    target = tmp_path / "dom.save"
    image = os.urandom(2 * 1024 * 1024 + 5)
    write_save(target, image)
    kept = bytearray()
    with SaveFileReader(str(target), "test") as reader:
        assert reader.verify(sink=kept.extend)
    assert bytes(kept) == image


def test_savefile_exports_only_its_own_names() -> None:
    """`partial_name` belongs to `virtjob.files`; savefile re-exported it for nobody."""
    assert "partial_name" not in savefile.__all__
    assert not hasattr(savefile, "partial_name")
    assert all(hasattr(savefile, name) for name in savefile.__all__)
