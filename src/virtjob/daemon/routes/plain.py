"""`PlainRoute`: a hot route served in plain ASGI by the `Gate`, its only server path.

``GET /v1/jobs/{job_id}`` is the read behind every remote ``Job.info()``. FastAPI's routing,
request object and dependency solving cost tens of µs per request, several times what
answering it costs, so that route is not registered with FastAPI at all: the `Gate`, once a
request has passed its checks, hands a request whose method and path match a `PlainRoute`
to it, and the route calls its handler with the path parameter and the service itself.

The handler is an ordinary ``async def`` with FastAPI annotations (``service: ServiceDep,
job_id: JobId``) that returns the JSON body of a 200 answer: `documentation` is an `APIRoute`
built from it, which is never served but given to the OpenAPI generator, so
``/openapi.json`` describes the route like any other. Its errors are answered by
`send_error`, as every route's are.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fastapi.routing import APIRoute

from virtjob.api.routes import API_PREFIX, Route
from virtjob.errors import VirtError

from ..answers import Receive, Scope, Send, send_error, send_json, unexpected
from ..models import ERRORS
from ..service import Service
from .deps import get_service
from .table import OPERATIONS, success

Handler = Callable[..., Awaitable[bytes]]
"""A plain route's handler: the JSON body of its 200 answer, from its parameter and service."""


class PlainRoute:
    """One route of the contract (`route`, whose path ends in its one ``{parameter}``, and
    whose success is 200 with a JSON body) served by `handler` in plain ASGI; `operations` are
    the contract methods it serves."""

    def __init__(
        self, route: Route, handler: Handler, operations: Sequence[str], **options: Any
    ) -> None:
        """Build the route and its documentation; `ValueError` for a path with other than
        one trailing parameter, `TypeError` for a handler that needs more than that
        parameter and the service. `options` go to the documenting `APIRoute`."""
        head, brace, rest = route.path.partition("{")
        if not brace or not rest.endswith("}") or "/" in rest or "{" in rest:
            raise ValueError(f"{route.path}: a PlainRoute's path ends in its one parameter")
        self.method = route.method
        self.prefix = API_PREFIX + head
        self.parameter = rest[:-1]
        status, responses = success(route.answer)
        if status != 200:
            raise ValueError(f"{route.path}: a PlainRoute answers 200, not {status}")
        self.documentation = APIRoute(
            API_PREFIX + route.path,
            handler,
            methods=[route.method],
            status_code=status,
            response_model=None,
            responses={**ERRORS, **responses},
            name=operations[0],
            openapi_extra={OPERATIONS: list(operations)},
            **options,
        )
        dependant = self.documentation.dependant
        services = [d.name for d in dependant.dependencies if d.call is get_service and d.name]
        params = [param.name for param in dependant.path_params]
        if (
            params != [self.parameter]
            or dependant.query_params
            or dependant.header_params
            or dependant.cookie_params
            or dependant.body_params
            or len(services) != len(dependant.dependencies)
        ):
            raise TypeError(
                f"{route.path}: a PlainRoute's handler takes {self.parameter} and the service"
            )
        self._handler = handler
        self._services = services

    def matches(self, path: str) -> bool:
        """Whether this route's path template matches `path`, whatever the method (as the
        callable of `serve` checks it, inline there: it runs for every request)."""
        value = path[len(self.prefix) :] if path.startswith(self.prefix) else ""
        return bool(value) and "/" not in value

    def serve(self, service: Service) -> Callable[[Scope, Receive, Send], Awaitable[bool]]:
        """The plain ASGI callable that answers this route's requests for `service`; it
        returns False at once, having done nothing, for a request that is not one."""
        method, prefix, skip = self.method, self.prefix, len(self.prefix)
        handler, parameter = self._handler, self.parameter
        services = dict.fromkeys(self._services, service)

        async def serve(scope: Scope, _receive: Receive, send: Send) -> bool:
            path: str = scope["path"]
            if scope["method"] != method or not path.startswith(prefix):
                return False
            value = path[skip:]
            if not value or "/" in value or scope.get("root_path"):
                return False
            try:
                body = await handler(**services, **{parameter: value})
            except VirtError as exc:
                await send_error(send, exc)
                return True
            except Exception as exc:
                await send_error(send, unexpected(exc))
                return True
            await send_json(send, 200, body)
            return True

        return serve
