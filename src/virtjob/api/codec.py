"""A JSON codec for frozen dataclasses, built once per class from its type hints.

`DataclassCodec(cls)` encodes an instance as a JSON object with one key per field, and
decodes such an object back, checking each value against the field's type: ``str``, ``int``,
``float`` (finite: JSON has no NaN or infinity), ``bool``, an `enum.Enum`, `uuid.UUID`, a
nested dataclass, a type with a codec registered in `extra`, and ``X | None`` of any of
these. A key the class lacks is ignored (a newer peer's field); a missing key takes the
field's default (an older peer's document), and is an error only for a field without one. So
adding a field with a default to a dataclass that crosses the wire is one edit: the codec
follows.

Decoding raises `MalformedError` (a `ValueError`) naming the field; callers turn it into the
`InternalError` the user sees (`malformed`).
"""

from __future__ import annotations

import dataclasses
import enum
import math
import types
import typing
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from virtjob.errors import InternalError

T = TypeVar("T")
Json = dict[str, Any]
Encode = Callable[[Any], Any]
Decode = Callable[[Any], Any]


class MalformedError(ValueError):
    """A JSON value that does not have the shape its type needs."""


def malformed(what: str, data: object, exc: BaseException) -> InternalError:
    """The error for a `what` the peer sent that does not have the expected shape."""
    return InternalError(
        f"the daemon sent a malformed {what} ({exc}): {str(data)[:200]}; are the daemon and"
        f" this client the same virtjob version?"
    )


def _check(kind: type | tuple[type, ...], name: str) -> Decode:
    def decode(value: Any) -> Any:
        if isinstance(value, bool) and kind is not bool:
            raise MalformedError(f"{name}: expected {kind}, got {value!r}")
        if not isinstance(value, kind):
            raise MalformedError(f"{name}: expected {kind}, got {value!r}")
        return value

    return decode


def _float(value: Any) -> float:
    try:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError
        number = float(value)  # OverflowError for an int past the float range
        if not math.isfinite(number):
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise MalformedError(f"expected a finite number, got {str(value)[:40]}") from None
    return number


def _converters(
    hint: Any, extra: Mapping[Any, tuple[Encode, Decode]], where: str
) -> tuple[Encode | None, Decode]:
    """The encoder (None: the value is JSON as it is) and decoder of a field typed `hint`."""
    if hint in extra:
        return extra[hint]
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        rest = tuple(arg for arg in args if arg is not type(None))
        inner = rest[0] if len(rest) == 1 else typing.Union[rest]  # noqa: UP007 - built from a tuple
        encode, decode = _converters(inner, extra, where)
        return (
            None if encode is None else (lambda v: None if v is None else encode(v)),
            lambda v: None if v is None else decode(v),
        )
    if hint is float:
        return None, _float
    if hint in (str, int, bool):
        return None, _check(hint, where)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return (lambda v: v.value), hint
    if hint is uuid.UUID:
        return str, lambda v: uuid.UUID(_check(str, where)(v))
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        codec = DataclassCodec(hint, extra)
        return codec.encode, codec.decode
    raise TypeError(f"{where}: no JSON codec for {hint!r}")


class DataclassCodec(Generic[T]):
    """Encodes and decodes one dataclass; see the module docs. Build it once, at import."""

    def __init__(
        self, cls: type[T], extra: Mapping[Any, tuple[Encode, Decode]] | None = None
    ) -> None:
        """Read `cls`'s fields and type hints; `TypeError` for a field type it cannot handle.

        `extra` maps a type (or a union) to its own (encoder, decoder) pair.
        """
        self.cls = cls
        hints = typing.get_type_hints(cls)
        self._fields: list[tuple[str, Encode | None, Decode, bool]] = []
        for spec in dataclasses.fields(cls):  # type: ignore[arg-type]
            if not spec.init:
                continue
            where = f"{cls.__name__}.{spec.name}"
            encode, decode = _converters(hints[spec.name], extra or {}, where)
            required = (
                spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING
            )
            self._fields.append((spec.name, encode, decode, required))

    def encode(self, value: T) -> Json:
        """`value` as a JSON object."""
        out: Json = {}
        for name, encode, _decode, _required in self._fields:
            item = getattr(value, name)
            out[name] = item if encode is None else encode(item)
        return out

    def decode(self, data: Any) -> T:
        """The instance `data` describes; `MalformedError` naming the first bad field."""
        if not isinstance(data, dict):
            raise MalformedError(f"expected a JSON object for {self.cls.__name__}, got {data!r}")
        values: Json = {}
        for name, _encode, decode, required in self._fields:
            if name not in data:
                if required:
                    raise MalformedError(f"{self.cls.__name__}.{name} is missing")
                continue
            try:
                values[name] = decode(data[name])
            except MalformedError as exc:
                raise MalformedError(f"{self.cls.__name__}.{name}: {exc}") from exc
            except (TypeError, ValueError, AttributeError, OverflowError) as exc:
                raise MalformedError(f"{self.cls.__name__}.{name}: {exc}") from exc
        return self.cls(**values)

    def decode_from_peer(self, data: Any, what: str) -> T:
        """`decode`, a malformed value reported as the `InternalError` (`malformed`) that
        names `what` the peer sent."""
        try:
            return self.decode(data)
        except MalformedError as exc:
            raise malformed(what, data, exc) from exc
