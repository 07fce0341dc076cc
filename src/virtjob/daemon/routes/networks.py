"""Network routes (below ``/v1/hosts/{driver}/{instance}/networks``): list, define, look up,
XML, undefine, destroy and the jobs (create, start)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from virtjob.api import API_PREFIX
from virtjob.api.objects import encode_network_info, encode_ref

from ..answers import json_response, no_content
from ..models import ERRORS, XmlBody
from .deps import ChangeHost, ChangeNetwork, ReadHost, ReadNetwork, ServiceDep
from .hosts import start_job
from .table import host_route

router = APIRouter(prefix=API_PREFIX, tags=["networks"], responses=ERRORS, redirect_slashes=False)


@host_route(router, "list_networks")
def list_networks(host: ReadHost) -> Response:
    """Every network of the host, active or defined."""
    return json_response([encode_ref(ref) for ref in host.driver.list_networks()])


@host_route(router, "define_network")
def define_network(service: ServiceDep, host: ChangeHost, body: XmlBody) -> Response:
    """Define a persistent network from XML."""
    with service.hosts.admitting(host, "network", body.xml):
        ref = host.driver.define_network(body.xml)
    service.hosts.remember(host, "network", ref, host.driver.network_xml(ref))
    return json_response(encode_ref(ref), 201)


@host_route(router, "create_network_job")
def create_network(service: ServiceDep, host: ChangeHost, body: XmlBody) -> Response:
    """Job: create and start a transient network from XML; the result is the network."""
    with service.hosts.admitting(host, "network"):
        return start_job(service, host, lambda: host.driver.create_network_job(body.xml))


@host_route(router, "lookup_network", "network_info")
def network_info(host: ReadHost, ref: ReadNetwork) -> Response:
    """A snapshot of the network."""
    return json_response(encode_network_info(host.driver.network_info(ref)))


@host_route(router, "network_xml")
def network_xml(host: ReadHost, ref: ReadNetwork) -> Response:
    """The network's XML document."""
    return json_response({"xml": host.driver.network_xml(ref)})


@host_route(router, "undefine_network")
def undefine_network(service: ServiceDep, host: ChangeHost, ref: ChangeNetwork) -> Response:
    """Undefine the network; an active one goes on as a transient network."""
    host.driver.undefine_network(ref)
    service.hosts.remember(host, "network", ref, None)
    return no_content()


@host_route(router, "network_destroy")
def destroy_network(host: ChangeHost, ref: ChangeNetwork) -> Response:
    """Stop the network (a transient one disappears)."""
    host.driver.network_destroy(ref)
    return no_content()


@host_route(router, "start_network_job")
def start_network(service: ServiceDep, host: ChangeHost, ref: ChangeNetwork) -> Response:
    """Job: start the defined network; the result is the network."""
    return start_job(service, host, lambda: host.driver.start_network_job(ref))
