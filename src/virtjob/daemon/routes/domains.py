"""Domain routes (below ``/v1/hosts/{driver}/{instance}/domains``): list, define, look up,
XML, undefine, the actions (destroy, shutdown, suspend, resume) and the jobs (create, start,
save, restore, dump-core)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from virtjob.api import API_PREFIX
from virtjob.api.objects import encode_domain_info, encode_ref

from ..answers import json_response, no_content
from ..models import ERRORS, ShutdownBody, XmlBody
from .deps import (
    ChangeDomain,
    ChangeHost,
    CoreFile,
    ReadDomain,
    ReadHost,
    SaveFile,
    ServiceDep,
)
from .hosts import start_job
from .table import host_route

router = APIRouter(prefix=API_PREFIX, tags=["domains"], responses=ERRORS, redirect_slashes=False)


@host_route(router, "list_domains")
def list_domains(host: ReadHost) -> Response:
    """Every domain of the host, running or defined."""
    return json_response([encode_ref(ref) for ref in host.driver.list_domains()])


@host_route(router, "define_domain")
def define_domain(service: ServiceDep, host: ChangeHost, body: XmlBody) -> Response:
    """Define a persistent domain from XML (or update a defined one)."""
    with service.hosts.admitting(host, "domain", body.xml):
        ref = host.driver.define_domain(body.xml)
    service.hosts.remember(host, "domain", ref, host.driver.domain_xml(ref))
    return json_response(encode_ref(ref), 201)


@host_route(router, "create_domain_job")
def create_domain(service: ServiceDep, host: ChangeHost, body: XmlBody) -> Response:
    """Job: create and boot a transient domain from XML; the result is the domain."""
    with service.hosts.admitting(host, "domain"):
        return start_job(service, host, lambda: host.driver.create_domain_job(body.xml))


@host_route(router, "restore_domain_job")
def restore_domain(path: SaveFile, service: ServiceDep, host: ChangeHost) -> Response:
    """Job: restore a domain from a save file; the result is the running domain."""
    with service.hosts.admitting(host, "domain"):
        return start_job(service, host, lambda: host.driver.restore_domain_job(path))


@host_route(router, "lookup_domain", "domain_info")
def domain_info(host: ReadHost, ref: ReadDomain) -> Response:
    """A snapshot of the domain."""
    return json_response(encode_domain_info(host.driver.domain_info(ref)))


@host_route(router, "domain_xml")
def domain_xml(host: ReadHost, ref: ReadDomain) -> Response:
    """The domain's XML document."""
    return json_response({"xml": host.driver.domain_xml(ref)})


@host_route(router, "undefine_domain")
def undefine_domain(service: ServiceDep, host: ChangeHost, ref: ChangeDomain) -> Response:
    """Undefine the domain; a running one goes on as a transient domain."""
    host.driver.undefine_domain(ref)
    service.hosts.remember(host, "domain", ref, None)
    return no_content()


@host_route(router, "domain_destroy")
def destroy_domain(host: ChangeHost, ref: ChangeDomain) -> Response:
    """Stop the domain at once."""
    host.driver.domain_destroy(ref)
    return no_content()


@host_route(router, "domain_suspend")
def suspend_domain(host: ChangeHost, ref: ChangeDomain) -> Response:
    """Pause the domain."""
    host.driver.domain_suspend(ref)
    return no_content()


@host_route(router, "domain_resume")
def resume_domain(host: ChangeHost, ref: ChangeDomain) -> Response:
    """Resume a paused domain."""
    host.driver.domain_resume(ref)
    return no_content()


@host_route(router, "domain_shutdown", summary="Ask the guest to shut down")
def shutdown_domain(
    host: ChangeHost, ref: ChangeDomain, body: ShutdownBody | None = None
) -> Response:
    """Press the guest's power button and answer at once; the guest may ignore it.

    With ``force_after``, the host powers the domain off (logged) if it is still running
    that many seconds later; the answer does not wait for it: watch the domain's state.
    """
    host.driver.domain_shutdown(ref, None if body is None else body.force_after)
    return no_content()


@host_route(router, "start_domain_job")
def start_domain(service: ServiceDep, host: ChangeHost, ref: ChangeDomain) -> Response:
    """Job: boot the defined domain; the result is the domain."""
    return start_job(service, host, lambda: host.driver.start_domain_job(ref))


@host_route(router, "save_domain_job")
def save_domain(
    path: SaveFile, service: ServiceDep, host: ChangeHost, ref: ChangeDomain
) -> Response:
    """Job: save the running domain to a file and stop it; no result."""
    return start_job(service, host, lambda: host.driver.save_domain_job(ref, path))


@host_route(router, "dump_core_job")
def dump_core(path: CoreFile, service: ServiceDep, host: ChangeHost, ref: ChangeDomain) -> Response:
    """Job: write the domain's memory to a file; the domain keeps its state; no result."""
    return start_job(service, host, lambda: host.driver.dump_core_job(ref, path))
