"""The HTTP/JSON API of virtjobd: FastAPI routes over a `Service`.

Routes (all under ``/v1``; see docs/daemon.md for the full table):

- ``/v1/version``; ``/v1/jobs`` (every job, ``?host=`` to filter) and ``/v1/jobs/{id}``
  with ``/cancel``, ``/wait?timeout=`` (long poll), ``/events?interval=`` (server-sent
  events) and ``DELETE``;
- ``/v1/hosts/{driver}/{instance}/...``: the hosted driver ``driver:///instance``; its
  domains, networks and jobs. The request's query parameters are the driver's URI parameters.

Errors are ``{"code", "message"}`` (plus ``line``/``column`` for XML errors) with the status
`status_for` gives. Job calls answer 202 with the job. Handlers that call a driver are plain
``def`` functions (run in the thread pool, a driver may block); job reads are ``async``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

import virtjob
from virtjob.drivers.base import DomainRef, NetworkRef
from virtjob.drivers.remote import wire
from virtjob.errors import ErrorCode, InvalidArgError, NoSupportError, VirtError
from virtjob.jobs import Job
from virtjob.jobs.local import hold_new_jobs
from virtjob.paths import printable

from .gate import FastPath, Gate, Receive, Scope, Send
from .hosts import Hosted, restate
from .models import (
    DomainInfoModel,
    ErrorModel,
    HostModel,
    JobModel,
    NetworkInfoModel,
    NotTextError,
    PathBody,
    RefModel,
    ShutdownBody,
    VersionModel,
    XmlBody,
    XmlModel,
)
from .recorder import Channel, Recorder
from .service import Service

log = logging.getLogger("virtjob.daemon")

MAX_WAIT = 60.0
"""Longest long-poll a client may ask for, in seconds."""
KEEPALIVE = 15.0
"""Seconds between two keep-alive comments on a quiet event stream."""
MAX_INTERVAL = 60.0
"""Longest coalescing interval of an event stream, in seconds."""
_QUERY_MEANING = {
    "timeout": f"a number of seconds from 0 to {MAX_WAIT:g}",
    "interval": f"a number of seconds from 0 to {MAX_INTERVAL:g}",
}
"""What the numeric query parameters take, for the message refusing another value."""

_STATUS: dict[ErrorCode, int] = {
    ErrorCode.NO_DOMAIN: 404,
    ErrorCode.NO_NETWORK: 404,
    ErrorCode.NO_JOB: 404,
    ErrorCode.INVALID_ARG: 400,
    ErrorCode.XML_ERROR: 400,
    ErrorCode.OPERATION_INVALID: 409,
    ErrorCode.OPERATION_ABORTED: 409,
    ErrorCode.ACCESS_DENIED: 403,
    ErrorCode.AUTH_FAILED: 401,
    ErrorCode.NO_SUPPORT: 501,
    ErrorCode.OPERATION_TIMEOUT: 504,
    ErrorCode.NO_CONNECT: 502,
    ErrorCode.OPERATION_FAILED: 500,
    ErrorCode.INTERNAL_ERROR: 500,
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorModel, "description": description}
    for status, description in (
        (400, "invalid-arg or xml-error: a malformed request, path or document"),
        (401, "auth-failed: missing or wrong bearer token"),
        (403, "access-denied: a path outside the allowed directories"),
        (404, "no-domain, no-network, no-job; no-support for an unknown driver or route"),
        (409, "operation-invalid: not allowed in the current state (e.g. a job runs)"),
        (413, "invalid-arg: request body over the limit"),
        (500, "operation-failed or internal-error"),
        (501, "no-support: the driver lacks this operation"),
    )
}


class UnknownDriverError(NoSupportError):
    """A request names a driver this virtjob lacks: code no-support, but HTTP 404 (no such
    host resource), as opposed to 501 for an operation a real driver does not offer."""

    http_status = 404


def status_for(error: VirtError) -> int:
    """The HTTP status that answers `error`."""
    return getattr(error, "http_status", None) or _STATUS.get(error.code, 500)


def error_response(error: VirtError) -> Response:
    """The JSON answer for `error` (always encodable, see `_error_json`)."""
    return _error_json(wire.error_to_dict(error), status_for(error))


def _error_json(
    data: dict[str, Any], status: int, headers: Mapping[str, str] | None = None
) -> Response:
    """An error answer: `data` with its strings made `printable`, never a failure itself."""
    safe = {
        key: printable(value) if isinstance(value, str) else value for key, value in data.items()
    }
    return Response(
        _dumps(safe), status_code=status, media_type="application/json", headers=headers
    )


_ENCODER = json.JSONEncoder(separators=(",", ":"))
"""`json.dumps(data, separators=(",", ":"))`, without building an encoder for every call."""


def _dumps(data: Any) -> bytes:
    return _ENCODER.encode(data).encode()


def _json(data: Any, status: int = 200) -> Response:
    return Response(_dumps(data), status_code=status, media_type="application/json")


def _virt_error_answer(exc: VirtError) -> Response:
    if status_for(exc) >= 500:
        log.error("request failed: %s: %s", type(exc).__name__, exc)
    return error_response(exc)


Driver = Annotated[str, Path(description="Driver name, e.g. 'test' or 'qemu'.", examples=["test"])]
Instance = Annotated[
    str, Path(description="Host instance, e.g. 'default' or 'session'.", examples=["default"])
]
Key = Annotated[str, Path(description="Name or UUID.", examples=["test"])]
JobId = Annotated[str, Path(description="Job id.")]


def create_app(service: Service) -> Gate:
    """Build the ASGI application for `service`: FastAPI behind the `Gate`."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        service.recorder.attach_loop(asyncio.get_running_loop())
        yield

    app = FastAPI(
        lifespan=lifespan,
        title="virtjobd",
        version=virtjob.__version__,
        summary="Virtual machines and networks managed through asynchronous, cancellable jobs.",
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.service = service
    _install_error_handlers(app)
    api = APIRouter(prefix=wire.API_PREFIX, responses=_ERRORS)
    _job_routes(api, service)
    _host_routes(api, service)
    app.include_router(api)

    return Gate(
        app, service.settings.token, service.settings.max_body, _fast_job_get(service.recorder)
    )


def _install_error_handlers(app: FastAPI) -> None:
    async def virt_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, VirtError)
        return _virt_error_answer(exc)

    async def validation(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        problems = []
        for item in exc.errors()[:5]:
            if item.get("type") == "json_invalid":
                reason = item.get("ctx", {}).get("error", "invalid JSON")
                problems.append(f"the body is not valid JSON ({reason})")
                continue
            cause = item.get("ctx", {}).get("error")
            if isinstance(cause, NotTextError):  # says which field and what to do itself
                problems.append(str(cause))
                continue
            loc = item.get("loc", ())
            if len(loc) == 2 and loc[0] == "query" and loc[1] in _QUERY_MEANING:
                problems.append(
                    f"{loc[1]} must be {_QUERY_MEANING[loc[1]]}, not {item.get('input')!r}"
                )
                continue
            where = ".".join(str(part) for part in loc if part != "body")
            problems.append(f"{where or 'body'}: {item.get('msg', 'invalid')}")
        return error_response(InvalidArgError("malformed request: " + "; ".join(problems)))

    async def http_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = {401: "auth-failed", 403: "access-denied", 404: "no-support", 405: "no-support"}
        return _error_json(
            {
                "code": code.get(exc.status_code, "invalid-arg"),
                "message": f"{exc.detail}: see /openapi.json for the routes of this API",
            },
            exc.status_code,
            exc.headers,
        )

    async def unexpected(_request: Request, exc: Exception) -> Response:
        log.error("unexpected error in a request handler", exc_info=exc)
        return _error_json(
            {
                "code": "internal-error",
                "message": f"virtjobd failed unexpectedly ({type(exc).__name__}: {exc});"
                f" this is a bug, see the daemon's log",
            },
            500,
        )

    app.add_exception_handler(VirtError, virt_error)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)


# -- jobs ---------------------------------------------------------------------------------


def _job_routes(api: APIRouter, service: Service) -> None:
    recorder = service.recorder

    @api.get("/version", response_model=VersionModel, tags=["daemon"])
    async def version() -> Response:
        """The daemon's version and the hosts it has open."""
        return _json(
            {"version": virtjob.__version__, "api": "v1", "hosts": service.hosts.open_hosts()}
        )

    @api.get("/jobs", response_model=list[JobModel], tags=["jobs"])
    def list_jobs(
        host: Annotated[str | None, Query(description="Only this host's jobs.")] = None,
    ) -> Response:
        """Every job the daemon knows (live and recorded), oldest first."""
        return _json(recorder.list_payloads(host))

    @api.get("/jobs/{job_id}", response_model=JobModel, tags=["jobs"])
    async def get_job(job_id: JobId) -> Response:
        """The job's latest info, and its result or error once final."""
        return _json(recorder.payload(job_id))

    @api.post("/jobs/{job_id}/cancel", response_model=JobModel, tags=["jobs"])
    async def cancel_job(job_id: JobId) -> Response:
        """Ask the job to stop; returns at once (a no-op on a final job)."""
        return _json(recorder.cancel(job_id))

    @api.delete("/jobs/{job_id}", status_code=204, tags=["jobs"])
    def destroy_job(job_id: JobId) -> Response:
        """Forget a final job; 409 operation-invalid while it runs."""
        recorder.destroy(job_id)
        return Response(status_code=204)

    @api.get("/jobs/{job_id}/wait", response_model=JobModel, tags=["jobs"])
    async def wait_job(
        job_id: JobId,
        timeout: Annotated[
            float, Query(ge=0, le=MAX_WAIT, description="Seconds to wait at most.")
        ] = 30.0,
    ) -> Response:
        """Long poll: answer as soon as the job is final, or after `timeout` seconds.

        The answer is the job either way: look at ``info.state`` to know which.
        """
        return _json(await recorder.wait(job_id, timeout))

    @api.get(
        "/jobs/{job_id}/events",
        tags=["jobs"],
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}, "description": "SSE stream"}},
    )
    async def job_events(
        job_id: JobId,
        interval: Annotated[
            float,
            Query(ge=0, le=MAX_INTERVAL, description="Coalesce changes closer than this (s)."),
        ] = 0.0,
    ) -> Response:
        """Server-sent events: one ``info`` event per change of the job, the last one final.

        Each event's data is the job's info (as in ``GET /jobs/{id}``'s ``info``).
        """
        tracked = recorder.get(job_id)
        if tracked is None:
            payload = recorder.payload(job_id)  # NoJobError if unknown
            events: AsyncIterator[bytes] = _single_event(payload["info"])
        else:
            events = recorder.following(
                tracked, _event_stream(tracked.channel, tracked.job, interval)
            )
        return StreamingResponse(
            events,
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )


_JSON_HEADERS = [(b"content-type", b"application/json")]


def _fast_job_get(recorder: Recorder) -> FastPath:
    """``GET /v1/jobs/{id}`` answered in plain ASGI: the hot read of every remote `Job.info()`.

    The same answer as the `get_job` route (which stays, for the schema and as the fallback):
    the same JSON bytes, headers and errors, without FastAPI's routing, dependency solving and
    response classes. Anything else (another method, route or path shape, or an unexpected
    exception, which the route then reports) is left to FastAPI.
    """
    prefix = wire.API_PREFIX + "/jobs/"
    skip = len(prefix)

    async def fast(scope: Scope, receive: Receive, send: Send) -> bool:
        path: str = scope["path"]
        if scope["method"] != "GET" or not path.startswith(prefix):
            return False
        job_id = path[skip:]
        if not job_id or "/" in job_id or scope.get("root_path"):
            return False
        try:
            body = _dumps(recorder.payload(job_id))
        except VirtError as exc:
            await _virt_error_answer(exc)(scope, receive, send)
            return True
        except Exception:
            return False  # FastAPI runs the route again and reports it as usual
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(len(body)).encode()), *_JSON_HEADERS],
            }
        )
        await send({"type": "http.response.body", "body": body})
        return True

    return fast


def _final_now(job: Job) -> bool:
    try:
        return job.info().state.terminal
    except VirtError:
        return True


def _event(info: dict[str, Any], seq: int) -> bytes:
    data = _ENCODER.encode(info)
    return f"event: info\nid: {seq}\ndata: {data}\n\n".encode()


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
        yield _event(wire.info_to_dict(info), seen)
        if info.state.terminal:
            return
        not_before = loop.time() + interval


# -- hosts --------------------------------------------------------------------------------


def _host_routes(api: APIRouter, service: Service) -> None:  # noqa: PLR0915 - one route table
    hosts, recorder, policy = service.hosts, service.recorder, service.policy
    prefix = "/hosts/{driver}/{instance}"

    def params_of(request: Request) -> dict[str, str]:
        params: dict[str, str] = {}
        for key, value in request.query_params.multi_items():
            if key in params:
                raise InvalidArgError(f"query parameter {key!r} is given more than once")
            params[key] = value
        return params

    def hosted(request: Request, driver: str, instance: str) -> Hosted:
        """The host a read names: open, or its driver's stand-in (never opens a new one)."""
        try:
            return hosts.get(driver, instance, params_of(request), change=False)
        except NoSupportError as exc:
            raise UnknownDriverError(exc.message) from exc

    @contextlib.contextmanager
    def changing(request: Request, driver: str, instance: str) -> Iterator[Hosted]:
        """The host a change request names, opened if needed; closed again if the request
        fails and leaves it as fresh as it was (`Hosts.changing`)."""
        params = params_of(request)
        with contextlib.ExitStack() as stack:
            try:
                host = stack.enter_context(hosts.changing(driver, instance, params))
            except NoSupportError as exc:
                raise UnknownDriverError(exc.message) from exc
            yield host

    @contextlib.contextmanager
    def reading(request: Request, driver: str, instance: str) -> Iterator[Hosted]:
        """The host for a read: open, or its driver's stand-in (errors name the host)."""
        host = hosted(request, driver, instance)
        try:
            yield host
        except VirtError as exc:
            changed = restate(exc, host.stand_in, host.host)
            if changed is exc:
                raise
            raise changed from exc

    def started(host: Hosted, start: Callable[[], Job], target: str | None = None) -> Response:
        service.check_accepting()
        with hold_new_jobs():  # it runs once recorded; never, if recording fails
            job = start()
            tracked = recorder.track(job, host.host, target)
        return _json(tracked.payload(), 202)

    def ref_json(ref: DomainRef | NetworkRef, status: int = 200) -> Response:
        return _json(wire.ref_to_dict(ref), status)

    @api.get(prefix, response_model=HostModel, tags=["hosts"])
    def host_info(request: Request, driver: Driver, instance: Instance) -> Response:
        """The hosted driver's URI and capabilities (a read: opens no host, see the docs)."""
        with reading(request, driver, instance) as host:
            caps = wire.capabilities_to_dict(host.driver.capabilities())
        return _json({"uri": host.host, "capabilities": caps})

    @api.delete(prefix, status_code=204, tags=["hosts"])
    def close_host(driver: Driver, instance: Instance) -> Response:
        """Close a host that holds nothing a fresh one would not, freeing its --max-hosts
        place (204 also when it is not open); 409 while it has jobs queued or running or
        objects that differ from a fresh host's, or for a well-known host."""
        try:
            hosts.close_host(driver, instance)
        except NoSupportError as exc:
            raise UnknownDriverError(exc.message) from exc
        return Response(status_code=204)

    @api.get(prefix + "/jobs", response_model=list[JobModel], tags=["hosts"])
    def host_jobs(request: Request, driver: Driver, instance: Instance) -> Response:
        """Every job of this host, oldest first."""
        with reading(request, driver, instance) as host:
            return _json(recorder.list_payloads(host.host))

    # -- domains ----------------------------------------------------------------------------

    @api.get(prefix + "/domains", response_model=list[RefModel], tags=["domains"])
    def list_domains(request: Request, driver: Driver, instance: Instance) -> Response:
        """Every domain of the host, running or defined."""
        with reading(request, driver, instance) as host:
            return _json([wire.ref_to_dict(ref) for ref in host.driver.list_domains()])

    @api.post(prefix + "/domains", status_code=201, response_model=RefModel, tags=["domains"])
    def define_domain(
        request: Request, driver: Driver, instance: Instance, body: XmlBody
    ) -> Response:
        """Define a persistent domain from XML (or update a defined one)."""
        with changing(request, driver, instance) as host:
            with hosts.admitting(host, "domain", body.xml):
                ref = host.driver.define_domain(body.xml)
            hosts.remember(host, "domain", ref, host.driver.domain_xml(ref))
            return ref_json(ref, 201)

    @api.post(
        prefix + "/domains/create", status_code=202, response_model=JobModel, tags=["domains"]
    )
    def create_domain(
        request: Request, driver: Driver, instance: Instance, body: XmlBody
    ) -> Response:
        """Job: create and boot a transient domain from XML; the result is the domain."""
        with changing(request, driver, instance) as host, hosts.admitting(host, "domain"):
            return started(host, lambda: host.driver.create_domain_job(body.xml))

    @api.post(
        prefix + "/domains/restore", status_code=202, response_model=JobModel, tags=["domains"]
    )
    def restore_domain(
        request: Request, driver: Driver, instance: Instance, body: PathBody
    ) -> Response:
        """Job: restore a domain from a save file; the result is the running domain."""
        path = policy.check(body.path, "save file")
        with changing(request, driver, instance) as host, hosts.admitting(host, "domain"):
            return started(host, lambda: host.driver.restore_domain_job(path))

    @api.get(prefix + "/domains/{key}", response_model=DomainInfoModel, tags=["domains"])
    def domain_info(request: Request, driver: Driver, instance: Instance, key: Key) -> Response:
        """A snapshot of the domain."""
        with reading(request, driver, instance) as host:
            info = host.driver.domain_info(host.driver.lookup_domain(key))
        return _json(wire.domain_info_to_dict(info))

    @api.get(prefix + "/domains/{key}/xml", response_model=XmlModel, tags=["domains"])
    def domain_xml(request: Request, driver: Driver, instance: Instance, key: Key) -> Response:
        """The domain's XML document."""
        with reading(request, driver, instance) as host:
            return _json({"xml": host.driver.domain_xml(host.driver.lookup_domain(key))})

    @api.delete(prefix + "/domains/{key}", status_code=204, tags=["domains"])
    def undefine_domain(request: Request, driver: Driver, instance: Instance, key: Key) -> Response:
        """Undefine the domain; a running one goes on as a transient domain."""
        with changing(request, driver, instance) as host:
            ref = host.driver.lookup_domain(key)
            host.driver.undefine_domain(ref)
            hosts.remember(host, "domain", ref, None)
            return Response(status_code=204)

    def domain_action(name: str, summary: str) -> None:
        @api.post(
            prefix + "/domains/{key}/" + name,
            status_code=204,
            tags=["domains"],
            name=f"domain_{name}",
            summary=summary,
        )
        def action(request: Request, driver: Driver, instance: Instance, key: Key) -> Response:
            with changing(request, driver, instance) as host:
                ref = host.driver.lookup_domain(key)
                operation: Callable[[DomainRef], None] = getattr(host.driver, f"domain_{name}")
                operation(ref)
                return Response(status_code=204)

    domain_action("destroy", "Stop the domain at once")
    domain_action("suspend", "Pause the domain")
    domain_action("resume", "Resume a paused domain")

    @api.post(
        prefix + "/domains/{key}/shutdown",
        status_code=204,
        tags=["domains"],
        name="domain_shutdown",
        summary="Ask the guest to shut down",
    )
    def shutdown_domain(
        request: Request,
        driver: Driver,
        instance: Instance,
        key: Key,
        body: ShutdownBody | None = None,
    ) -> Response:
        """Press the guest's power button and answer at once; the guest may ignore it.

        With ``force_after``, the host powers the domain off (logged) if it is still running
        that many seconds later; the answer does not wait for it: watch the domain's state.
        """
        with changing(request, driver, instance) as host:
            ref = host.driver.lookup_domain(key)
            force_after = None if body is None else body.force_after
            host.driver.domain_shutdown(ref, force_after)
            return Response(status_code=204)

    @api.post(
        prefix + "/domains/{key}/start", status_code=202, response_model=JobModel, tags=["domains"]
    )
    def start_domain(request: Request, driver: Driver, instance: Instance, key: Key) -> Response:
        """Job: boot the defined domain; the result is the domain."""
        with changing(request, driver, instance) as host:
            ref = host.driver.lookup_domain(key)
            return started(host, lambda: host.driver.start_domain_job(ref))

    @api.post(
        prefix + "/domains/{key}/save", status_code=202, response_model=JobModel, tags=["domains"]
    )
    def save_domain(
        request: Request, driver: Driver, instance: Instance, key: Key, body: PathBody
    ) -> Response:
        """Job: save the running domain to a file and stop it; no result."""
        path = policy.check(body.path, "save file")
        with changing(request, driver, instance) as host:
            ref = host.driver.lookup_domain(key)
            return started(host, lambda: host.driver.save_domain_job(ref, path), path)

    @api.post(
        prefix + "/domains/{key}/dump-core",
        status_code=202,
        response_model=JobModel,
        tags=["domains"],
    )
    def dump_core(
        request: Request, driver: Driver, instance: Instance, key: Key, body: PathBody
    ) -> Response:
        """Job: write the domain's memory to a file; the domain keeps its state; no result."""
        path = policy.check(body.path, "core dump")
        with changing(request, driver, instance) as host:
            ref = host.driver.lookup_domain(key)
            return started(host, lambda: host.driver.dump_core_job(ref, path), path)

    # -- networks ---------------------------------------------------------------------------

    @api.get(prefix + "/networks", response_model=list[RefModel], tags=["networks"])
    def list_networks(request: Request, driver: Driver, instance: Instance) -> Response:
        """Every network of the host, active or defined."""
        with reading(request, driver, instance) as host:
            return _json([wire.ref_to_dict(ref) for ref in host.driver.list_networks()])

    @api.post(prefix + "/networks", status_code=201, response_model=RefModel, tags=["networks"])
    def define_network(
        request: Request, driver: Driver, instance: Instance, body: XmlBody
    ) -> Response:
        """Define a persistent network from XML."""
        with changing(request, driver, instance) as host:
            with hosts.admitting(host, "network", body.xml):
                ref = host.driver.define_network(body.xml)
            hosts.remember(host, "network", ref, host.driver.network_xml(ref))
            return ref_json(ref, 201)

    @api.post(
        prefix + "/networks/create", status_code=202, response_model=JobModel, tags=["networks"]
    )
    def create_network(
        request: Request, driver: Driver, instance: Instance, body: XmlBody
    ) -> Response:
        """Job: create and start a transient network from XML; the result is the network."""
        with changing(request, driver, instance) as host, hosts.admitting(host, "network"):
            return started(host, lambda: host.driver.create_network_job(body.xml))

    @api.get(prefix + "/networks/{key}", response_model=NetworkInfoModel, tags=["networks"])
    def network_info(request: Request, driver: Driver, instance: Instance, key: Key) -> Response:
        """A snapshot of the network."""
        with reading(request, driver, instance) as host:
            info = host.driver.network_info(host.driver.lookup_network(key))
        return _json(wire.network_info_to_dict(info))

    @api.get(prefix + "/networks/{key}/xml", response_model=XmlModel, tags=["networks"])
    def network_xml(request: Request, driver: Driver, instance: Instance, key: Key) -> Response:
        """The network's XML document."""
        with reading(request, driver, instance) as host:
            return _json({"xml": host.driver.network_xml(host.driver.lookup_network(key))})

    @api.delete(prefix + "/networks/{key}", status_code=204, tags=["networks"])
    def undefine_network(
        request: Request, driver: Driver, instance: Instance, key: Key
    ) -> Response:
        """Undefine the network; an active one goes on as a transient network."""
        with changing(request, driver, instance) as host:
            ref = host.driver.lookup_network(key)
            host.driver.undefine_network(ref)
            hosts.remember(host, "network", ref, None)
            return Response(status_code=204)

    @api.post(prefix + "/networks/{key}/destroy", status_code=204, tags=["networks"])
    def destroy_network(request: Request, driver: Driver, instance: Instance, key: Key) -> Response:
        """Stop the network (a transient one disappears)."""
        with changing(request, driver, instance) as host:
            host.driver.network_destroy(host.driver.lookup_network(key))
            return Response(status_code=204)

    @api.post(
        prefix + "/networks/{key}/start",
        status_code=202,
        response_model=JobModel,
        tags=["networks"],
    )
    def start_network(request: Request, driver: Driver, instance: Instance, key: Key) -> Response:
        """Job: start the defined network; the result is the network."""
        with changing(request, driver, instance) as host:
            ref = host.driver.lookup_network(key)
            return started(host, lambda: host.driver.start_network_job(ref))


__all__ = ["create_app", "error_response", "status_for"]
