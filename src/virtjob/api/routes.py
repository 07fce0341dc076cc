"""The routes of virtjobd's API: which HTTP request carries each driver and job operation.

Both sides read this table: virtjobd registers a handler for every route, the remote driver
sends every request through it, and a test checks that each method of the `Driver` and
`JobDriver` protocols has a route here (or a reason in `LOCAL_ONLY`), a handler in the daemon
and a method in the remote driver, so a new operation cannot be forgotten on one side.

Paths are templates: ``{key}`` is a domain's or network's name or UUID, ``{job_id}`` a job id;
`Route.path_for` fills them in, each escaped as one path segment. Host routes lie below
``/v1/hosts/{driver}/{instance}`` (`host_base`); job routes below ``/v1`` itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal
from urllib.parse import quote

API_PREFIX = "/v1"
"""Every route of the API starts with this version prefix."""

Answer = Literal[
    "host",
    "refs",
    "ref",
    "domain-info",
    "network-info",
    "xml",
    "job",
    "jobs",
    "version",
    "events",
    "nothing",
]
"""What a successful answer carries: a host's capabilities, a list of refs, one ref (201), a
domain or network info, ``{"xml"}``, a job document (202 when it starts one), a list of job
documents, the daemon's version and open hosts, a stream of server-sent events
(``text/event-stream``, each event's data a job's ``info``), or nothing (204)."""


@dataclass(frozen=True, slots=True)
class Route:
    """One HTTP route: method, path template, the JSON body's keys, and what it answers."""

    method: str
    path: str
    answer: Answer
    body: tuple[str, ...] = ()
    """The keys of the request's JSON object (none: no body)."""

    def path_for(self, **segments: str) -> str:
        """The path with each ``{name}`` replaced by ``segments[name]``, escaped."""
        return self.path.format(**{name: quote_segment(value) for name, value in segments.items()})


def quote_segment(text: str) -> str:
    """`text` escaped to be exactly one path segment.

    Every reserved character is escaped (``/`` too, as ``%2F``), and so is a segment that is
    ``.`` or ``..`` (as ``%2E`` and ``%2E%2E``): URL clients (httpx among them) resolve such
    dot segments away, so ``/jobs/..`` would reach ``/`` instead of the job named "..".
    Raises `UnicodeEncodeError` for text that has no UTF-8 form (a lone surrogate).
    """
    if text in (".", ".."):
        return "%2E" * len(text)
    return quote(text, safe="")


def host_base(driver: str, instance: str) -> str:
    """The path every route of the host ``driver:///instance`` starts with."""
    return f"{API_PREFIX}/hosts/{quote_segment(driver)}/{quote_segment(instance)}"


HOST_ROUTES = MappingProxyType(
    {
        "capabilities": Route("GET", "", "host"),
        "list_domains": Route("GET", "/domains", "refs"),
        "lookup_domain": Route("GET", "/domains/{key}", "domain-info"),
        "define_domain": Route("POST", "/domains", "ref", ("xml",)),
        "undefine_domain": Route("DELETE", "/domains/{key}", "nothing"),
        "domain_info": Route("GET", "/domains/{key}", "domain-info"),
        "domain_xml": Route("GET", "/domains/{key}/xml", "xml"),
        "domain_destroy": Route("POST", "/domains/{key}/destroy", "nothing"),
        "domain_shutdown": Route("POST", "/domains/{key}/shutdown", "nothing", ("force_after",)),
        "domain_suspend": Route("POST", "/domains/{key}/suspend", "nothing"),
        "domain_resume": Route("POST", "/domains/{key}/resume", "nothing"),
        "create_domain_job": Route("POST", "/domains/create", "job", ("xml",)),
        "start_domain_job": Route("POST", "/domains/{key}/start", "job"),
        "save_domain_job": Route("POST", "/domains/{key}/save", "job", ("path",)),
        "restore_domain_job": Route("POST", "/domains/restore", "job", ("path",)),
        "dump_core_job": Route("POST", "/domains/{key}/dump-core", "job", ("path",)),
        "list_networks": Route("GET", "/networks", "refs"),
        "lookup_network": Route("GET", "/networks/{key}", "network-info"),
        "define_network": Route("POST", "/networks", "ref", ("xml",)),
        "undefine_network": Route("DELETE", "/networks/{key}", "nothing"),
        "network_info": Route("GET", "/networks/{key}", "network-info"),
        "network_xml": Route("GET", "/networks/{key}/xml", "xml"),
        "network_destroy": Route("POST", "/networks/{key}/destroy", "nothing"),
        "create_network_job": Route("POST", "/networks/create", "job", ("xml",)),
        "start_network_job": Route("POST", "/networks/{key}/start", "job"),
        "list_jobs": Route("GET", "/jobs", "jobs"),
    }
)
"""`virtjob.drivers.base.Driver` methods -> their route below `host_base`."""

JOB_ROUTES = MappingProxyType(
    {
        "job_document": Route("GET", "/jobs/{job_id}", "job"),
        "job_info": Route("GET", "/jobs/{job_id}", "job"),
        "job_outcome": Route("GET", "/jobs/{job_id}", "job"),
        "job_cancel": Route("POST", "/jobs/{job_id}/cancel", "job"),
        "job_wait": Route("GET", "/jobs/{job_id}/wait", "job"),
        "job_add_done_callback": Route("GET", "/jobs/{job_id}/wait", "job"),
        "job_watch": Route("GET", "/jobs/{job_id}/events", "events"),
        "job_destroy": Route("DELETE", "/jobs/{job_id}", "nothing"),
    }
)
"""`virtjob.jobs.protocol.JobDriver` methods (and `Driver.lookup_job`, which is
``job_document``) -> their route below `API_PREFIX`. ``/events`` answers with server-sent
events whose data is each new ``info`` of the job."""

DAEMON_ROUTES = MappingProxyType(
    {
        "version": Route("GET", "/version", "version"),
        "all_jobs": Route("GET", "/jobs", "jobs"),
        "close_host": Route("DELETE", "", "nothing"),
    }
)
"""Routes of the daemon itself, with no driver method: its version, every host's jobs, and
closing a host (the last below `host_base`)."""

LOCAL_ONLY = MappingProxyType(
    {
        "close": "closing a remote connection closes its HTTP connections, not the host",
        "confine": "a daemon confines its own hosts; its clients cannot change that",
        "lookup_job": "served by JOB_ROUTES['job_document'], checked against the host after",
    }
)
"""`Driver` methods with no host route, and why."""
