"""Mounts a test makes inside its own temporary directory: small file systems and bind mounts.

Tests use them to meet a full disk, a read-only file system or a second path to a directory
for real. `mounted` skips the test, saying why, where this process may not mount (not root),
and always unmounts afterwards, so no mount outlives the test.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def mounted(onto: Path, *args: str, what: str) -> Iterator[Path]:
    """Run ``mount ARGS... onto`` for the block; yield `onto`.

    `what` says in the skip message what could not be made (e.g. "an 8 MiB tmpfs"). The mount
    is undone when the block ends, detached lazily if something still holds it busy.
    """
    done = subprocess.run(["mount", *args, str(onto)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount {what} here: {done.stderr.strip()}")
    try:
        yield onto
    finally:
        if subprocess.run(["umount", str(onto)], capture_output=True, check=False).returncode:
            subprocess.run(["umount", "--lazy", str(onto)], check=True)


def tmpfs(onto: Path, options: str, what: str) -> contextlib.AbstractContextManager[Path]:
    """A tmpfs mounted on `onto` with mount `options` (e.g. ``size=8m,mode=0700``)."""
    return mounted(onto, "-t", "tmpfs", "-o", options, "tmpfs", what=what)


def bind(source: Path, onto: Path) -> contextlib.AbstractContextManager[Path]:
    """`source` bind-mounted on `onto`: a second path to the same directory."""
    return mounted(onto, "--bind", str(source), what=f"a bind mount of {source}")
