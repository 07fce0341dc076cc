"""The save-file format shared by every driver, and its writer and reader.

Layout (little-endian)::

    magic        8 bytes   b"VIRTJOB\\x00"
    version      u32       FORMAT_VERSION
    driver       16 bytes  ASCII name of the driver that wrote it ("test", "qemu"), NUL-padded
    xml_length   u32       bytes of domain XML that follow the header
    image_length u64       bytes of memory image that follow the XML
    checksum     32 bytes  SHA-256 of the XML and the whole image
    <domain XML, UTF-8> <memory image>

A save is written to a hidden temporary file beside the target (`partial_name`) and renamed
over the target only once complete and flushed, so a cancelled or failed save never leaves a
partial file at the target path. `SaveFileReader` checks the header on open and the checksum
with `verify()` before a restore touches the host.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import BinaryIO, Self

from virtjob.errors import InvalidArgError, OperationFailedError

MAGIC = b"VIRTJOB\x00"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<8sI16sIQ32s")
HEADER_SIZE = _HEADER.size
MAX_XML_LENGTH = 1 << 20
PARTIAL_MARK = ".virtjob-partial-"
CHUNK = 1 << 20


def partial_name(path: str) -> str:
    """Return a fresh hidden temporary name beside `path` for writing it."""
    directory, base = os.path.split(path)
    return os.path.join(directory, f".{base}{PARTIAL_MARK}{secrets.token_hex(4)}")


def check_target(path: str, what: str) -> None:
    """Refuse a target path whose directory is missing or not writable, or that is a directory.

    Raises `InvalidArgError` naming the path and what to do.
    """
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        raise InvalidArgError(
            f"cannot write {what} to {path}: directory {directory} does not exist;"
            f" create it or choose another path"
        )
    if not os.access(directory, os.W_OK | os.X_OK):
        raise InvalidArgError(
            f"cannot write {what} to {path}: directory {directory} is not writable;"
            f" choose a directory you can write to"
        )
    if os.path.isdir(path):
        raise InvalidArgError(f"cannot write {what} to {path}: it is a directory; name a file")


def os_failure(action: str, path: str, exc: OSError) -> OperationFailedError:
    """Turn an `OSError` met while writing or reading `path` into an `OperationFailedError`."""
    reason = exc.strerror or str(exc)
    return OperationFailedError(f"{action} {path} failed: {reason}")


class AtomicFile:
    """A file written under a temporary name and renamed to its target on `commit()`.

    Leaving the context without committing removes the temporary file. Raises
    `OperationFailedError` for I/O errors (disk full, permission denied).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.temp_path = partial_name(path)
        try:
            fd = os.open(self.temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise os_failure("creating", path, exc) from None
        self.file: BinaryIO = os.fdopen(fd, "wb")
        self.committed = False

    def write(self, data: bytes) -> None:
        """Append `data`."""
        try:
            self.file.write(data)
        except OSError as exc:
            raise os_failure("writing", self.path, exc) from None

    def commit(self) -> None:
        """Flush to disk and move the file to its target path."""
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            os.replace(self.temp_path, self.path)
        except OSError as exc:
            raise os_failure("writing", self.path, exc) from None
        self.committed = True
        _fsync_directory(os.path.dirname(self.path))

    def abort(self) -> None:
        """Close and remove the temporary file; harmless after `commit()`."""
        if self.committed:
            return
        with contextlib.suppress(OSError):  # the write that failed already said why
            self.file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.temp_path)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.abort()


def _fsync_directory(directory: str) -> None:
    try:
        fd = os.open(directory or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the rename is done
    finally:
        os.close(fd)


class SaveFileWriter(AtomicFile):
    """Writes a save file: the XML first, then the image in any number of pieces."""

    def __init__(self, path: str, driver: str, xml: str) -> None:
        super().__init__(path)
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
            raise os_failure("writing", self.path, exc) from None

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
            raise os_failure("writing", self.path, exc) from None
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

    def __init__(self, path: str, driver: str) -> None:
        self.path = path
        try:
            self._file: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed by close()
        except FileNotFoundError:
            raise InvalidArgError(
                f"save file {path} does not exist; give the path a save wrote"
            ) from None
        except IsADirectoryError:
            raise InvalidArgError(
                f"save file {path} is a directory; give the path of the file a save wrote"
            ) from None
        except OSError as exc:
            raise InvalidArgError(f"cannot read save file {path}: {exc.strerror}") from None
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
        except UnicodeDecodeError:
            raise InvalidArgError(
                f"save file {self.path} is corrupted: its domain XML is not UTF-8"
            ) from None

    def verify(
        self,
        progress: Callable[[int], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> bool:
        """Check the checksum over the XML and the whole image.

        Calls `progress(bytes_checked)` along the way; returns False as soon as `cancelled()`
        says so, True when the file is intact. Raises `InvalidArgError` if it is corrupted.
        """
        digest = hashlib.sha256(self.xml.encode("utf-8"))
        checked = 0
        for chunk in self.image_chunks():
            if cancelled is not None and cancelled():
                return False
            digest.update(chunk)
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
