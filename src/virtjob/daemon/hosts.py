"""`Hosts`: the local drivers virtjobd hosts, opened by URI on first use and kept open.

A request names a host as ``/v1/hosts/{driver}/{instance}``; that is the local URI
``driver:///instance`` handed to `virtjob.drivers.connect_driver`, so any local driver works
(``test:///default``, ``qemu:///session``) with no special case here. The query parameters of
the request are the driver's URI parameters (``?rate=`` for the test driver); every parameter
variant of a host shares the host (its domains and jobs), as `connect_driver` defines.

**Definitions hook.** A driver whose definitions do not outlive the process (the test driver)
gets them kept by the daemon: after a successful define or undefine, the daemon records the
object's XML (or a tombstone) in its store and replays them on the fresh host at the next
start. A driver that persists its own definitions (the QEMU driver, under its state directory)
says so with a class or instance attribute ``persists_definitions = True``, and the daemon
then leaves its definitions alone. `keeps_definitions` is the one place that decides.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import urlencode

from virtjob.drivers import connect_driver
from virtjob.drivers.base import DomainRef, Driver, NetworkRef
from virtjob.errors import InvalidArgError, OperationInvalidError, VirtError
from virtjob.uri import parse_uri

from .store import Store

log = logging.getLogger("virtjob.daemon")

_DRIVER = re.compile(r"^[a-z][a-z0-9]{0,31}$")
_INSTANCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_VARIANTS = 16
"""Parameter variants (e.g. different ``?rate=``) kept open per host; older ones are closed."""


def keeps_definitions(driver: Driver) -> bool:
    """True when the daemon must persist this driver's definitions (see the module docs)."""
    return not bool(getattr(driver, "persists_definitions", False))


@dataclass(frozen=True, slots=True)
class Hosted:
    """One open driver connection and the host it belongs to."""

    host: str
    """The host's URI without parameters, e.g. ``test:///default``: the key of its jobs."""
    driver: Driver
    keeps_definitions: bool


def host_uri(driver: str, instance: str) -> str:
    """The local URI ``driver:///instance``; `InvalidArgError` for malformed names."""
    if not _DRIVER.match(driver):
        raise InvalidArgError(
            f"driver name {driver!r} is malformed: lower-case letters and digits, e.g. 'test'"
        )
    if not _INSTANCE.match(instance):
        raise InvalidArgError(
            f"host instance {instance!r} is malformed: letters, digits, '.', '_' and '-',"
            f" e.g. 'default' or 'session'"
        )
    return f"{driver}:///{instance}"


class Hosts:
    """The hosts this daemon serves, at most `max_hosts` of them; thread-safe."""

    def __init__(self, store: Store, max_hosts: int) -> None:
        self._store = store
        self._max_hosts = max_hosts
        self._lock = threading.Lock()
        self._open: dict[str, OrderedDict[str, Hosted]] = {}
        self._closed = False

    def get(self, driver: str, instance: str, params: dict[str, str]) -> Hosted:
        """Return the open connection for ``driver:///instance?params``, opening it if needed.

        Raises `InvalidArgError` for malformed names or parameters, `NoSupportError` for an
        unknown driver, `OperationInvalidError` when `max_hosts` hosts are open already, and
        whatever the driver raises when it cannot open the host.
        """
        host = host_uri(driver, instance)
        key = host + ("?" + urlencode(sorted(params.items())) if params else "")
        with self._lock:
            variants = self._open.get(host)
            if variants is not None and key in variants:
                variants.move_to_end(key)
                return variants[key]
            if self._closed:
                raise OperationInvalidError("virtjobd is shutting down; try again later")
            if variants is None and len(self._open) >= self._max_hosts:
                raise OperationInvalidError(
                    f"virtjobd already hosts {self._max_hosts} hosts ({', '.join(self._open)});"
                    f" use one of them, or restart it with a larger --max-hosts"
                )
            hosted = self._connect(host, key)
            if variants is None:
                variants = self._open[host] = OrderedDict()
                if hosted.keeps_definitions:
                    self._replay(hosted)
                elif self._store.forget_definitions(host):  # stale: the driver's files rule
                    log.warning("%s keeps its own definitions: dropped virtjobd's records", host)
            variants[key] = hosted
            while len(variants) > MAX_VARIANTS:
                _, old = variants.popitem(last=False)
                _close(old)
            return hosted

    @staticmethod
    def _connect(host: str, key: str) -> Hosted:
        uri = parse_uri(key)
        if uri.is_remote:  # pragma: no cover - the name checks above exclude it
            raise InvalidArgError(f"virtjobd hosts local drivers only, not {uri}")
        driver = connect_driver(uri)
        return Hosted(host, driver, keeps_definitions(driver))

    def remember(
        self, hosted: Hosted, type_: str, ref: DomainRef | NetworkRef, xml: str | None
    ) -> None:
        """Record a define (`xml`) or an undefine (None) for replay, if the driver needs it."""
        if hosted.keeps_definitions:
            self._store.record_definition(hosted.host, type_, str(ref.uuid), ref.name, xml)

    def open_hosts(self) -> list[str]:
        """The URIs of the hosts opened so far."""
        with self._lock:
            return list(self._open)

    def _replay(self, hosted: Hosted) -> None:
        """Re-create the definitions recorded for this host (called once, when first opened)."""
        driver = hosted.driver
        for item in self._store.definitions():
            if item.host != hosted.host:
                continue
            try:
                # A restart is a reboot of the host: what was undefined is gone, even a
                # built-in object the fresh host starts with (undefine it, then stop it).
                if item.type == "domain":
                    if item.xml is not None:
                        driver.define_domain(item.xml)
                    else:
                        ref = driver.lookup_domain(item.uuid)
                        driver.undefine_domain(ref)
                        if driver.domain_info(ref).state.active:
                            driver.domain_destroy(ref)
                elif item.xml is not None:
                    driver.define_network(item.xml)
                else:
                    net = driver.lookup_network(item.uuid)
                    driver.undefine_network(net)
                    if driver.network_info(net).active:
                        driver.network_destroy(net)
            except VirtError as exc:
                log.warning(
                    "%s: could not replay the %s of %s %r: %s",
                    hosted.host,
                    "definition" if item.xml is not None else "undefine",
                    item.type,
                    item.name,
                    exc,
                )

    def preload(self) -> None:
        """Open every host that has recorded definitions, replaying them now (at start-up)."""
        for host in dict.fromkeys(item.host for item in self._store.definitions()):
            driver, _, instance = host.partition(":///")
            try:
                self.get(driver, instance, {})
            except VirtError as exc:
                log.warning("cannot reopen host %s to replay its definitions: %s", host, exc)

    def close(self) -> None:
        """Close every driver connection; later `get` calls raise `OperationInvalidError`."""
        with self._lock:
            self._closed = True
            opened = [h for variants in self._open.values() for h in variants.values()]
            self._open.clear()
        for hosted in opened:
            _close(hosted)


def _close(hosted: Hosted) -> None:
    try:
        hosted.driver.close()
    except Exception:
        log.exception("closing the driver of %s failed", hosted.host)
