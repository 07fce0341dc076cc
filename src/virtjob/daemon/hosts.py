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

**Who opens a host.** Opening a host costs memory for good (a test host lives as long as the
process), so readers cannot open hosts, and `--max-hosts` bounds what writers can:

- the *well-known* hosts (`WELL_KNOWN`: ``test:///default``, ``qemu:///session``) open on
  demand, for any request, and never count against ``--max-hosts``;
- any other host comes into being with the first request that changes something (POST or
  DELETE: define, create, a job, an action), and counts against ``--max-hosts``;
- a read (GET) of a host not open yet opens nothing: it is answered by a *stand-in*, one
  pristine host per driver (instance `PROTOTYPE`, a name clients cannot give) that no
  request ever changes, so the answer is what that host would say once created (a test
  host's domain ``test``, with its fixed UUID). Errors name the host asked for;
- at start, hosts with recorded definitions are reopened and replayed whatever the limit
  (they were admitted before), so a restart locks nobody out that was not locked out before.

**Confinement.** Every host the daemon opens is confined at once (`Driver.confine`) to what
the operator allowed: file directories, excluded paths, emulators, QEMU arguments. A driver
that cannot be confined is not served.
"""

from __future__ import annotations

import copy
import logging
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import urlencode

from virtjob.drivers import connect_driver, host_params
from virtjob.drivers.base import Confinement, DomainRef, Driver, NetworkRef
from virtjob.errors import InvalidArgError, NoSupportError, OperationInvalidError, VirtError
from virtjob.uri import parse_uri

from .store import Store

log = logging.getLogger("virtjob.daemon")

_DRIVER = re.compile(r"^[a-z][a-z0-9]{0,31}$")
_INSTANCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_VARIANTS = 16
"""Parameter variants (e.g. different ``?rate=``) kept open per host; older ones are closed."""
WELL_KNOWN = frozenset({"test:///default", "qemu:///session"})
"""Hosts any request may open, not counted against ``--max-hosts`` (each driver's usual one)."""
PROTOTYPE = "_pristine"
"""Instance name of the stand-in hosts that answer reads of hosts not open yet; clients
cannot name it (an instance starts with a letter or digit)."""


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
    stand_in: str | None = None
    """For a host not open yet, read through its driver's stand-in: that stand-in's URI."""


def restate(error: VirtError, stand_in: str | None, host: str) -> VirtError:
    """`error` as `host` would say it: the `stand_in` URI in its message replaced by `host`'s
    (the error itself when there is no stand-in). The copy keeps the error's class, attributes,
    traceback and causes. Raises nothing."""
    if stand_in is None or stand_in not in error.message:
        return error
    changed = copy.copy(error)  # copies args and attributes, not the traceback or the chain
    changed.message = error.message.replace(stand_in, host)
    changed.args = (changed.message, *error.args[1:])
    changed.__traceback__ = error.__traceback__
    changed.__cause__ = error.__cause__
    changed.__context__ = error.__context__
    changed.__suppress_context__ = error.__suppress_context__
    return changed


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


def _refuse_host_params(driver: str, host: str, params: dict[str, str]) -> None:
    """Refuse a client's URI parameter that configures the shared host itself (the driver's
    `host_params`, e.g. the QEMU driver's ``accel``): on the daemon those are the operator's,
    never decided by whichever client comes first. Raises `InvalidArgError` naming the
    parameter and what to do instead."""
    declared = host_params(driver)
    refused = sorted(set(params) & set(declared))
    if refused:
        name = refused[0]
        raise InvalidArgError(
            f"{name} is chosen by the virtjobd operator for {host}, whose guests and jobs every"
            f" client shares; drop ?{name}= from the URI ({declared[name]})"
        )


class Hosts:
    """The hosts this daemon serves, at most `max_hosts` of them besides the well-known ones;
    thread-safe. Every host opened is confined to `confinement` (if given)."""

    def __init__(
        self, store: Store, max_hosts: int, confinement: Confinement | None = None
    ) -> None:
        self._store = store
        self._max_hosts = max_hosts
        self._confinement = confinement
        self._lock = threading.Lock()
        self._open: dict[str, OrderedDict[str, Hosted]] = {}
        self._stand_ins: dict[str, OrderedDict[str, Driver]] = {}
        self._closed = False

    def get(
        self,
        driver: str,
        instance: str,
        params: dict[str, str],
        *,
        change: bool = True,
        admit: bool = False,
    ) -> Hosted:
        """Return the open connection for ``driver:///instance?params``, opening it if needed.

        With `change` False (a read), a host that is neither open nor well-known is not
        opened: the answer reads through its driver's stand-in (see the module docs; pass
        errors raised while using it through `restate`). `admit` opens a host whatever the
        limit (the replay at start). Raises `InvalidArgError` for malformed names or
        parameters (a client may not give one that configures the shared host, such as the
        QEMU driver's ``accel``), `NoSupportError` for an unknown driver or one that cannot be
        confined, `OperationInvalidError` when `max_hosts` hosts are open already, and
        whatever the driver raises when it cannot open the host.
        """
        host = host_uri(driver, instance)
        if not admit:
            _refuse_host_params(driver, host, params)
        query = "?" + urlencode(sorted(params.items())) if params else ""
        key = host + query
        with self._lock:
            variants = self._open.get(host)
            if variants is not None and key in variants:
                variants.move_to_end(key)
                return variants[key]
            if self._closed:
                raise OperationInvalidError("virtjobd is shutting down; try again later")
            if variants is None and host not in WELL_KNOWN:
                if not change and not admit:
                    return self._stand_in(driver, host, query)
                counted = [name for name in self._open if name not in WELL_KNOWN]
                if len(counted) >= self._max_hosts and not admit:
                    raise OperationInvalidError(
                        f"virtjobd already hosts {self._max_hosts} hosts besides"
                        f" {' and '.join(sorted(WELL_KNOWN))} ({', '.join(counted)}), the most"
                        f" --max-hosts allows, so it cannot create {host}; use one of them, or"
                        f" restart virtjobd with a larger --max-hosts"
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

    def _stand_in(self, driver: str, host: str, query: str) -> Hosted:
        """The stand-in that answers reads of `host` (callers hold `_lock`)."""
        proto = f"{driver}:///{PROTOTYPE}"
        variants = self._stand_ins.get(driver)
        found = variants.get(proto + query) if variants is not None else None
        if found is None:
            try:
                found = self._connect(proto, proto + query).driver
            except VirtError as exc:  # nothing kept for a driver or parameters that fail
                raise restate(exc, proto, host) from exc
            variants = self._stand_ins.setdefault(driver, OrderedDict())
            variants[proto + query] = found
            while len(variants) > MAX_VARIANTS:
                _, old = variants.popitem(last=False)
                _close(Hosted(proto, old, False))
        elif variants is not None:
            variants.move_to_end(proto + query)
        return Hosted(host, found, False, proto)

    def _connect(self, host: str, key: str) -> Hosted:
        uri = parse_uri(key)
        if uri.is_remote:  # pragma: no cover - the name checks above exclude it
            raise InvalidArgError(f"virtjobd hosts local drivers only, not {uri}")
        driver = connect_driver(uri)
        if self._confinement is not None:
            try:
                driver.confine(self._confinement)
            except BaseException as exc:
                _close(Hosted(host, driver, False))
                if isinstance(exc, NoSupportError):
                    raise NoSupportError(
                        f"virtjobd cannot serve {host}: its driver cannot be confined to the"
                        f" allowed directories ({exc.message})"
                    ) from exc
                raise
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
                self.get(driver, instance, {}, admit=True)
            except VirtError as exc:
                log.warning("cannot reopen host %s to replay its definitions: %s", host, exc)

    def close(self) -> None:
        """Close every driver connection; later `get` calls raise `OperationInvalidError`."""
        with self._lock:
            self._closed = True
            opened = [h for variants in self._open.values() for h in variants.values()]
            opened += [
                Hosted(proto, driver, False)
                for variants in self._stand_ins.values()
                for proto, driver in variants.items()
            ]
            self._open.clear()
            self._stand_ins.clear()
        for hosted in opened:
            _close(hosted)


def _close(hosted: Hosted) -> None:
    try:
        hosted.driver.close()
    except Exception:
        log.exception("closing the driver of %s failed", hosted.host)
