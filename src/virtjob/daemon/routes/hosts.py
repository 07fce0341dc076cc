"""Host routes (below ``/v1/hosts/{driver}/{instance}``): the hosted driver's capabilities,
its jobs, and closing it. The request's query parameters are the driver's URI parameters."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter
from fastapi.responses import Response

from virtjob.api import API_PREFIX
from virtjob.api.objects import encode_capabilities
from virtjob.errors import NoSupportError
from virtjob.jobs import Job
from virtjob.jobs.local import hold_new_jobs

from ..answers import (
    UnknownDriverError,
    body_response,
    job_json,
    jobs_json,
    json_response,
    no_content,
)
from ..hosts import Hosted
from ..models import ERRORS
from ..service import Service
from .deps import DriverName, Instance, ReadHost, ServiceDep
from .table import HOST_PREFIX, daemon_route, host_route

router = APIRouter(prefix=API_PREFIX, tags=["hosts"], responses=ERRORS, redirect_slashes=False)


def start_job(service: Service, host: Hosted, start: Callable[[], Job]) -> Response:
    """Start a job with `start()` on `host`, record it, and answer 202 with its document.

    The job runs only once recorded (`hold_new_jobs`), and never if recording fails
    (`OperationFailedError`). The answer is built inside the hold too, so it always shows the
    job queued (it cannot have started, ended or been let go yet): what a client learns from
    it is the job's id, kind and subject. `OperationInvalidError` once the daemon is shutting
    down.
    """
    service.check_accepting()
    with hold_new_jobs():
        job = start()
        service.recorder.track(job, host.host)
        answer = job_json(job.document())
    return body_response(answer, 202)


@host_route(router, "capabilities")
def host_info(host: ReadHost) -> Response:
    """The hosted driver's URI and capabilities (a read: opens no host, see the docs)."""
    capabilities = encode_capabilities(host.driver.capabilities())
    return json_response({"uri": host.host, "capabilities": capabilities})


@daemon_route(router, "close_host", HOST_PREFIX)
def close_host(service: ServiceDep, driver: DriverName, instance: Instance) -> Response:
    """Close a host that holds nothing a fresh one would not, freeing its --max-hosts
    place (204 also when it is not open); 409 while it has jobs queued or running or
    objects that differ from a fresh host's, or for a well-known host."""
    try:
        service.hosts.close_host(driver, instance)
    except NoSupportError as exc:
        raise UnknownDriverError(exc.message) from exc
    return no_content()


@host_route(router, "list_jobs")
def host_jobs(service: ServiceDep, host: ReadHost) -> Response:
    """Every job of this host, oldest first."""
    return body_response(jobs_json(service.recorder.documents(host.host)))
