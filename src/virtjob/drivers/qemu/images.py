"""Disk images on a confined host: opened race-free, checked by their header, handed to QEMU
as file descriptors.

An image format's header can name other files: a qcow2 image its backing file and its external
data file, a vmdk its extents. QEMU opens those by itself, so on a confined host an image in an
allowed directory could make QEMU read or write any file the daemon may reach. A confined host
therefore allows only ``raw`` and ``qcow2`` images, opens each one itself (the confined,
symlink-free walk of `virtjob.files.open_source`), refuses a qcow2 image whose header names a
backing file or an external data file, and hands QEMU the open file (``-add-fd`` and
``/dev/fdset/N``, a ``-blockdev`` with ``"backing": null``): QEMU never opens an image by
path. A guest that writes a qcow2 header into its raw disk gains nothing: the header is read
from the file QEMU is given, right before QEMU starts, and QEMU's own image locks keep a
second QEMU off a file another one is writing.
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from virtjob.config import DiskConfig, DomainConfig
from virtjob.drivers.base import Confinement
from virtjob.errors import AccessDeniedError, InvalidArgError
from virtjob.files import open_source

CONFINED_FORMATS = ("raw", "qcow2")
"""The image formats a confined host allows: their headers name no file QEMU would open
(a qcow2 one may, and is refused when it does)."""
QCOW2_MAGIC = b"QFI\xfb"
_QCOW2_HEADER = struct.Struct(">4sIQI")  # magic, version, backing_file_offset, backing_file_size
_QCOW2_INCOMPATIBLE = struct.Struct(">Q")  # incompatible_features, at offset 72 (version 3)
_QCOW2_INCOMPATIBLE_AT = 72
QCOW2_EXTERNAL_DATA_FILE = 1 << 2
"""The qcow2 incompatible-feature bit saying the guest's data lives in another file."""


@dataclass(frozen=True, slots=True)
class OpenImage:
    """A disk image opened for QEMU: the disk it belongs to and the open file."""

    disk: DiskConfig
    fd: int


def describe(name: str, disk: DiskConfig) -> str:
    """How messages name the image of `disk` of domain `name`."""
    return f"domain {name!r}: the image of disk {disk.target!r}, {disk.source},"


def check_format(name: str, disk: DiskConfig) -> None:
    """Refuse (`AccessDeniedError`) an image format a confined host does not allow."""
    if disk.format not in CONFINED_FORMATS:
        raise AccessDeniedError(
            f"{describe(name, disk)} is in format {disk.format!r}, which this host does not"
            f" allow (its header can name other files QEMU would open); use"
            f" {' or '.join(CONFINED_FORMATS)}"
        )


def check_header(name: str, disk: DiskConfig, fd: int) -> None:
    """Check the header of the image open at `fd` for the format `disk` declares.

    Raises `AccessDeniedError` for a format a confined host does not allow, or a qcow2 image
    that names a backing file or an external data file; `InvalidArgError` for a file that is
    not a qcow2 image at all when declared one.
    """
    check_format(name, disk)
    if disk.format != "qcow2":
        return  # raw: QEMU reads no header
    where = describe(name, disk)
    try:
        head = os.pread(fd, _QCOW2_INCOMPATIBLE_AT + _QCOW2_INCOMPATIBLE.size, 0)
    except OSError as exc:
        raise InvalidArgError(f"{where} cannot be read: {exc.strerror}") from exc
    if len(head) < _QCOW2_HEADER.size or head[:4] != QCOW2_MAGIC:
        raise InvalidArgError(
            f"{where} is not a qcow2 image (no qcow2 header); give <driver type='raw'> for a"
            f" raw image, or create it with qemu-img create -f qcow2"
        )
    _, version, backing_offset, backing_size = _QCOW2_HEADER.unpack_from(head)
    if backing_offset or backing_size:
        raise AccessDeniedError(
            f"{where} names a backing file, which this host does not allow (it could be any"
            f" file); give a standalone image (qemu-img convert -O qcow2 makes one)"
        )
    if version >= 3:
        if len(head) < _QCOW2_INCOMPATIBLE_AT + _QCOW2_INCOMPATIBLE.size:
            raise InvalidArgError(f"{where} has a truncated qcow2 header; give a whole image")
        (incompatible,) = _QCOW2_INCOMPATIBLE.unpack_from(head, _QCOW2_INCOMPATIBLE_AT)
        if incompatible & QCOW2_EXTERNAL_DATA_FILE:
            raise AccessDeniedError(
                f"{where} keeps its data in an external data file, which this host does not"
                f" allow (it could be any file); give a standalone image (qemu-img convert"
                f" -O qcow2 makes one)"
            )


def _open(name: str, disk: DiskConfig, confinement: Confinement, writable: bool) -> int:
    return open_source(
        disk.source,
        confinement,
        what=f"the image of disk {disk.target!r} of domain {name!r},",
        hint="give an existing image file (raw or qcow2) in a directory this host may use",
        writable=writable,
    )


def check_image(name: str, disk: DiskConfig, confinement: Confinement) -> None:
    """Check the image of `disk`, if it exists: its format and header (see `check_header`).

    Opened read-only and race-free; a missing image is left for the launch to report.
    Raises what `check_header` and `virtjob.files.open_source` raise.
    """
    check_format(name, disk)
    if not disk.source or not os.path.lexists(disk.source):
        return
    fd = _open(name, disk, confinement, writable=False)
    try:
        check_header(name, disk, fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def open_images(config: DomainConfig, confinement: Confinement) -> Iterator[list[OpenImage]]:
    """Open and check every disk image of `config` for QEMU (read-only for CD-ROMs and
    ``<readonly/>`` disks); the files are closed when the block ends (QEMU has its copies).

    Raises `InvalidArgError` for a missing image or one that is not a regular file, and
    `AccessDeniedError` for one outside `confinement` or whose header `check_header` refuses.
    """
    opened: list[OpenImage] = []
    try:
        for disk in config.disks:
            if not disk.source:
                continue
            writable = not (disk.readonly or disk.device == "cdrom")
            image = OpenImage(disk, _open(config.name, disk, confinement, writable))
            opened.append(image)
            check_header(config.name, disk, image.fd)
        yield opened
    finally:
        for image in opened:
            os.close(image.fd)
