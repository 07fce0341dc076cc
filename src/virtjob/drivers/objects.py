"""Bookkeeping shared by drivers that keep their domains and networks by UUID.

A driver's object (a test domain, a QEMU domain, a test network) only needs a `config` with a
`name` and a `uuid`; these helpers look such objects up, refuse a second object with the same
name or UUID, and refuse an operation on an object a job is busy with — with the same
messages in every driver.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Protocol, TypeVar

from virtjob.errors import OperationInvalidError, VirtError
from virtjob.jobs import LocalJobDriver


class Identity(Protocol):
    """What every domain or network configuration has."""

    @property
    def name(self) -> str:
        """The object's name, unique on its host."""
        ...

    @property
    def uuid(self) -> uuid.UUID:
        """The object's UUID, unique on its host."""
        ...


class Held(Protocol):
    """A driver's record of one object."""

    @property
    def config(self) -> Identity:
        """The object's configuration."""
        ...


H = TypeVar("H", bound=Held)


def find(table: Mapping[uuid.UUID, H], key: str) -> H | None:
    """The object in `table` named `key`, or whose UUID is `key`; None if there is none."""
    try:
        wanted: uuid.UUID | None = uuid.UUID(key)
    except ValueError:
        wanted = None
    for item in table.values():
        if item.config.name == key or (wanted is not None and item.config.uuid == wanted):
            return item
    return None


def lookup(
    table: Mapping[uuid.UUID, H], key: str, what: str, where: str, error: type[VirtError]
) -> H:
    """The object in `table` named `key` or with UUID `key`; else `error` saying where."""
    found = find(table, key)
    if found is None:
        raise error(f"no {what} {key!r} on {where}; list {what}s to see what exists")
    return found


def by_ref(table: Mapping[uuid.UUID, H], ref: Identity, what: str, error: type[VirtError]) -> H:
    """The object `ref` identifies; `error` if it has gone since the ref was taken."""
    found = table.get(ref.uuid)
    if found is None:
        raise error(f"{what} {ref.name!r} ({ref.uuid}) no longer exists")
    return found


def check_clash(
    table: Mapping[uuid.UUID, H], config: Identity, what: str, allow: H | None = None
) -> None:
    """Refuse `config` with `OperationInvalidError` if another `what` (not `allow`) in `table`
    already has its name or its UUID."""
    for other in table.values():
        if other is allow:
            continue
        if other.config.name == config.name:
            raise OperationInvalidError(
                f"{what} {config.name!r} already exists (uuid {other.config.uuid});"
                f" to change its definition give that <uuid> in the XML, else choose another"
                f" name or undefine it first"
            )
        if other.config.uuid == config.uuid:
            raise OperationInvalidError(
                f"uuid {config.uuid} is already used by {what} {other.config.name!r};"
                f" remove the <uuid> element to get a fresh one"
            )


def refuse_if_busy(jobs: LocalJobDriver, lock_key: str, action: str) -> None:
    """Refuse `action` with `OperationInvalidError` naming the job that holds `lock_key`."""
    holder = jobs.busy_with(lock_key)
    if holder is not None:
        raise OperationInvalidError(
            f"cannot {action}: {holder.subject!r} is busy with {holder.kind} job {holder.id};"
            f" wait for it or cancel it first"
        )


_STOPPING = frozenset({"destroy", "shut down"})


def not_running(action: str, name: str, state: str = "shut off") -> OperationInvalidError:
    """The refusal of `action` on domain `name`, which is not running (it is `state`)."""
    advice = "there is nothing to stop" if action in _STOPPING else "start it first"
    return OperationInvalidError(f"cannot {action} domain {name!r}: it is {state}; {advice}")
