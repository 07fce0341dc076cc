"""API coverage, as libvirt-python checks its bindings against the C API: every operation of
the `Driver` and `JobDriver` protocols has a route in `virtjob.api.routes`, a method in the
remote driver with the protocol's signature, and a handler in virtjobd; so a new operation
cannot be forgotten on one side of the wire."""

from __future__ import annotations

import inspect

from virtjob.api import routes
from virtjob.drivers.base import Driver
from virtjob.drivers.remote.driver import RemoteDriver
from virtjob.drivers.remote.jobs import RemoteJobDriver
from virtjob.jobs.protocol import JobDriver


def _methods(protocol: type) -> set[str]:
    """The operations a protocol declares (public functions defined in its body)."""
    return {
        name
        for name, value in vars(protocol).items()
        if inspect.isfunction(value) and not name.startswith("_")
    }


def _parameters(function: object) -> list[str]:
    return list(inspect.signature(function).parameters)  # type: ignore[arg-type]


def test_every_driver_operation_has_a_route_or_a_reason() -> None:
    operations = _methods(Driver)
    assert operations == set(routes.HOST_ROUTES) | set(routes.LOCAL_ONLY), (
        "every Driver method needs a HOST_ROUTES entry (or a LOCAL_ONLY reason), and every"
        " entry a Driver method"
    )
    assert not set(routes.HOST_ROUTES) & set(routes.LOCAL_ONLY)


def test_every_job_operation_has_a_route() -> None:
    assert _methods(JobDriver) == set(routes.JOB_ROUTES)


def test_the_remote_driver_implements_every_driver_operation() -> None:
    for name in _methods(Driver):
        mine = getattr(RemoteDriver, name, None)
        assert callable(mine), f"RemoteDriver lacks {name}"
        assert _parameters(mine) == _parameters(getattr(Driver, name)), name


def test_the_remote_job_driver_implements_every_job_operation() -> None:
    for name in _methods(JobDriver):
        mine = getattr(RemoteJobDriver, name, None)
        assert callable(mine), f"RemoteJobDriver lacks {name}"
        assert _parameters(mine) == _parameters(getattr(JobDriver, name)), name


def test_routes_name_their_body_and_answer_consistently() -> None:
    for name, route in {**routes.HOST_ROUTES, **routes.JOB_ROUTES}.items():
        assert route.method in {"GET", "POST", "DELETE"}, name
        if route.method != "POST":
            assert not route.body, f"{name}: only a POST carries a body"
        if name.endswith("_job"):
            assert route.answer == "job", name
            assert route.method == "POST", name
