"""`Hosts`: the local drivers virtjobd hosts, opened by URI on first use and kept open.

A request names a host as ``/v1/hosts/{driver}/{instance}``; that is the local URI
``driver:///instance`` handed to `virtjob.drivers.connect_driver` (with the daemon's state
directory, where a driver that keeps files keeps them), so any local driver works
(``test:///default``, ``qemu:///session``) with no special case here. That URI is also the
host's key: the ``host`` of its jobs' documents, which each driver's job driver names the
same way (`Recorder.track` refuses a job whose document says otherwise). The query parameters of
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

**Who keeps a host open.** Only state keeps a host counted: a change request (`changing`) that
fails and leaves its host *pristine* (no queued or running job, and the same domains and
networks, in the same states, as its driver's stand-in) closes the host again,
unless another change request is at work on it; `close_host` (``DELETE
/v1/hosts/{driver}/{instance}``) closes a pristine host on request and refuses one holding
state. Closing forgets the host's records and calls the driver's optional ``discard_host()``
hook (the test driver drops the simulated machine), so the host reopens fresh. An undefine of
an object the fresh host never had leaves no tombstone (there is nothing to undo at a replay),
and tombstones of that kind an older daemon left are purged at start.

**Limits inside a host.** `admitting` serialises the requests that add a domain or network
to a host and refuses one past ``--max-domains`` / ``--max-networks`` (objects on the host
plus create and restore jobs not yet finished).

**Confinement.** Every host the daemon opens is confined at once (`Driver.confine`) to what
the operator allowed: file directories, excluded paths, emulators, QEMU arguments. A driver
that cannot be confined is not served.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from virtjob.config import parse_domain_xml, parse_network_xml
from virtjob.drivers import connect_driver, host_params
from virtjob.drivers.base import Confinement, DomainRef, Driver, NetworkRef
from virtjob.errors import (
    InvalidArgError,
    NoDomainError,
    NoNetworkError,
    NoSupportError,
    OperationInvalidError,
    VirtError,
)
from virtjob.jobs import JobKind
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
    thread-safe. Every host opened is confined to `confinement` (if given), and opened with the
    operator's `host_params` for its driver (e.g. ``{"qemu": {"accel": "tcg"}}`` from
    ``--qemu-accel``), which clients may not give (`host_params` of `virtjob.drivers`).
    Drivers that keep files keep them in `state_dir` (None: their default)."""

    def __init__(
        self,
        store: Store,
        max_hosts: int,
        confinement: Confinement | None = None,
        *,
        max_domains: int = 64,
        max_networks: int = 64,
        host_params: Mapping[str, Mapping[str, str]] | None = None,
        state_dir: str | None = None,
    ) -> None:
        self._store = store
        self._state_dir = state_dir
        self._max_hosts = max_hosts
        self._max_domains = max_domains
        self._max_networks = max_networks
        self._confinement = confinement
        self._host_params = {name: dict(params) for name, params in (host_params or {}).items()}
        self._lock = threading.Lock()
        self._open: dict[str, OrderedDict[str, Hosted]] = {}
        self._stand_ins: dict[str, OrderedDict[str, Driver]] = {}
        self._changing: dict[str, int] = {}
        """Change requests at work on each host (`changing`): such a host is never closed."""
        self._admission: dict[str, threading.Lock] = {}
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

    @contextlib.contextmanager
    def changing(self, driver: str, instance: str, params: dict[str, str]) -> Iterator[Hosted]:
        """The host for a change request, opened if needed (as `get`), for the `with` block.

        While the block runs the host is never closed. If the block raises and leaves the
        host `pristine` with no other change request at work on it, the host is closed again
        (see the module docs): a failed request does not keep a host open. Raises what `get`
        raises, then whatever the block raises.
        """
        host = host_uri(driver, instance)
        with self._lock:
            self._changing[host] = self._changing.get(host, 0) + 1
        try:
            hosted = self.get(driver, instance, params)
        except BaseException:
            self._done_changing(host, failed=False)
            raise
        failed = True
        try:
            yield hosted
            failed = False
        finally:
            self._done_changing(host, failed=failed)

    def _done_changing(self, host: str, *, failed: bool) -> None:
        with self._lock:
            left = self._changing[host] - 1
            if left:
                self._changing[host] = left
            else:
                del self._changing[host]
            if not failed or left or host in WELL_KNOWN or host not in self._open:
                return
            try:
                fresh = self._pristine_why(host) is None
            except Exception:  # the failure being answered matters more
                log.exception("cannot tell whether %s is still pristine", host)
                return
            if fresh:
                log.info("%s: closed again, the failed request left it as it was opened", host)
                self._close_host(host)

    def close_host(self, driver: str, instance: str) -> bool:
        """Close the open host ``driver:///instance`` if it is pristine; return whether it was
        open. Its records are forgotten, so it reopens fresh. Raises `InvalidArgError` for
        malformed names, `OperationInvalidError` for a well-known host, one a change request
        is at work on, or one holding state (saying which, and what to do)."""
        host = host_uri(driver, instance)
        if host in WELL_KNOWN:
            raise OperationInvalidError(
                f"{host} is a well-known host: it is always served and does not count against"
                f" --max-hosts, so it cannot be closed"
            )
        with self._lock:
            if host not in self._open:
                return False
            if host in self._changing:
                raise OperationInvalidError(
                    f"cannot close host {host}: a request is changing it right now; try again"
                )
            why = self._pristine_why(host)
            if why is not None:
                raise OperationInvalidError(
                    f"cannot close host {host}: {why}; a host is closed only when it holds"
                    f" nothing a fresh one would not (undefine or destroy what was added, wait"
                    f" for or cancel its jobs), so that closing it loses nothing"
                )
            self._close_host(host)
            return True

    def _pristine_why(self, host: str) -> str | None:
        """None if open `host` is pristine, else what it holds (callers hold `_lock`)."""
        hosted = next(reversed(self._open[host].values()))
        live = [
            f"{job.kind} of {job.subject!r}"
            for job in hosted.driver.list_jobs()
            if not job.info().state.terminal
        ]
        if live:
            return f"it has {len(live)} job(s) queued or running ({', '.join(live[:3])})"
        name, _, _ = host.partition(":///")
        fresh = self._stand_in(name, host, "").driver
        try:
            ours, theirs = _objects(hosted.driver), _objects(fresh)
        except VirtError as exc:  # an object went away while we looked: not settled
            return f"its objects changed while virtjobd looked at them ({exc.message})"
        if ours != theirs:
            changed = sorted({what for what, *_ in ours.symmetric_difference(theirs)})
            listed = ", ".join(f"{kind} {label!r}" for kind, label in changed[:5])
            return f"its objects differ from a fresh host's ({listed})"
        return None

    def _close_host(self, host: str) -> None:
        """Close every variant of `host`, forget its records and discard it (hold `_lock`)."""
        variants = self._open.pop(host)
        for hosted in variants.values():
            _close(hosted)
        discard = getattr(hosted.driver, "discard_host", None)
        if callable(discard):
            try:
                discard()
            except Exception:
                log.exception("discarding %s failed", host)
        self._store.forget_definitions(host)
        self._admission.pop(host, None)

    def fresh_has(self, host: str, type_: str, uuid: str) -> bool:
        """Whether a fresh `host` (its driver's stand-in) has the domain or network `uuid`.
        Raises `VirtError` when the driver cannot be opened."""
        name, _, _ = host.partition(":///")
        with self._lock:
            fresh = self._stand_in(name, host, "").driver
            try:
                if type_ == "domain":
                    fresh.lookup_domain(uuid)
                else:
                    fresh.lookup_network(uuid)
            except (NoDomainError, NoNetworkError):
                return False
            return True

    @contextlib.contextmanager
    def admitting(self, hosted: Hosted, type_: str, xml: str | None = None) -> Iterator[None]:
        """Run the `with` block (which may add a domain or network to `hosted`) alone among
        such blocks of that host, once there is room: `OperationInvalidError` when the host
        already has ``--max-domains`` domains (``--max-networks`` networks), counting create
        and restore jobs not yet finished. A define of `xml` that redefines an existing
        object (same name and UUID) is always let through."""
        with self._lock:
            lock = self._admission.setdefault(hosted.host, threading.Lock())
        with lock:
            driver = hosted.driver
            if type_ == "domain":
                limit, option = self._max_domains, "--max-domains"
                refs: list[Any] = list(driver.list_domains())
                kinds: tuple[JobKind, ...] = (JobKind.DOMAIN_CREATE, JobKind.DOMAIN_RESTORE)
            else:
                limit, option = self._max_networks, "--max-networks"
                refs = list(driver.list_networks())
                kinds = (JobKind.NETWORK_CREATE,)
            pending = [
                job
                for job in driver.list_jobs()
                if job.kind in kinds and not job.info().state.terminal
            ]
            if len(refs) + len(pending) >= limit and not _redefines(type_, xml, refs):
                raise OperationInvalidError(
                    f"host {hosted.host} already has {len(refs)} {type_}s"
                    + (f" and {len(pending)} being created or restored" if pending else "")
                    + f", the most virtjobd's {option} ({limit}) allows; undefine or destroy"
                    f" one first, or ask the operator to restart virtjobd with a larger {option}"
                )
            yield

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
        chosen = self._host_params.get(uri.driver)
        if chosen:  # the operator's settings of the shared host (e.g. --qemu-accel)
            merged = urlencode(sorted({**uri.params, **chosen}.items()))
            uri = parse_uri(f"{key.partition('?')[0]}?{merged}")
        if uri.is_remote:  # pragma: no cover - the name checks above exclude it
            raise InvalidArgError(f"virtjobd hosts local drivers only, not {uri}")
        driver = connect_driver(uri, state_dir=self._state_dir)
        log.debug("opened %s", key)
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
        """Record a define (`xml`) or an undefine (None) for replay, if the driver needs it.

        An undefine of an object a fresh host does not have leaves no tombstone: its records
        are dropped (a replay would have nothing to undo). Raises `InternalError` if the store
        fails."""
        if not hosted.keeps_definitions:
            return
        if xml is None and not self._fresh_has_safe(hosted.host, type_, str(ref.uuid)):
            self._store.forget_definition(hosted.host, type_, str(ref.uuid))
        else:
            self._store.record_definition(hosted.host, type_, str(ref.uuid), ref.name, xml)

    def _fresh_has_safe(self, host: str, type_: str, uuid: str) -> bool:
        """`fresh_has`, True (keep the tombstone) when it cannot be told."""
        try:
            return self.fresh_has(host, type_, uuid)
        except VirtError as exc:
            log.warning(
                "%s: cannot tell whether a fresh host has %s %s: %s", host, type_, uuid, exc
            )
            return True

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
        """Open every host that has recorded definitions, replaying them now (at start-up).

        Tombstones of objects a fresh host does not have are purged first (they undo
        nothing), so a host with nothing else recorded is not reopened."""
        for item in self._store.definitions():
            if item.xml is None and not self._fresh_has_safe(item.host, item.type, item.uuid):
                self._store.forget_definition(item.host, item.type, item.uuid)
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


def _objects(driver: Driver) -> set[tuple[tuple[str, str], str, Any]]:
    """What a host holds, to compare with a fresh one: every domain's and network's info,
    without the run id (a fresh host numbers its domains afresh)."""
    held: set[tuple[tuple[str, str], str, Any]] = set()
    for ref in driver.list_domains():
        info = dataclasses.replace(driver.domain_info(ref), id=None, reason=None)
        held.add((("domain", ref.name), str(ref.uuid), info))
    for net in driver.list_networks():
        held.add((("network", net.name), str(net.uuid), driver.network_info(net)))
    return held


def _redefines(type_: str, xml: str | None, refs: list[Any]) -> bool:
    """Whether `xml` redefines one of `refs` (same name and UUID): it adds nothing."""
    if xml is None:
        return False
    try:
        config = parse_domain_xml(xml) if type_ == "domain" else parse_network_xml(xml)
    except VirtError:
        return False  # the define itself says what is wrong
    return any(ref.name == config.name and ref.uuid == config.uuid for ref in refs)


def _close(hosted: Hosted) -> None:
    try:
        hosted.driver.close()
    except Exception:
        log.exception("closing the driver of %s failed", hosted.host)
