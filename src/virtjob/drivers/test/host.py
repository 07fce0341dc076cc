"""The simulated host behind ``test:///NAME``: its domains, networks and jobs.

One `TestHost` exists per name in a process, shared by every connection to it (until
`discard_host` drops it). All state is guarded by `lock`; jobs run on the host's own
`LocalJobDriver`. Nothing in here calls user code while holding the lock.

A running domain's simulated memory is a `Memory`: a byte per guest page (`image_size`, at
most `MAX_IMAGE`), but held as a 16-byte seed whose expansion gives those bytes on demand, so
what a domain costs does not depend on the memory it declares. A restore recognises an image
a save of this driver wrote and keeps only its seed; any other image (a file from an older
virtjob) is kept as it is, bounded by `image_size`.
"""

from __future__ import annotations

import itertools
import os
import threading
import uuid
from dataclasses import dataclass, field

from virtjob.config import UNITS, DhcpRange, DomainConfig, NetworkConfig
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

DEFAULT_DOMAIN = DomainConfig(
    name="test",
    uuid=uuid.UUID("6695eb01-f6a4-8304-79aa-97f2502e193f"),
    memory=512 * UNITS["MiB"],
    vcpus=2,
    domain_type="test",
    arch="x86_64",
)
"""`DEFAULT_DOMAIN_XML` as a config, built directly: a new host parses no XML (and loads no
lxml), so that a command such as ``virtjob list`` does not pay for it. A test checks that
parsing `DEFAULT_DOMAIN_XML` gives exactly this."""

DEFAULT_NETWORK = NetworkConfig(
    name="default",
    uuid=uuid.UUID("dd8fe884-6c02-601e-7551-cca97df1c5df"),
    bridge="virbr0",
    forward_mode="nat",
    ip_address="192.168.122.1",
    netmask="255.255.255.0",
    dhcp=DhcpRange("192.168.122.2", "192.168.122.254"),
)
"""`DEFAULT_NETWORK_XML` as a config, built directly (see `DEFAULT_DOMAIN`)."""


def image_size(config: DomainConfig) -> int:
    """Bytes of the compact simulated memory of a domain: a byte per guest page, capped."""
    return min(MAX_IMAGE, max(1, config.current_memory // PAGE))


SEED = 16
"""Bytes of a `Memory` seed; the image starts with it, the rest is its expansion."""
BLOCK = 4096
"""Bytes of expansion made at once (one SHAKE-128 output per block index)."""


@dataclass(frozen=True, slots=True)
class Memory:
    """The simulated memory image of a running domain: `size` bytes that are the `seed`
    followed by its expansion (`expand`), or, with `data`, those bytes themselves."""

    size: int = 0
    seed: bytes = b""
    data: bytes | None = None

    def read(self, start: int, end: int) -> bytes:
        """Bytes `start`..`end` of the image (clipped to its size)."""
        end = min(end, self.size)
        if start >= end:
            return b""
        if self.data is not None:
            return self.data[start:end]
        head = self.seed[start:end] if start < SEED else b""
        return head + expand(self.seed, max(start, SEED) - SEED, end - SEED)


NO_MEMORY = Memory()
"""The image of a domain that is not running."""


def expand(seed: bytes, start: int, end: int) -> bytes:
    """Bytes `start`..`end` of the endless stream `seed` stands for (a SHAKE-128 output
    per `BLOCK`-byte block, keyed by the block's index)."""
    if start >= end:
        return b""
    import hashlib  # here: OpenSSL's start-up is paid by a save or dump, not every connection

    first, last = start // BLOCK, (end - 1) // BLOCK
    blocks = b"".join(
        hashlib.shake_128(seed + index.to_bytes(8, "little")).digest(BLOCK)
        for index in range(first, last + 1)
    )
    offset = first * BLOCK
    return blocks[start - offset : end - offset]


def fresh_image(config: DomainConfig) -> Memory:
    """Return new simulated memory content for a booting domain (`image_size` bytes)."""
    size = image_size(config)
    if size < SEED:
        return Memory(size, data=os.urandom(size))
    return Memory(size, seed=os.urandom(SEED))


class ImageSink:
    """Takes a restored image piece by piece (`feed`) and gives it back as a `Memory`
    (`memory`): a seed if it is a save of this driver, else its bytes (`size` at most)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._seen = 0
        self._seed = bytearray()
        self._raw: bytearray | None = None if size >= SEED else bytearray()

    def feed(self, chunk: bytes) -> None:
        """Take the next piece of the image."""
        if self._raw is not None:
            self._raw += chunk
            return
        if len(self._seed) < SEED:
            take = SEED - len(self._seed)
            self._seed += chunk[:take]
            self._seen += len(chunk[:take])
            chunk = chunk[take:]
        if chunk:
            start = self._seen - SEED
            if chunk != expand(bytes(self._seed), start, start + len(chunk)):
                raw = self._seed + expand(bytes(self._seed), 0, start)
                self._raw = raw + chunk
            self._seen += len(chunk)

    def memory(self) -> Memory:
        """The image taken, once whole."""
        if self._raw is not None:
            return Memory(len(self._raw), data=bytes(self._raw))
        if self._seen < SEED:
            return Memory(self._seen, data=bytes(self._seed))
        return Memory(self._seen, seed=bytes(self._seed))


@dataclass
class TestDomain:
    """A simulated domain. Mutated only under the host lock."""

    config: DomainConfig
    persistent: bool
    state: DomainState = DomainState.SHUTOFF
    id: int | None = None
    image: Memory = NO_MEMORY
    reason: str | None = None
    """Why it came to its state, in virsh's words (see `DomainInfo.reason`)."""

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
        self.jobs.host = f"test:///{self.name}"
        domain = TestDomain(DEFAULT_DOMAIN, persistent=True)
        self.boot(domain)
        self.domains[domain.config.uuid] = domain
        network = TestNetwork(DEFAULT_NETWORK, persistent=True)
        network.active = True
        self.networks[network.config.uuid] = network

    # -- domains (callers hold `lock`) ------------------------------------------------------

    def boot(self, domain: TestDomain, image: Memory | None = None) -> None:
        """Mark `domain` running with a new id and memory content (or `image`: restored)."""
        domain.state = DomainState.RUNNING
        domain.reason = "booted" if image is None else "restored"
        domain.id = next(self._ids)
        domain.image = image if image is not None else fresh_image(domain.config)

    def stop(self, domain: TestDomain, reason: str) -> None:
        """Mark `domain` shut off for `reason` ("destroyed", "shutdown", "saved"); a
        transient one disappears."""
        domain.state = DomainState.SHUTOFF
        domain.reason = reason
        domain.id = None
        domain.image = NO_MEMORY
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


def discard_host(host: TestHost) -> None:
    """Forget `host` (its domains, networks and finished jobs): the next `get_host` of its
    name makes a fresh one. Its job threads are told to end; a job still queued is
    cancelled. Raises nothing."""
    with _hosts_lock:
        if _hosts.get(host.name) is host:
            del _hosts[host.name]
    host.jobs.close(cancel=False, timeout=0)
