"""Where virtjob keeps its files by default: the one place these defaults are written.

The state directory holds the QEMU driver's definitions and guests' files and virtjobd's
database; virtjobd's unix socket lies in it. ``$VIRTJOB_STATE_DIR`` chooses another one. The
environment is read here only, when a default is asked for; whoever needs a state directory
(the QEMU driver, virtjobd, the remote driver's default socket) is handed it explicitly, and
nothing in virtjob ever changes the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

STATE_DIR_ENV = "VIRTJOB_STATE_DIR"
"""The environment variable that names the state directory."""
SOCKET_NAME = "virtjobd.sock"
"""The name of virtjobd's unix socket inside its state directory."""


def state_dir(environ: Mapping[str, str] | None = None) -> str:
    """The state directory: ``$VIRTJOB_STATE_DIR`` (made absolute) if set and not empty,
    else ``~/.local/share/virtjob``. Raises nothing; the directory may not exist yet."""
    configured = (os.environ if environ is None else environ).get(STATE_DIR_ENV)
    if configured:
        return os.path.abspath(os.path.expanduser(configured))
    return os.path.join(os.path.expanduser("~"), ".local", "share", "virtjob")


def daemon_socket(directory: str | None = None) -> str:
    """virtjobd's default unix socket: ``SOCKET_NAME`` in `directory` (default: `state_dir`)."""
    return os.path.join(state_dir() if directory is None else directory, SOCKET_NAME)
