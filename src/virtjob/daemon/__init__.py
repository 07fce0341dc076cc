"""virtjobd: the daemon that serves virtjob hosts over an HTTP/JSON API.

Modules, one job each:

- `cli`: the ``virtjobd`` command line; `main` is the console entry point.
- `server`: uvicorn on our own sockets, graceful shutdown on SIGTERM/SIGINT.
- `listen`: creating the unix (0600) or loopback TCP socket.
- `app`: the FastAPI application; `routes`: its routes, one module per resource;
  `models`: request bodies and the models documenting answers; `answers`: JSON answers and
  the one way an error becomes one.
- `gate`: bearer-token check, body-size limit and request log in front of everything, and
  the plain routes.
- `service`: the daemon's state; `hosts`: hosted drivers and the definitions hook;
  `recorder`: live and recorded jobs; `store`: SQLite persistence; `security`: paths, tokens.

What crosses the wire is `virtjob.api`'s (docs/api.md); the daemon never imports the remote
driver. See docs/daemon.md for the daemon's guarantees.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """Run ``virtjobd`` with `argv` (default: the process arguments); return the exit status."""
    from .cli import main as cli_main

    return cli_main(argv)


__all__ = ["main"]
