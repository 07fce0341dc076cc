"""The HTTP/JSON API of virtjobd: the FastAPI application over a `Service`, behind the `Gate`.

The routes live in `virtjob.daemon.routes`, one module per resource, registered from the
contract's route table (`virtjob.api.routes`); see docs/api.md for the table. Every error
answer, whoever raises it (a route, FastAPI's validation, an unknown path, the `Gate`), is
made by `virtjob.daemon.answers.error_answer`. Handlers that call a driver are plain ``def``
functions (run in the thread pool: a driver may block); job reads are ``async``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

import virtjob
from virtjob.errors import InvalidArgError, VirtError

from .answers import NoRouteError, RequestRefusedError, error_response, unexpected
from .gate import Gate
from .models import NotTextError
from .routes import PLAIN_ROUTES, ROUTERS
from .routes.jobs import QUERY_MEANING
from .service import Service


def create_app(service: Service) -> Gate:
    """Build the ASGI application for `service`: FastAPI behind the `Gate`."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        service.recorder.attach_loop(asyncio.get_running_loop())
        yield

    app = FastAPI(
        lifespan=lifespan,
        redirect_slashes=False,
        title="virtjobd",
        version=virtjob.__version__,
        summary="Virtual machines and networks managed through asynchronous, cancellable jobs.",
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.service = service
    _install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    plain = [route.serve(service) for route in PLAIN_ROUTES]
    return Gate(app, service.settings.token, service.settings.max_body, plain)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document, built once: FastAPI's routes and the `PLAIN_ROUTES` the `Gate`
    serves, without the 422 answers FastAPI documents for its own validation (this API
    answers 400 invalid-arg instead)."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            routes=[*(route.documentation for route in PLAIN_ROUTES), *app.routes],
        )
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                operation.get("responses", {}).pop("422", None)
        schemas = schema.get("components", {}).get("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        app.openapi_schema = schema
    return app.openapi_schema


def _validation_message(exc: RequestValidationError) -> str:
    """What is wrong with a request FastAPI could not validate, field by field."""
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
        if len(loc) == 2 and loc[0] == "query" and loc[1] in QUERY_MEANING:
            problems.append(f"{loc[1]} must be {QUERY_MEANING[loc[1]]}, not {item.get('input')!r}")
            continue
        where = ".".join(str(part) for part in loc if part != "body")
        problems.append(f"{where or 'body'}: {item.get('msg', 'invalid')}")
    return "malformed request: " + "; ".join(problems)


METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
"""The methods a 405's ``Allow`` header may list (`_allowed`)."""


def _allowed(request: Request) -> list[str]:
    """The methods the request's path has: those of every route, FastAPI's and the `Gate`'s
    `PLAIN_ROUTES`, whose path it matches (Starlette's 405 lists only the first such route's,
    and knows nothing of the plain routes)."""
    allowed = set()
    path: str = request.scope["path"]
    for method in METHODS:
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] is Match.FULL for route in request.app.router.routes):
            allowed.add(method)
    allowed.update(route.method for route in PLAIN_ROUTES if route.matches(path))
    return [method for method in METHODS if method in allowed]


def _body_message(cause: ValueError | RecursionError) -> str:
    """What is wrong with a request body the JSON parser refused with `cause` (FastAPI reports
    a `json.JSONDecodeError` itself, as a validation error, and any other as "error parsing
    the body")."""
    if isinstance(cause, RecursionError):
        return (
            "malformed request: the body is not JSON this API reads: it is nested too deeply;"
            " a body is a JSON object of the fields the route lists (see /openapi.json)"
        )
    if "digits" in str(cause):  # int('1' * 5000): past sys.get_int_max_str_digits()
        return (
            f"malformed request: the body is not JSON this API reads: it holds a number of more"
            f" than {sys.get_int_max_str_digits()} digits"
        )
    return f"malformed request: the body is not valid JSON ({cause})"


def _install_error_handlers(app: FastAPI) -> None:
    async def virt_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, VirtError)
        return error_response(exc)

    async def validation(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return error_response(InvalidArgError(_validation_message(exc)))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        message = f"{exc.detail}: see /openapi.json for the routes of this API"
        error: VirtError
        if exc.status_code in (404, 405):
            error = NoRouteError(message, exc.status_code)
        elif exc.status_code == 400 and isinstance(exc.__cause__, (ValueError, RecursionError)):
            error = InvalidArgError(_body_message(exc.__cause__))  # the body is not JSON
        else:
            error = RequestRefusedError(message, exc.status_code)
        response = error_response(error)
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        if exc.status_code == 405:
            response.headers["allow"] = ", ".join(_allowed(request))
        return response

    async def unexpected_error(_request: Request, exc: Exception) -> Response:
        return error_response(unexpected(exc))

    app.add_exception_handler(VirtError, virt_error)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected_error)


__all__ = ["create_app", "error_response"]
