"""virtjobd: the daemon that serves virtjob hosts over an HTTP/JSON API.

Modules, one job each:

- `cli`: the ``virtjobd`` command line; `main` is the console entry point.
- `server`: uvicorn on our own sockets, graceful shutdown on SIGTERM/SIGINT.
- `listen`: creating the unix (0600) or loopback TCP socket.
- `app`: the FastAPI routes; `models`: their pydantic request and response models.
- `gate`: bearer-token check and body-size limit, in front of everything.
- `service`: the daemon's state; `hosts`: hosted drivers and the definitions hook;
  `recorder`: live and recorded jobs; `store`: SQLite persistence; `security`: paths, tokens.

See docs/daemon.md for the API and its guarantees.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """Run ``virtjobd`` with `argv` (default: the process arguments); return the exit status."""
    from .cli import main as cli_main

    return cli_main(argv)


__all__ = ["main"]
