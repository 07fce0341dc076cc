"""Running the real ``virtjob`` in subprocesses, in pipes and on pseudo-terminals."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import queue
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

CLI = [sys.executable, "-m", "virtjob.cli"]
DEADLINE = 30.0
FAST = 4 << 30  # bytes/s: saving the 512 MiB domain `test` takes ~0.13 s
SLOW = 16 << 20  # bytes/s: saving `test` would take 32 s; for cancel and interrupt tests
MEDIUM = 256 << 20  # bytes/s: saving `test` takes ~2 s, long enough to print a few lines


def host_uri(rate: int | None = None, name: str | None = None) -> str:
    """A URI naming a fresh in-process test host, optionally with a job rate."""
    uri = f"test:///{name or 'cli-' + uuid.uuid4().hex[:8]}"
    return uri if rate is None else f"{uri}?rate={rate}"


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for a CLI subprocess: no inherited default URI, no colour forcing."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTJOB_DEFAULT_URI", "FORCE_COLOR")}
    env.update(extra)
    return env


@dataclass
class Result:
    """How a CLI process ended."""

    code: int
    out: str
    err: str


def run(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None, timeout: float = 30
) -> Result:
    """Run ``virtjob ARGS`` to the end in pipes."""
    done = subprocess.run(
        [*CLI, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env or cli_env(),
        timeout=timeout,
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr)


class Running:
    """A CLI process in pipes whose output can be awaited line by line while it runs."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [*CLI, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env or cli_env(),
        )
        self._lines: queue.Queue[tuple[str, str | None]] = queue.Queue()
        self._ended = 0
        self.out: list[str] = []
        self.err: list[str] = []
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        self._readers = [
            threading.Thread(target=self._pump, args=("out", self.proc.stdout), daemon=True),
            threading.Thread(target=self._pump, args=("err", self.proc.stderr), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _pump(self, name: str, stream: IO[str]) -> None:
        with stream:
            for line in stream:
                self._lines.put((name, line))
        self._lines.put((name, None))

    def _take(self, timeout: float) -> bool:
        try:
            name, line = self._lines.get(timeout=timeout)
        except queue.Empty:
            return False
        if line is None:
            self._ended += 1
        else:
            (self.out if name == "out" else self.err).append(line)
        return True

    def wait_for(self, marker: str, timeout: float = DEADLINE) -> str:
        """Read output until a line containing `marker` appears; return that line."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for line in (self.out + self.err)[seen:]:
                if marker in line:
                    return line
            seen = len(self.out) + len(self.err)
            left = deadline - time.monotonic()
            if left <= 0 or self._ended == 2 or not self._take(left):
                self.proc.kill()
                self.finish()
                pytest.fail(f"{marker!r} never appeared; out={self.out!r} err={self.err!r}")

    def finish(self, timeout: float = DEADLINE) -> Result:
        """Wait for the process to end; return its exit code and all of its output."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        for reader in self._readers:
            reader.join(timeout)
        while self._take(0):
            pass
        return Result(self.proc.returncode, "".join(self.out), "".join(self.err))


def run_pty(
    args: Sequence[str],
    *,
    on_output: Callable[[bytes, subprocess.Popen[bytes]], None] | None = None,
    timeout: float = DEADLINE,
    columns: int = 120,
) -> tuple[int, str]:
    """Run ``virtjob ARGS`` with stdout and stderr on a pseudo-terminal; read it until EOF.

    `on_output(all_output_so_far, process)` is called after each read, e.g. to send a signal
    once a marker shows. Returns the exit code and the output (ANSI sequences included).
    """
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = cli_env(TERM="xterm-256color", COLUMNS=str(columns))
    proc = subprocess.Popen(
        [*CLI, *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        close_fds=True,
    )
    os.close(slave)
    data = b""
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"no EOF on the terminal within {timeout} s; got {data[-2000:]!r}")
            ready, _, _ = select.select([master], [], [], left)
            if not ready:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every holder of the terminal's slave side has gone
                break
            if not chunk:
                break
            data += chunk
            if on_output is not None:
                on_output(data, proc)
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return code, data.decode("utf-8", "replace")


def write(path: Path, text: str) -> str:
    """Write `text` to `path` and return the path as a string."""
    path.write_text(text)
    return str(path)


WEB_XML = """\
<domain type='test'>
  <name>web</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type>hvm</type></os>
</domain>
"""

LAB_XML = """\
<network>
  <name>lab</name>
  <bridge name='virbr9'/>
  <forward mode='nat'/>
  <ip address='10.9.0.1' netmask='255.255.255.0'/>
</network>
"""


@dataclass
class Daemon:
    """A running virtjobd: its socket, and the directory it lets clients save into."""

    socket: Path
    files: Path

    def uri(self, rate: int | None = None) -> str:
        """A URI naming a fresh test host inside this daemon."""
        query = f"socket={self.socket}" + ("" if rate is None else f"&rate={rate}")
        return f"test+unix:///cli-{uuid.uuid4().hex[:8]}?{query}"


@contextlib.contextmanager
def running_daemon(**env: str) -> Iterator[Daemon]:
    """Start virtjobd on a short temporary socket (`env` added to its environment, e.g. a
    ``VIRTJOB_STATE_DIR`` for its QEMU host); stop it (SIGTERM) afterwards."""
    base = Path(tempfile.mkdtemp(prefix="vj-", dir="/tmp"))  # short: unix socket paths are
    sock, files = base / "sock", base / "files"
    files.mkdir()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "virtjob.daemon",
            "--state-dir",
            str(base / "state"),
            "--listen",
            f"unix:{sock}",
            "--allow-dir",
            str(files),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(**env),
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # the socket listens once virtjobd says it serves
            if "virtjobd: serving" in line:
                break
        else:
            pytest.fail(f"virtjobd did not start (exit {proc.wait()})")
        yield Daemon(sock, files)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
        shutil.rmtree(base, ignore_errors=True)
