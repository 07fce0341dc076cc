"""The remote driver sends what `virtjob.api.routes` says.

tests/test_api_coverage.py checks that every `Driver` and `JobDriver` method has a route and
a remote method (and tests/test_imports.py that the remote driver never imports the daemon);
here each remote method, run against a real virtjobd, must send exactly the route its name
maps to (seen in the transport's debug log), so an operation cannot be crossed with another on
the client side either.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable

import pytest

import virtjob
from tests.daemon.conftest import SAFETY, SLOW_RATE, DaemonProcess
from virtjob.api.routes import API_PREFIX, HOST_ROUTES, JOB_ROUTES, Route, host_base
from virtjob.drivers.remote import RemoteDriver
from virtjob.errors import VirtError
from virtjob.uri import parse_uri

DOMAIN = """<domain type='test'><name>{name}</name><memory unit='MiB'>64</memory>
<vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os></domain>"""
NETWORK = "<network><name>{name}</name><bridge name='{name}'/></network>"


class _Requests:
    """The requests the transport logged (method, path without the query), from any thread."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self._caplog = caplog
        self._seen = 0

    def since_last(self) -> list[tuple[str, str]]:
        """The requests logged since the previous call."""
        records = [
            record for record in self._caplog.records if record.name == "virtjob.remote.http"
        ]
        new, self._seen = records[self._seen :], len(records)
        requests = []
        for record in new:
            method, target, *_ = record.getMessage().split(" ")
            requests.append((method, target.partition("?")[0]))
        return requests


def _expected(route: Route, base: str, key: str | None) -> tuple[str, str]:
    return route.method, base + (route.path if key is None else route.path_for(key=key))


def test_each_remote_driver_method_sends_its_route(
    shared_daemon: DaemonProcess, host: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="virtjob.remote.http")
    requests = _Requests(caplog)
    uri = shared_daemon.uri(host)
    driver = RemoteDriver(parse_uri(uri))
    try:
        opened = requests.since_last()
        dom = driver.lookup_domain("test")
        net = driver.lookup_network("default")
        spare_dom = driver.define_domain(DOMAIN.format(name="spare"))
        spare_net = driver.define_network(NETWORK.format(name="vjcov0"))
        path = os.path.join(shared_daemon.files, f"{host}-cov")
        calls: dict[str, tuple[Callable[[], object], str | None]] = {
            "list_domains": (driver.list_domains, None),
            "lookup_domain": (lambda: driver.lookup_domain("test"), "test"),
            "define_domain": (lambda: driver.define_domain(DOMAIN.format(name="d2")), None),
            "domain_info": (lambda: driver.domain_info(dom), str(dom.uuid)),
            "domain_xml": (lambda: driver.domain_xml(dom), str(dom.uuid)),
            "domain_suspend": (lambda: driver.domain_suspend(dom), str(dom.uuid)),
            "domain_resume": (lambda: driver.domain_resume(dom), str(dom.uuid)),
            "dump_core_job": (lambda: driver.dump_core_job(dom, path), str(dom.uuid)),
            "save_domain_job": (lambda: driver.save_domain_job(dom, path), str(dom.uuid)),
            "domain_shutdown": (lambda: driver.domain_shutdown(dom, 5.0), str(dom.uuid)),
            "domain_destroy": (lambda: driver.domain_destroy(dom), str(dom.uuid)),
            "start_domain_job": (lambda: driver.start_domain_job(dom), str(dom.uuid)),
            "restore_domain_job": (lambda: driver.restore_domain_job(path), None),
            "create_domain_job": (
                lambda: driver.create_domain_job(DOMAIN.format(name="d3")),
                None,
            ),
            "undefine_domain": (lambda: driver.undefine_domain(spare_dom), str(spare_dom.uuid)),
            "list_networks": (driver.list_networks, None),
            "lookup_network": (lambda: driver.lookup_network("default"), "default"),
            "define_network": (
                lambda: driver.define_network(NETWORK.format(name="vjcov1")),
                None,
            ),
            "network_info": (lambda: driver.network_info(net), str(net.uuid)),
            "network_xml": (lambda: driver.network_xml(net), str(net.uuid)),
            "network_destroy": (lambda: driver.network_destroy(net), str(net.uuid)),
            "start_network_job": (lambda: driver.start_network_job(net), str(net.uuid)),
            "create_network_job": (
                lambda: driver.create_network_job(NETWORK.format(name="vjcov2")),
                None,
            ),
            "undefine_network": (lambda: driver.undefine_network(spare_net), str(spare_net.uuid)),
            "list_jobs": (driver.list_jobs, None),
        }
        assert set(calls) | {"capabilities"} == set(HOST_ROUTES), "a route without a check"
        base = host_base("test", host)
        assert opened == [_expected(HOST_ROUTES["capabilities"], base, None)]
        requests.since_last()
        for name, (call, key) in calls.items():
            with contextlib.suppress(VirtError):  # a refusal is an answer to the right route
                call()
            assert requests.since_last() == [_expected(HOST_ROUTES[name], base, key)], name
    finally:
        driver.close()


def test_each_remote_job_driver_method_sends_its_route(
    shared_daemon: DaemonProcess, host: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="virtjob.remote.http")
    requests = _Requests(caplog)
    with shared_daemon.open(host, rate=SLOW_RATE) as conn:
        driver = conn.driver
        assert isinstance(driver, RemoteDriver)
        jobs = driver.jobs
        job = conn.lookup_domain("test").dump_core_job(
            os.path.join(shared_daemon.files, f"{host}-jobs")
        )
        job_id = job.id
        called = threading.Event()
        requests.since_last()

        def expected(name: str) -> tuple[str, str]:
            route = JOB_ROUTES[name]
            return route.method, API_PREFIX + route.path_for(job_id=job_id)

        assert jobs.job_document(job_id).id == job_id
        assert requests.since_last() == [expected("job_document")]
        assert driver.lookup_job(job_id) == job
        assert requests.since_last() == [expected("job_document")]  # as LOCAL_ONLY says
        jobs.job_info(job_id)
        assert requests.since_last() == [expected("job_info")]
        assert jobs.job_outcome(job_id) is None
        assert requests.since_last() == [expected("job_outcome")]
        watch = jobs.job_watch(job_id, 0.0)
        next(iter(watch))
        watch.close()  # type: ignore[attr-defined]
        assert requests.since_last() == [expected("job_watch")]
        with pytest.raises(virtjob.JobTimeoutError):
            jobs.job_wait(job_id, 0.0)
        assert requests.since_last() == [expected("job_wait")]
        jobs.job_add_done_callback(job_id, called.set)  # runs: a waiter thread long-polls
        jobs.job_cancel(job_id)
        assert called.wait(SAFETY)
        sent = requests.since_last()
        assert expected("job_add_done_callback") in sent
        assert expected("job_cancel") in sent
        jobs.job_destroy(job_id)
        assert requests.since_last() == [expected("job_destroy")]
