"""The routes of virtjobd's API, one module per resource, registered from the contract's
route table (`virtjob.api.routes`) by `table`:

- `jobs`: the daemon's version, every job, one job (its document, cancel, wait, events,
  destroy); ``GET /v1/jobs/{job_id}``, the hot read of a remote ``Job.info()``, is
  `jobs.JOB_READ`, a `plain.PlainRoute` the `Gate` serves (in `PLAIN_ROUTES`, not `ROUTERS`);
- `hosts`: a host's capabilities and jobs, closing it; `start_job`, shared by the job routes
  of domains and networks;
- `domains`, `networks`: their objects, actions and jobs;
- `deps`: the lookups they share, as FastAPI dependencies (the service, the URI parameters,
  the host a read or a change names, the domain or network of ``{key}``, a checked path).

`table.served` lists which contract operation (`Driver` or `JobDriver` method) each route
serves.
"""

from __future__ import annotations

from fastapi import APIRouter

from . import domains, hosts, jobs, networks
from .plain import PlainRoute

ROUTERS: tuple[APIRouter, ...] = (jobs.router, hosts.router, domains.router, networks.router)
"""The FastAPI routers of the API."""
PLAIN_ROUTES: tuple[PlainRoute, ...] = (jobs.JOB_READ,)
"""The routes the `Gate` serves in plain ASGI, before FastAPI (their only server path)."""

__all__ = ["PLAIN_ROUTES", "ROUTERS"]
