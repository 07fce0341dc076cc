"""The save-file format shared by every driver, and its writer and reader.

Layout (little-endian)::

    magic        8 bytes   b"VIRTJOB\\x00"
    version      u32       FORMAT_VERSION
    driver       16 bytes  ASCII name of the driver that wrote it ("test", "qemu"), NUL-padded
    xml_length   u32       bytes of domain XML that follow the header
    image_length u64       bytes of memory image that follow the XML
    checksum     32 bytes  SHA-256 of the XML and the whole image
    <domain XML, UTF-8> <memory image>

A save is written to a hidden partial file beside the target and renamed over the target only
once complete and flushed, so a cancelled or failed save never leaves a partial file at the
target path; the target is opened race-free and may only be a regular file or nothing, and one
writer at a time holds it (`virtjob.files`). `SaveFileReader` opens only regular files, checks
the header on open and the checksum with `verify()` before a restore touches the host.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO, Self

from virtjob.errors import InvalidArgError, OperationFailedError
from virtjob.files import PARTIAL_MARK, Target, check_target, open_source

if TYPE_CHECKING:
    from virtjob.drivers.base import Confinement

__all__ = [
    "CHUNK",
    "FORMAT_VERSION",
    "HEADER_SIZE",
    "MAGIC",
    "PARTIAL_MARK",
    "AtomicFile",
    "SaveFileReader",
    "SaveFileWriter",
    "SaveHeader",
    "check_target",
    "os_failure",
]

MAGIC = b"VIRTJOB\x00"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<8sI16sIQ32s")
HEADER_SIZE = _HEADER.size
MAX_XML_LENGTH = 1 << 20
CHUNK = 1 << 20


def os_failure(action: str, path: str, exc: OSError) -> OperationFailedError:
    """Turn an `OSError` met while writing or reading `path` into an `OperationFailedError`."""
    reason = exc.strerror or str(exc)
    return OperationFailedError(f"{action} {path} failed: {reason}")


class AtomicFile:
    """A file written under a partial name beside its target and renamed to it on `commit()`.

    The target is checked and its directory opened race-free when the file is created (see
    `virtjob.files.Target`): `InvalidArgError` if something other than a regular file is there
    or its directory is missing or read-only, `AccessDeniedError` if it lies outside
    `confinement`, `OperationInvalidError` if another save or dump is writing the target. The
    writer holds the target (its partial file's lock) until it commits or gives up. An
    existing target keeps its owner and mode. Leaving the context without committing removes
    the partial file. Raises `OperationFailedError` for I/O errors (disk full, permission
    denied).
    """

    def __init__(
        self, path: str, *, what: str = "a file", confinement: Confinement | None = None
    ) -> None:
        self.path = path
        self._target = Target(path, what, confinement)
        try:
            fd, self._partial = self._target.create_partial()
        except OSError as exc:
            self._target.close()
            raise os_failure("creating", path, exc) from exc
        except BaseException:
            self._target.close()
            raise
        self.temp_path = os.path.join(self._target.directory, self._partial)
        self.file: BinaryIO = os.fdopen(fd, "wb")
        self.committed = False

    def write(self, data: bytes) -> None:
        """Append `data`."""
        try:
            self.file.write(data)
        except OSError as exc:
            raise os_failure("writing", self.path, exc) from exc

    def commit(self) -> None:
        """Flush to disk and move the file to its target path, with the owner and mode of the
        regular file it replaces. `InvalidArgError` if something else is at the target now,
        `OperationFailedError` if something else is at the partial file's name now (then the
        target is left as it was)."""
        target = self._target
        try:
            self.file.flush()
            existing = target.recheck()
            if existing is not None:
                _take_owner_and_mode(self.file.fileno(), existing)
            os.fsync(self.file.fileno())
            if not target.holds(self.file.fileno()):  # renamed only while locked, and ours
                raise OperationFailedError(
                    f"writing {self.path} failed: its partial file {self.temp_path} was"
                    f" replaced by another file while it was written; {self.path} was left as"
                    f" it was (find out what else writes in {target.directory}, then retry)"
                )
            os.rename(
                self._partial, target.name, src_dir_fd=target.dir_fd, dst_dir_fd=target.dir_fd
            )
        except OSError as exc:
            raise os_failure("writing", self.path, exc) from exc
        self.committed = True
        with contextlib.suppress(OSError):  # the data is written and renamed: the lock goes
            self.file.close()
        with contextlib.suppress(OSError):  # some filesystems refuse fsync on directories
            os.fsync(target.dir_fd)
        target.close()

    def abort(self) -> None:
        """Close and remove the partial file; harmless after `commit()`."""
        if self.committed:
            return
        target = self._target
        with contextlib.suppress(OSError):  # the write that failed already said why
            if not self.file.closed and target.holds(self.file.fileno()):
                os.unlink(self._partial, dir_fd=target.dir_fd)  # while it is locked, and ours
        with contextlib.suppress(OSError):
            self.file.close()
        target.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.abort()


def _take_owner_and_mode(fd: int, existing: os.stat_result) -> None:
    """Give the file `fd` the owner, group and permission bits of `existing`."""
    info = os.fstat(fd)
    if (info.st_uid, info.st_gid) != (existing.st_uid, existing.st_gid):
        try:
            os.fchown(fd, existing.st_uid, existing.st_gid)
        except PermissionError:
            # Only root gives files away: an unprivileged writer keeps what it may (the group).
            with contextlib.suppress(PermissionError):
                os.fchown(fd, -1, existing.st_gid)
    os.fchmod(fd, stat.S_IMODE(existing.st_mode))


class SaveFileWriter(AtomicFile):
    """Writes a save file: the XML first, then the image in any number of pieces."""

    def __init__(
        self,
        path: str,
        driver: str,
        xml: str,
        *,
        what: str = "a save file",
        confinement: Confinement | None = None,
    ) -> None:
        super().__init__(path, what=what, confinement=confinement)
        self._driver = driver
        self._xml = xml.encode("utf-8")
        self._hash = hashlib.sha256(self._xml)
        self.image_length = 0
        try:
            self.write(bytes(HEADER_SIZE))
            self.write(self._xml)
        except BaseException:
            self.abort()
            raise

    def write_image(self, data: bytes | memoryview) -> None:
        """Append a piece of the memory image."""
        self._hash.update(data)
        self.image_length += len(data)
        try:
            self.file.write(data)
        except OSError as exc:
            raise os_failure("writing", self.path, exc) from exc

    def commit(self) -> None:
        """Write the final header, flush, and move the file to its target path."""
        header = _HEADER.pack(
            MAGIC,
            FORMAT_VERSION,
            self._driver.encode("ascii"),
            len(self._xml),
            self.image_length,
            self._hash.digest(),
        )
        try:
            self.file.seek(0)
            self.file.write(header)
        except OSError as exc:
            raise os_failure("writing", self.path, exc) from exc
        super().commit()


@dataclass(frozen=True, slots=True)
class SaveHeader:
    """The decoded header of a save file."""

    version: int
    driver: str
    xml_length: int
    image_length: int
    checksum: bytes


class SaveFileReader:
    """Reads and checks a save file. Opening checks the header and reads the XML.

    Raises `InvalidArgError` for a missing, unreadable, truncated, foreign or corrupted file,
    saying which and what to do.
    """

    def __init__(self, path: str, driver: str, *, confinement: Confinement | None = None) -> None:
        """Open the save file at `path`, written by `driver`; a FIFO or device is refused at
        once, without blocking, and a path outside `confinement` with `AccessDeniedError`."""
        self.path = path
        self._file: BinaryIO = os.fdopen(open_source(path, confinement), "rb")
        try:
            self.header = self._read_header(driver)
            self.xml = self._read_xml()
        except BaseException:
            self.close()
            raise

    def _read_header(self, driver: str) -> SaveHeader:
        raw = self._file.read(HEADER_SIZE)
        if raw[: len(MAGIC)] != MAGIC[: len(raw)] or len(raw) < len(MAGIC):
            raise InvalidArgError(
                f"{self.path} is not a virtjob save file (bad magic); give the path of a file"
                f" written by a save"
            )
        if len(raw) < HEADER_SIZE:
            raise InvalidArgError(f"save file {self.path} is truncated inside its header")
        _, version, raw_driver, xml_length, image_length, checksum = _HEADER.unpack(raw)
        if version != FORMAT_VERSION:
            raise InvalidArgError(
                f"save file {self.path} has format version {version}; this virtjob reads"
                f" version {FORMAT_VERSION}: restore it with the virtjob that saved it"
            )
        writer = raw_driver.rstrip(b"\0").decode("ascii", "replace")
        if writer != driver:
            raise InvalidArgError(
                f"save file {self.path} was written by the {writer!r} driver; restore it"
                f" through a {writer}:// connection, not {driver}://"
            )
        if xml_length == 0 or xml_length > MAX_XML_LENGTH:
            raise InvalidArgError(f"save file {self.path} is corrupted: bad XML length")
        size = os.fstat(self._file.fileno()).st_size
        expected = HEADER_SIZE + xml_length + image_length
        if size < expected:
            raise InvalidArgError(
                f"save file {self.path} is truncated: {size} bytes of {expected};"
                f" it cannot be restored"
            )
        if size > expected:
            raise InvalidArgError(
                f"save file {self.path} is corrupted: {size - expected} unexpected bytes at its end"
            )
        return SaveHeader(version, writer, xml_length, image_length, checksum)

    def _read_xml(self) -> str:
        data = self._file.read(self.header.xml_length)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidArgError(
                f"save file {self.path} is corrupted: its domain XML is not UTF-8"
            ) from exc

    def verify(
        self,
        progress: Callable[[int], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
        sink: Callable[[bytes], None] | None = None,
    ) -> bool:
        """Check the checksum over the XML and the whole image, reading it once.

        Calls `progress(bytes_checked)` along the way and hands each piece of the image to
        `sink`; returns False as soon as `cancelled()` says so, True when the file is intact.
        Raises `InvalidArgError` if it is corrupted.
        """
        digest = hashlib.sha256(self.xml.encode("utf-8"))
        checked = 0
        for chunk in self.image_chunks():
            if cancelled is not None and cancelled():
                return False
            digest.update(chunk)
            if sink is not None:
                sink(chunk)
            checked += len(chunk)
            if progress is not None:
                progress(checked)
        if digest.digest() != self.header.checksum:
            raise InvalidArgError(
                f"save file {self.path} is corrupted: checksum mismatch; it cannot be restored"
            )
        return True

    def image_chunks(self, size: int = CHUNK) -> Iterator[bytes]:
        """Yield the memory image in pieces of up to `size` bytes, from its start."""
        self._file.seek(HEADER_SIZE + self.header.xml_length)
        left = self.header.image_length
        while left > 0:
            chunk = self._file.read(min(size, left))
            if not chunk:
                raise InvalidArgError(f"save file {self.path} is truncated")
            left -= len(chunk)
            yield chunk

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def __enter__(self) -> SaveFileReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
