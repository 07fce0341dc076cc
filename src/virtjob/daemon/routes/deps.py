"""The lookups routes share, as FastAPI dependencies: the service, the URI parameters, the
host a read or a change names, and the domain or network a path's ``{key}`` names.

A route declares what it needs by type (``host: ReadHost``, ``ref: ChangeDomain``) and
FastAPI solves it once per request. The host dependencies wrap the whole handler (their exit
runs before the answer is sent, scope ``"function"``), so:

- `ReadHost`: the open host, or its driver's stand-in for a host not open yet (a read never
  opens one); an error raised while using a stand-in names the host asked for (`restate`);
- `ChangeHost`: the host, opened if needed; closed again if the request fails and leaves it
  as fresh as it was (`Hosts.changing`).

Both answer 404 no-support (`UnknownDriverError`) for a driver virtjob lacks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Path, Request

from virtjob.drivers.base import DomainRef, NetworkRef
from virtjob.errors import InvalidArgError, NoSupportError, VirtError

from ..answers import UnknownDriverError
from ..hosts import Hosted, restate
from ..models import PathBody
from ..service import Service

DriverName = Annotated[
    str, Path(description="Driver name, e.g. 'test' or 'qemu'.", examples=["test"])
]
Instance = Annotated[
    str, Path(description="Host instance, e.g. 'default' or 'session'.", examples=["default"])
]
Key = Annotated[str, Path(description="Name or UUID.", examples=["test"])]
JobId = Annotated[str, Path(description="Job id.")]


async def get_service(request: Request) -> Service:
    """The daemon's `Service` (set on the application by `create_app`)."""
    service: Service = request.app.state.service
    return service


ServiceDep = Annotated[Service, Depends(get_service)]


async def uri_params(request: Request) -> dict[str, str]:
    """The request's query parameters: the hosted driver's URI parameters (``?rate=``).
    `InvalidArgError` for a parameter given twice."""
    params: dict[str, str] = {}
    for key, value in request.query_params.multi_items():
        if key in params:
            raise InvalidArgError(f"query parameter {key!r} is given more than once")
        params[key] = value
    return params


UriParams = Annotated[dict[str, str], Depends(uri_params)]


def read_host(
    service: ServiceDep, driver: DriverName, instance: Instance, params: UriParams
) -> Iterator[Hosted]:
    """The host a read names: open, or its driver's stand-in (see the module docs)."""
    try:
        host = service.hosts.get(driver, instance, params, change=False)
    except NoSupportError as exc:
        raise UnknownDriverError(exc.message) from exc
    try:
        yield host
    except VirtError as exc:
        changed = restate(exc, host.stand_in, host.host)
        if changed is exc:
            raise
        raise changed from exc


ReadHost = Annotated[Hosted, Depends(read_host, scope="function")]


def change_host(
    service: ServiceDep, driver: DriverName, instance: Instance, params: UriParams
) -> Iterator[Hosted]:
    """The host a change names, opened if needed (see the module docs)."""
    with contextlib.ExitStack() as stack:
        try:
            host = stack.enter_context(service.hosts.changing(driver, instance, params))
        except NoSupportError as exc:
            raise UnknownDriverError(exc.message) from exc
        yield host


ChangeHost = Annotated[Hosted, Depends(change_host, scope="function")]


def read_domain(host: ReadHost, key: Key) -> DomainRef:
    """The domain ``{key}`` names on the host a read names; `NoDomainError` if none."""
    return host.driver.lookup_domain(key)


def change_domain(host: ChangeHost, key: Key) -> DomainRef:
    """The domain ``{key}`` names on the host a change names; `NoDomainError` if none."""
    return host.driver.lookup_domain(key)


def read_network(host: ReadHost, key: Key) -> NetworkRef:
    """The network ``{key}`` names on the host a read names; `NoNetworkError` if none."""
    return host.driver.lookup_network(key)


def change_network(host: ChangeHost, key: Key) -> NetworkRef:
    """The network ``{key}`` names on the host a change names; `NoNetworkError` if none."""
    return host.driver.lookup_network(key)


ReadDomain = Annotated[DomainRef, Depends(read_domain)]
ChangeDomain = Annotated[DomainRef, Depends(change_domain)]
ReadNetwork = Annotated[NetworkRef, Depends(read_network)]
ChangeNetwork = Annotated[NetworkRef, Depends(change_network)]


def save_file(service: ServiceDep, body: PathBody) -> str:
    """The save file a save writes or a restore reads, checked against the allowed
    directories (resolved); `AccessDeniedError` or `InvalidArgError` if it may not be used.
    Declared first, it is checked before the host is looked at."""
    return service.policy.check(body.path, "save file")


def core_file(service: ServiceDep, body: PathBody) -> str:
    """The file a core dump writes, checked as `save_file` is."""
    return service.policy.check(body.path, "core dump")


SaveFile = Annotated[str, Depends(save_file)]
CoreFile = Annotated[str, Depends(core_file)]
