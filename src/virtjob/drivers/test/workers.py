"""The test driver's job workers: each simulates its work at a byte rate, with real files.

Work is paced with `JobContext.wait_for_cancel`, so a cancel is noticed at once. Every
worker validates the host state again under the host lock before it changes anything, and
changes the host only once its work is complete, so a failed or cancelled job leaves the
host as it found it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from virtjob.config import DomainConfig, NetworkConfig
from virtjob.drivers import objects
from virtjob.drivers.base import DomainRef, DomainState, NetworkRef
from virtjob.drivers.test.host import (
    ImageSink,
    Memory,
    TestDomain,
    TestHost,
    TestNetwork,
    image_size,
)
from virtjob.errors import InvalidArgError, OperationInvalidError, XMLError
from virtjob.jobs import JobContext

if TYPE_CHECKING:
    # Imported where a save, dump or restore runs: the save file's machinery (hashlib,
    # ctypes, the file-target locks) is not loaded by a command that writes no file, nor
    # (imported the same way) the XML functions of virtjob.config and lxml behind them.
    from virtjob.savefile import SaveFileReader

DRIVER_NAME = "test"
TICK = 0.05
"""Seconds of simulated work between progress reports and cancel checks."""
CORE_MAGIC = b"VIRTJOB-TEST-CORE\x00"
BOOT_FRACTION = 4
"""Booting a domain simulates loading a quarter of its memory."""
NETWORK_WORK = 64 << 20
"""Simulated bytes of work to bring a network up."""

Worker = Callable[[JobContext], object]


def paced(
    ctx: JobContext, total: int, rate: int, step: Callable[[int, int], None] | None = None
) -> bool:
    """Simulate moving `total` bytes at `rate` bytes/s, reporting progress as it goes.

    Calls `step(done_before, done_after)` for each slice of work. Returns False as soon as a
    cancel is requested (the caller cleans up and calls `finish_cancel`), True when done.
    """
    total = max(1, total)
    ctx.initialize(eta=total / rate, bounded=True)
    ctx.update(processed=0, total=total)
    per_tick = max(1, math.ceil(rate * TICK))
    done = 0
    while done < total:
        pause = min(per_tick, total - done) / rate
        if ctx.wait_for_cancel(pause):
            return False
        before, done = done, min(total, done + per_tick)
        if step is not None:
            step(before, done)
        ctx.update(processed=done, remaining=(total - done) / rate)
    return True


def image_slice(image: Memory, total: int, before: int, after: int) -> bytes:
    """The part of a compact `image` standing for simulated bytes `before`..`after` of `total`."""
    size = image.size
    return image.read(before * size // total, after * size // total)


def create_domain(host: TestHost, config: DomainConfig, rate: int) -> Worker:
    """A worker that boots a new transient domain from `config`."""

    def work(ctx: JobContext) -> DomainRef | None:
        if not paced(ctx, config.current_memory // BOOT_FRACTION, rate):
            ctx.finish_cancel()
            return None
        with host.lock:
            host.check_domain_clash(config)
            domain = TestDomain(config, persistent=False)
            host.boot(domain)
            host.domains[config.uuid] = domain
            return domain.ref

    return work


def start_domain(host: TestHost, ref: DomainRef, rate: int) -> Worker:
    """A worker that boots the defined, shut-off domain `ref`."""

    def work(ctx: JobContext) -> DomainRef | None:
        with host.lock:
            config = _shut_off(host, ref, "start").config
        if not paced(ctx, config.current_memory // BOOT_FRACTION, rate):
            ctx.finish_cancel()
            return None
        with host.lock:
            domain = _shut_off(host, ref, "start")
            host.boot(domain)
            return domain.ref

    return work


def _shut_off(host: TestHost, ref: DomainRef, action: str) -> TestDomain:
    domain = host.domain(ref)
    if domain.state.active:
        raise OperationInvalidError(
            f"cannot {action} domain {ref.name!r}: it is already {domain.state}"
        )
    return domain


def _active(host: TestHost, ref: DomainRef, action: str) -> TestDomain:
    domain = host.domain(ref)
    if not domain.state.active:
        raise objects.not_running(action, ref.name, domain.state)
    return domain


def save_domain(host: TestHost, ref: DomainRef, path: str, rate: int) -> Worker:
    """A worker that saves the running domain `ref` to `path` and stops it.

    The guest is paused while it is saved; a cancel or failure puts it back as it was.
    """

    def work(ctx: JobContext) -> None:
        from virtjob.config import format_domain_xml
        from virtjob.savefile import SaveFileWriter

        with host.lock:
            config = _active(host, ref, "save").config
        # The target is opened (and refused if it is no longer fit) before the guest pauses.
        what = f"a save of domain {ref.name!r}"
        with SaveFileWriter(
            path, DRIVER_NAME, format_domain_xml(config), what=what, confinement=host.confinement
        ) as out:
            with host.lock:
                domain = _active(host, ref, "save")
                prior = domain.state
                domain.state = DomainState.PAUSED
                image, config = domain.image, domain.config
            try:
                total = config.current_memory

                def step(before: int, after: int) -> None:
                    out.write_image(image_slice(image, total, before, after))

                completed = paced(ctx, total, rate, step)
                if completed:
                    out.commit()
            except BaseException:
                _put_back(host, domain, prior)
                raise
        if not completed:  # the partial file is gone: leaving the block removed it
            _put_back(host, domain, prior)
            ctx.finish_cancel()
            return
        with host.lock:
            host.stop(domain, "saved")

    return work


def _put_back(host: TestHost, domain: TestDomain, prior: DomainState) -> None:
    with host.lock:
        if domain.state is DomainState.PAUSED:
            domain.state = prior


def dump_core(host: TestHost, ref: DomainRef, path: str, rate: int) -> Worker:
    """A worker that writes the memory of the active domain `ref` to `path`."""

    def work(ctx: JobContext) -> None:
        with host.lock:
            domain = _active(host, ref, "dump")
            image, config = domain.image, domain.config
        from virtjob.config import format_domain_xml
        from virtjob.savefile import AtomicFile

        xml = format_domain_xml(config).encode("utf-8")
        what = f"a core dump of domain {ref.name!r}"

        with AtomicFile(path, what=what, confinement=host.confinement) as out:
            out.write(CORE_MAGIC + len(xml).to_bytes(4, "little") + xml)
            total = config.current_memory

            def step(before: int, after: int) -> None:
                out.write(image_slice(image, total, before, after))

            completed = paced(ctx, total, rate, step)
            if completed:
                out.commit()
        if not completed:  # the partial file is gone: leaving the block removed it
            ctx.finish_cancel()

    return work


def restore_domain(host: TestHost, path: str, config: DomainConfig, rate: int) -> Worker:
    """A worker that checks the whole save file at `path`, then brings `config` back to life.

    `config` is what the file held when the job was accepted; a file changed since is refused.
    """

    def work(ctx: JobContext) -> DomainRef | None:
        from virtjob.savefile import SaveFileReader

        with SaveFileReader(path, DRIVER_NAME, confinement=host.confinement) as reader:
            if check_restore_file(reader) != config:
                raise InvalidArgError(f"save file {path} changed while the restore was queued")
            with host.lock:
                restorable(host, config)
            # One pass checks and keeps the image (a seed, when a save of this driver wrote
            # it); check_restore_file bounded its size.
            sink = ImageSink(reader.header.image_length)
            intact = reader.verify(cancelled=lambda: ctx.cancel_requested, sink=sink.feed)
            image = sink.memory() if intact else None
            del sink
        if not intact or not paced(ctx, config.current_memory, rate):
            ctx.finish_cancel()
            return None
        with host.lock:
            domain = restorable(host, config)
            if domain is None:
                domain = TestDomain(config, persistent=False)
                host.domains[config.uuid] = domain
            else:
                domain.config = config
            host.boot(domain, image)
            return domain.ref

    return work


def restorable(host: TestHost, config: DomainConfig) -> TestDomain | None:
    """The shut-off domain a restore of `config` replaces, None if it is new; else refuse."""
    existing = host.domains.get(config.uuid)
    if existing is not None:
        if existing.config.name != config.name:
            raise OperationInvalidError(
                f"cannot restore domain {config.name!r}: its uuid {config.uuid} belongs to"
                f" domain {existing.config.name!r}"
            )
        if existing.state.active:
            raise OperationInvalidError(
                f"cannot restore domain {config.name!r}: it is already {existing.state};"
                f" destroy it first"
            )
        return existing
    host.check_domain_clash(config)
    return None


def check_restore_file(reader: SaveFileReader) -> DomainConfig:
    """Parse the domain XML carried by a save file and check its image fits that domain.

    Raises `InvalidArgError` if the XML is unusable, or if the image is larger than the test
    driver ever makes for a domain of that memory (`image_size`): such a file was not written
    by a save, and restoring it would hold all of it in memory.
    """
    from virtjob.config import parse_domain_xml

    try:
        config = parse_domain_xml(reader.xml)
    except XMLError as exc:
        raise InvalidArgError(
            f"save file {reader.path} carries domain XML virtjob cannot use: {exc}"
        ) from exc
    limit = image_size(config)
    if reader.header.image_length > limit:
        raise InvalidArgError(
            f"save file {reader.path} is corrupted: its memory image is"
            f" {reader.header.image_length} bytes, but the test driver's image of domain"
            f" {config.name!r} ({config.current_memory} bytes of memory) is at most {limit};"
            f" it cannot be restored"
        )
    return config


def create_network(host: TestHost, config: NetworkConfig, rate: int) -> Worker:
    """A worker that brings up a new transient network from `config`."""

    def work(ctx: JobContext) -> NetworkRef | None:
        if not paced(ctx, NETWORK_WORK, rate):
            ctx.finish_cancel()
            return None
        with host.lock:
            host.check_network_clash(config)
            host.check_bridge_free(config)
            network = TestNetwork(config, persistent=False, active=True)
            host.networks[config.uuid] = network
            return network.ref

    return work


def start_network(host: TestHost, ref: NetworkRef, rate: int) -> Worker:
    """A worker that starts the defined, inactive network `ref`."""

    def work(ctx: JobContext) -> NetworkRef | None:
        with host.lock:
            _inactive(host, ref)
        if not paced(ctx, NETWORK_WORK, rate):
            ctx.finish_cancel()
            return None
        with host.lock:
            network = _inactive(host, ref)
            host.check_bridge_free(network.config, allow=network)
            network.active = True
            return network.ref

    return work


def _inactive(host: TestHost, ref: NetworkRef) -> TestNetwork:
    network = host.network(ref)
    if network.active:
        raise OperationInvalidError(f"cannot start network {ref.name!r}: it is already active")
    return network
