"""Registering the daemon's routes from the contract's route table (`virtjob.api.routes`).

A handler is registered for one or more *operations*: `Driver` methods (`host_route`, below
`HOST_PREFIX`), `JobDriver` methods (`job_route`) or daemon routes (`daemon_route`). The
method, path and kind of answer come from the table, never from the handler, so the daemon
serves exactly the paths the remote driver sends. From the kind of answer come the success
status (201 for a ref, 202 for a job a host route starts, 204 for nothing, else 200) and the
model that documents it (`virtjob.daemon.models.ANSWERS`; an event stream is documented as
``text/event-stream`` whose items' data is a job's info). A handler adds nothing to that.

Each registered route names the operations it serves in its OpenAPI operation
(``x-virtjob-operations``), and `served` lists them from the OpenAPI document: a test checks
that every `Driver` and `JobDriver` method has its route, at the table's method and path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response, StreamingResponse

from virtjob.api.routes import API_PREFIX, DAEMON_ROUTES, HOST_ROUTES, JOB_ROUTES, Answer, Route

from ..models import ANSWERS, Stream

HOST_PREFIX = "/hosts/{driver}/{instance}"
"""The path template of `virtjob.api.routes.host_base`, below `API_PREFIX`."""
OPERATIONS = "x-virtjob-operations"
"""The OpenAPI key that lists the operations (contract method names) a route serves."""

F = TypeVar("F", bound=Callable[..., Any])


_SUCCESS = {
    200: "Success.",
    201: "Defined: the object's reference.",
    202: "The job it started, as it was before it could run (queued).",
}


def success(
    answer: Answer, *, starts_jobs: bool = False
) -> tuple[int, dict[int | str, dict[str, Any]]]:
    """The success status of a route answering `answer`, and its documentation for
    ``responses=`` (see the module docs)."""
    status = 200
    if answer == "ref":
        status = 201
    elif answer == "nothing":
        status = 204
    elif answer == "job" and starts_jobs:
        status = 202
    model = ANSWERS[answer]
    if model is None:
        return status, {}
    if isinstance(model, Stream):
        return status, {status: {"description": model.description, "content": _stream(model)}}
    return status, {status: {"model": model, "description": _SUCCESS.get(status, "Success.")}}


def _stream(stream: Stream) -> dict[str, Any]:
    """The ``content`` of a `Stream` answer: each item (an OpenAPI 3.2 ``itemSchema``, as
    FastAPI writes one for server-sent events) has JSON data of the stream's item model."""
    data = {
        "type": "string",
        "contentMediaType": "application/json",
        "contentSchema": {"$ref": f"#/components/schemas/{stream.item.__name__}"},
    }
    item = {
        "type": "object",
        "properties": {"data": data, "event": {"type": "string"}, "id": {"type": "string"}},
        "required": ["data"],
    }
    return {stream.media_type: {"itemSchema": item}}


def response_class(answer: Answer) -> type[Response]:
    """The response class a route answering `answer` is registered with: it gives FastAPI
    the media type it documents besides `success`'s (none for a stream, which documents its
    own)."""
    return StreamingResponse if isinstance(ANSWERS[answer], Stream) else JSONResponse


def _register(
    router: APIRouter,
    table: Mapping[str, Route],
    names: tuple[str, ...],
    prefix: str,
    *,
    starts_jobs: bool = False,
    **options: Any,
) -> Callable[[F], F]:
    routes = {table[name] for name in names}  # KeyError: not an operation of the table
    if len(routes) != 1:
        raise ValueError(f"operations {names} do not share one route: {routes}")
    (route,) = routes
    status, responses = success(route.answer, starts_jobs=starts_jobs)
    return router.api_route(
        prefix + route.path,
        methods=[route.method],
        status_code=status,
        response_model=None,
        response_class=response_class(route.answer),
        responses=responses,
        name=names[0],
        openapi_extra={OPERATIONS: list(names)},
        **options,
    )


def host_route(router: APIRouter, *names: str, **options: Any) -> Callable[[F], F]:
    """Register the decorated handler for the `Driver` methods `names` (one route of
    `HOST_ROUTES`, below `HOST_PREFIX`). `options` go to `APIRouter.api_route`."""
    return _register(router, HOST_ROUTES, names, HOST_PREFIX, starts_jobs=True, **options)


def job_route(router: APIRouter, *names: str, **options: Any) -> Callable[[F], F]:
    """Register the decorated handler for the `JobDriver` methods `names` (one route of
    `JOB_ROUTES`)."""
    return _register(router, JOB_ROUTES, names, "", **options)


def daemon_route(
    router: APIRouter, name: str, prefix: str = "", **options: Any
) -> Callable[[F], F]:
    """Register the decorated handler for the daemon route `name` (`DAEMON_ROUTES`, below
    `prefix`)."""
    return _register(router, DAEMON_ROUTES, (name,), prefix, **options)


def served(openapi: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """Every operation the routes of an OpenAPI document (the daemon's ``/openapi.json``)
    serve -> (method, path template below `API_PREFIX`)."""
    out: dict[str, tuple[str, str]] = {}
    for path, operations in openapi.get("paths", {}).items():
        for method, operation in operations.items():
            for name in operation.get(OPERATIONS, ()):
                out[name] = (method.upper(), path.removeprefix(API_PREFIX))
    return out
