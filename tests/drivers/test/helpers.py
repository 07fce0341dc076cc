"""Shared documents and helpers for the test-driver tests."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import virtjob
from virtjob import DomainState, JobInfo

WEB_UUID = "0f8e2f52-3c5d-4c7e-9d0b-6f1d2a3b4c5d"
WEB = f"""<domain type='test'>
  <name>web</name>
  <uuid>{WEB_UUID}</uuid>
  <memory unit='MiB'>256</memory>
  <vcpu>2</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
</domain>"""
"""A 256 MiB domain with a fixed UUID, so it can be redefined."""

LAB_UUID = "7b1c0d1e-2f3a-4b5c-8d9e-0a1b2c3d4e5f"
LAB = f"""<network>
  <name>lab</name>
  <uuid>{LAB_UUID}</uuid>
  <forward mode='nat'/>
  <bridge name='virbr7'/>
  <ip address='10.7.0.1' netmask='255.255.255.0'/>
</network>"""
"""An isolated-bridge NAT network with a fixed UUID."""

TEST_UUID = "6695eb01-f6a4-8304-79aa-97f2502e193f"
DEFAULT_NET_UUID = "dd8fe884-6c02-601e-7551-cca97df1c5df"


def domain_xml(name: str, mib: int = 256, uuid_text: str | None = None) -> str:
    """A minimal test domain document."""
    uuid_part = f"<uuid>{uuid_text}</uuid>" if uuid_text is not None else ""
    return (
        f"<domain type='test'><name>{name}</name>{uuid_part}"
        f"<memory unit='MiB'>{mib}</memory><os><type>hvm</type></os></domain>"
    )


def network_xml(name: str, bridge: str, uuid_text: str | None = None) -> str:
    """A minimal network document."""
    uuid_part = f"<uuid>{uuid_text}</uuid>" if uuid_text is not None else ""
    return f"<network><name>{name}</name>{uuid_part}<bridge name='{bridge}'/></network>"


@dataclass(frozen=True)
class DomainView:
    """What a host shows about one domain."""

    name: str
    uuid: uuid.UUID
    state: DomainState
    persistent: bool
    id: int | None
    xml: str


@dataclass(frozen=True)
class NetworkView:
    """What a host shows about one network."""

    name: str
    uuid: uuid.UUID
    active: bool
    persistent: bool
    xml: str


@dataclass(frozen=True)
class HostView:
    """Everything a host shows: domains, networks and job ids (to compare before and after)."""

    domains: tuple[DomainView, ...]
    networks: tuple[NetworkView, ...]
    jobs: tuple[str, ...]


def host_view(conn: virtjob.Connection) -> HostView:
    """Take a snapshot of the whole host behind `conn`."""
    domains = tuple(
        sorted(
            (
                DomainView(d.name, d.uuid, d.state(), d.is_persistent(), d.id, d.xml())
                for d in conn.list_domains()
            ),
            key=lambda v: v.name,
        )
    )
    networks = tuple(
        sorted(
            (
                NetworkView(n.name, n.uuid, n.is_active(), n.is_persistent(), n.xml())
                for n in conn.list_networks()
            ),
            key=lambda v: v.name,
        )
    )
    return HostView(domains, networks, tuple(job.id for job in conn.list_jobs()))


def same_host(conn: virtjob.Connection, rate: int) -> virtjob.Connection:
    """Open another connection to the host behind `conn`, whose jobs run at `rate` bytes/s."""
    return virtjob.open(f"{conn.uri.split('?')[0]}?rate={rate}")


def cancel_at(job: virtjob.Job, percent: float, timeout: float = 10) -> JobInfo:
    """Cancel `job` once it reports at least `percent` done; return its final info."""
    for info in job.watch(interval=0):
        if info.percent is not None and info.percent >= percent and not info.cancel_requested:
            job.cancel()
    return job.wait(timeout=timeout)
