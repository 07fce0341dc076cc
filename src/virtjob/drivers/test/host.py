"""The simulated host behind ``test:///NAME``: its domains, networks and jobs.

One `TestHost` exists per name in a process, shared by every connection to it. All state is
guarded by `lock`; jobs run on the host's own `LocalJobDriver`. Nothing in here calls user
code while holding the lock.
"""

from __future__ import annotations

import itertools
import os
import threading
import uuid
from dataclasses import dataclass, field

from virtjob.config import DomainConfig, NetworkConfig, parse_domain_xml, parse_network_xml
from virtjob.drivers import objects
from virtjob.drivers.base import Confinement, DomainRef, DomainState, NetworkRef
from virtjob.errors import NoDomainError, NoNetworkError, OperationInvalidError
from virtjob.jobs import LocalJobDriver

MAX_JOBS = 16
PAGE = 4096
MAX_IMAGE = 4 << 20

DEFAULT_DOMAIN_XML = """\
<domain type='test'>
  <name>test</name>
  <uuid>6695eb01-f6a4-8304-79aa-97f2502e193f</uuid>
  <memory unit='MiB'>512</memory>
  <vcpu>2</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
</domain>
"""

DEFAULT_NETWORK_XML = """\
<network>
  <name>default</name>
  <uuid>dd8fe884-6c02-601e-7551-cca97df1c5df</uuid>
  <forward mode='nat'/>
  <bridge name='virbr0'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp><range start='192.168.122.2' end='192.168.122.254'/></dhcp>
  </ip>
</network>
"""


def image_size(config: DomainConfig) -> int:
    """Bytes of the compact simulated memory of a domain: a byte per guest page, capped."""
    return min(MAX_IMAGE, max(1, config.current_memory // PAGE))


def fresh_image(config: DomainConfig) -> bytes:
    """Return new simulated memory content for a booting domain (`image_size` bytes)."""
    return os.urandom(image_size(config))


@dataclass
class TestDomain:
    """A simulated domain. Mutated only under the host lock."""

    config: DomainConfig
    persistent: bool
    state: DomainState = DomainState.SHUTOFF
    id: int | None = None
    image: bytes = b""

    @property
    def ref(self) -> DomainRef:
        """This domain's identity."""
        return DomainRef(self.config.name, self.config.uuid)


@dataclass
class TestNetwork:
    """A simulated network. Mutated only under the host lock."""

    config: NetworkConfig
    persistent: bool
    active: bool = False

    @property
    def ref(self) -> NetworkRef:
        """This network's identity."""
        return NetworkRef(self.config.name, self.config.uuid)


@dataclass
class TestHost:
    """A simulated host: starts with a running domain ``test`` and an active network ``default``."""

    name: str
    lock: threading.RLock = field(default_factory=threading.RLock)
    domains: dict[uuid.UUID, TestDomain] = field(default_factory=dict)
    networks: dict[uuid.UUID, TestNetwork] = field(default_factory=dict)
    jobs: LocalJobDriver = field(default_factory=lambda: LocalJobDriver(MAX_JOBS))
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    confinement: Confinement | None = None
    """Where jobs may read and write files; None leaves them unconfined (see `Driver.confine`)."""

    def __post_init__(self) -> None:
        domain = TestDomain(parse_domain_xml(DEFAULT_DOMAIN_XML), persistent=True)
        self.boot(domain)
        self.domains[domain.config.uuid] = domain
        network = TestNetwork(parse_network_xml(DEFAULT_NETWORK_XML), persistent=True)
        network.active = True
        self.networks[network.config.uuid] = network

    # -- domains (callers hold `lock`) ------------------------------------------------------

    def boot(self, domain: TestDomain, image: bytes | None = None) -> None:
        """Mark `domain` running with a new id and memory content (or `image`)."""
        domain.state = DomainState.RUNNING
        domain.id = next(self._ids)
        domain.image = image if image is not None else fresh_image(domain.config)

    def stop(self, domain: TestDomain) -> None:
        """Mark `domain` shut off; a transient one disappears."""
        domain.state = DomainState.SHUTOFF
        domain.id = None
        domain.image = b""
        if not domain.persistent:
            self.domains.pop(domain.config.uuid, None)

    def find_domain(self, key: str) -> TestDomain:
        """The domain named `key` or with UUID `key`; `NoDomainError` if none."""
        return objects.lookup(self.domains, key, "domain", f"test:///{self.name}", NoDomainError)

    def domain(self, ref: DomainRef) -> TestDomain:
        """The domain `ref` names; `NoDomainError` if it has gone."""
        return objects.by_ref(self.domains, ref, "domain", NoDomainError)

    def check_domain_clash(self, config: DomainConfig, allow: TestDomain | None = None) -> None:
        """Refuse `config` if another domain (not `allow`) has its name or UUID."""
        objects.check_clash(self.domains, config, "domain", allow)

    # -- networks (callers hold `lock`) -----------------------------------------------------

    def find_network(self, key: str) -> TestNetwork:
        """The network named `key` or with UUID `key`; `NoNetworkError` if none."""
        return objects.lookup(self.networks, key, "network", f"test:///{self.name}", NoNetworkError)

    def network(self, ref: NetworkRef) -> TestNetwork:
        """The network `ref` names; `NoNetworkError` if it has gone."""
        return objects.by_ref(self.networks, ref, "network", NoNetworkError)

    def check_network_clash(self, config: NetworkConfig, allow: TestNetwork | None = None) -> None:
        """Refuse `config` if another network (not `allow`) has its name or UUID."""
        objects.check_clash(self.networks, config, "network", allow)

    def check_bridge_free(self, config: NetworkConfig, allow: TestNetwork | None = None) -> None:
        """Refuse to activate `config` if an active network already uses its bridge."""
        if config.bridge is None:
            return
        for other in self.networks.values():
            if other is not allow and other.active and other.config.bridge == config.bridge:
                raise OperationInvalidError(
                    f"bridge {config.bridge!r} of network {config.name!r} is in use by active"
                    f" network {other.config.name!r}; stop that network or choose another bridge"
                )


_hosts: dict[str, TestHost] = {}
_hosts_lock = threading.Lock()


def get_host(name: str) -> TestHost:
    """Return the process's host called `name`, creating it on first use."""
    with _hosts_lock:
        host = _hosts.get(name)
        if host is None:
            host = _hosts[name] = TestHost(name)
        return host
