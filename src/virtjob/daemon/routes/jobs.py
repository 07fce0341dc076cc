"""Job routes (below ``/v1``): the daemon's version, every job, and one job's document,
cancel, long-poll wait, event stream and destroy.

``GET /v1/jobs/{job_id}`` is the hot read of every remote ``Job.info()``: its one handler,
`get_job`, is served by the `Gate` as `JOB_READ`, a `PlainRoute` (not registered with
FastAPI, documented in ``/openapi.json`` all the same).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response, StreamingResponse

import virtjob
from virtjob.api import encode_info
from virtjob.api.routes import API_PREFIX, JOB_ROUTES
from virtjob.errors import VirtError
from virtjob.jobs import Job

from ..answers import body_response, dumps, job_json, jobs_json, json_response, no_content
from ..models import ERRORS, EVENTS
from ..recorder import Channel
from .deps import JobId, ServiceDep
from .plain import PlainRoute
from .table import daemon_route, job_route

MAX_WAIT = 60.0
"""Longest long-poll a client may ask for, in seconds."""
KEEPALIVE = 15.0
"""Seconds between two keep-alive comments on a quiet event stream."""
MAX_INTERVAL = 60.0
"""Longest coalescing interval of an event stream, in seconds."""
QUERY_MEANING = {
    "timeout": f"a number of seconds from 0 to {MAX_WAIT:g}",
    "interval": f"a number of seconds from 0 to {MAX_INTERVAL:g}",
}
"""What the numeric query parameters take, for the message refusing another value."""

router = APIRouter(prefix=API_PREFIX, tags=["jobs"], responses=ERRORS, redirect_slashes=False)


async def get_job(service: ServiceDep, job_id: JobId) -> bytes:
    """The job's document: identity, latest info, its result or error once final, times."""
    return job_json(service.recorder.document(job_id))


@daemon_route(router, "version", tags=["daemon"])
async def version(service: ServiceDep) -> Response:
    """The daemon's version and the hosts it has open."""
    hosts = service.hosts.open_hosts()
    return json_response({"version": virtjob.__version__, "api": "v1", "hosts": hosts})


@daemon_route(router, "all_jobs")
def list_jobs(
    service: ServiceDep,
    host: Annotated[str | None, Query(description="Only this host's jobs.")] = None,
) -> Response:
    """Every job the daemon knows (live and recorded), oldest first."""
    return body_response(jobs_json(service.recorder.documents(host)))


@job_route(router, "job_cancel")
async def cancel_job(service: ServiceDep, job_id: JobId) -> Response:
    """Ask the job to stop; returns at once (a no-op on a final job)."""
    return body_response(job_json(service.recorder.cancel(job_id)))


@job_route(router, "job_destroy")
def destroy_job(service: ServiceDep, job_id: JobId) -> Response:
    """Forget a final job; 409 operation-invalid while it runs."""
    service.recorder.destroy(job_id)
    return no_content()


@job_route(router, "job_wait", "job_add_done_callback")
async def wait_job(
    service: ServiceDep,
    job_id: JobId,
    timeout: Annotated[
        float, Query(ge=0, le=MAX_WAIT, description="Seconds to wait at most.")
    ] = 30.0,
) -> Response:
    """Long poll: answer as soon as the job is final, or after `timeout` seconds.

    The answer is the job either way: look at ``info.state`` to know which.
    """
    return body_response(job_json(await service.recorder.wait(job_id, timeout)))


@job_route(router, "job_watch")
async def job_events(
    service: ServiceDep,
    job_id: JobId,
    interval: Annotated[
        float,
        Query(ge=0, le=MAX_INTERVAL, description="Coalesce changes closer than this (s)."),
    ] = 0.0,
) -> Response:
    """Server-sent events: one ``info`` event per change of the job, the last one final.

    Each event's data is the job's info (as in ``GET /jobs/{id}``'s ``info``).
    """
    recorder = service.recorder
    tracked = recorder.get(job_id)
    if tracked is None:
        document = recorder.document(job_id)  # NoJobError if unknown
        events: AsyncIterator[bytes] = _single_event(encode_info(document.info))
    else:
        events = recorder.following(tracked, _event_stream(tracked.channel, tracked.job, interval))
    return StreamingResponse(
        events,
        media_type=EVENTS.media_type,
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )


JOB_READ = PlainRoute(
    JOB_ROUTES["job_document"],
    get_job,
    ["job_document", "job_info", "job_outcome", "lookup_job"],
    tags=["jobs"],
)
"""``GET /v1/jobs/{job_id}``, served by the `Gate` in plain ASGI (see `PlainRoute`)."""


def _final_now(job: Job) -> bool:
    try:
        return job.info().state.terminal
    except VirtError:
        return True


def _event(info: dict[str, Any], seq: int) -> bytes:
    return b"event: info\nid: %d\ndata: %s\n\n" % (seq, dumps(info))


async def _single_event(info: dict[str, Any]) -> AsyncIterator[bytes]:
    yield _event(info, 0)


async def _event_stream(channel: Channel, job: Job, interval: float) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    seen = -1
    not_before = 0.0
    while True:
        if channel.version == seen and not await channel.changed(seen, KEEPALIVE):
            if _final_now(job) and not channel.info.state.terminal:
                channel.publish(job.info())  # the watcher missed the end (should not happen)
                continue
            yield b": keep-alive\n\n"
            continue
        delay = not_before - loop.time()
        if delay > 0 and not channel.info.state.terminal:
            await channel.terminal(delay)
        seen = channel.version
        info = channel.info
        yield _event(encode_info(info), seen)
        if info.state.terminal:
            return
        not_before = loop.time() + interval
