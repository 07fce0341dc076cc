"""Listening sockets for virtjobd: ``unix:PATH`` or ``tcp:HOST:PORT``, created safely.

- A unix socket is bound under a umask of 0177, so it is mode 0600 from the moment it exists
  (no window where another user could connect), and then checked. A stale socket file left by
  a dead daemon is replaced; a live one (another daemon answers) is refused, as is any other
  kind of file at the path.
- A TCP socket binds only to a loopback address unless ``allow_any`` (``--listen-any``) is set.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import stat
from dataclasses import dataclass

from virtjob.errors import InvalidArgError, OperationInvalidError

BACKLOG = 1024


@dataclass(frozen=True, slots=True)
class ListenSpec:
    """Where to listen: a unix socket path, or a TCP host and port."""

    kind: str
    path: str = ""
    host: str = ""
    port: int = 0

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp:{host}:{self.port}"


def parse_listen(text: str) -> ListenSpec:
    """Parse ``unix:PATH`` or ``tcp:HOST:PORT``; `InvalidArgError` if malformed."""
    kind, _, rest = text.partition(":")
    if kind == "unix" and rest:
        return ListenSpec("unix", path=os.path.abspath(rest))
    if kind == "tcp":
        host, _, port = rest.rpartition(":")
        host = host.strip("[]")
        if host and port.isdigit() and 0 <= int(port) < 65536:
            return ListenSpec("tcp", host=host, port=int(port))
    raise InvalidArgError(
        f"--listen {text!r} is malformed: use unix:/path/to/socket or tcp:127.0.0.1:16509"
    )


def is_loopback(host: str) -> bool:
    """True when every address `host` resolves to is a loopback address."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return False
    return bool(infos) and all(
        ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos
    )


def open_socket(spec: ListenSpec, *, allow_any: bool = False) -> socket.socket:
    """Create, bind and listen on the socket `spec` describes.

    Raises `InvalidArgError` for a non-loopback TCP host without `allow_any`, and
    `OperationInvalidError` when the address is taken (another daemon runs) or unusable.
    """
    if spec.kind == "unix":
        return _unix_socket(spec.path)
    if not allow_any and not is_loopback(spec.host):
        raise InvalidArgError(
            f"refusing to listen on {spec}: {spec.host!r} is not a loopback address, so"
            f" other machines could reach the daemon; pass --listen-any if that is what you"
            f" want (with --tls-cert/--tls-key so the token does not travel in clear)"
        )
    family = socket.AF_INET6 if ":" in spec.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((spec.host, spec.port))
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise OperationInvalidError(f"cannot listen on {spec}: {exc.strerror or exc}") from exc
    sock.setblocking(False)
    return sock


def _unix_socket(path: str) -> socket.socket:
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        raise OperationInvalidError(
            f"cannot listen on unix:{path}: directory {directory} does not exist; create it"
            f" or choose another path"
        )
    _remove_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        sock.bind(path)
    except OSError as exc:
        sock.close()
        raise OperationInvalidError(f"cannot listen on unix:{path}: {exc.strerror}") from exc
    finally:
        os.umask(old_umask)
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:  # pragma: no cover - the umask makes this impossible
        sock.close()
        os.unlink(path)
        raise OperationInvalidError(f"unix:{path} was created with mode {mode:o}, not 0600")
    sock.listen(BACKLOG)
    sock.setblocking(False)
    return sock


def _remove_stale(path: str) -> None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise OperationInvalidError(
            f"cannot listen on unix:{path}: a file that is not a socket is in the way;"
            f" move it or choose another --listen path"
        )
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except OSError:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # a dead daemon's socket
        return
    finally:
        probe.close()
    raise OperationInvalidError(
        f"cannot listen on unix:{path}: another virtjobd is already listening there;"
        f" stop it first or choose another --listen path"
    )


def socket_inode(spec: ListenSpec) -> int | None:
    """The inode of a unix socket's file (to recognise it at removal), None for TCP."""
    if spec.kind != "unix":
        return None
    return os.stat(spec.path).st_ino


def remove_socket(spec: ListenSpec, inode: int | None) -> None:
    """Remove a unix socket's file if it is still ours (the inode `socket_inode` gave)."""
    if spec.kind != "unix" or inode is None:
        return
    with contextlib.suppress(OSError):
        if os.stat(spec.path).st_ino == inode:
            os.unlink(spec.path)
