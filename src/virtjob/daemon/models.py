"""Pydantic models of the daemon's API: request bodies (validated) and answers (documented).

**Request bodies** are validated strictly (unknown fields refused, text that is not UTF-8
refused with a message naming the field).

**Answers** are not built from these models: a route encodes its answer with the codecs of
`virtjob.api` (the same ones the remote driver decodes with) and returns the JSON as it is,
so no answer pays for a validation. The models below exist for ``/openapi.json`` only, and
are attached to the routes in one place (`ANSWERS` and `ERRORS`, used by
`virtjob.daemon.routes.table`). The job,
job info, domain info, network info and capabilities models are *derived* from the
dataclasses the codecs encode (`derive`): a field added to `JobDocument` or `JobInfo` appears
in the published schema with no edit here. Every key is required (the codecs always write
every key) and no other key is allowed, so the schema says exactly what the daemon sends; the
test-suite checks real answers of every route against the published schema
(tests/daemon/test_answers.py).
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import inspect
import itertools
import textwrap
import types
import typing
import uuid
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, create_model

from virtjob.api import JobDocument
from virtjob.api.routes import Answer
from virtjob.domain import MAX_FORCE_AFTER
from virtjob.drivers.base import Capabilities, DomainInfo, DomainRef, NetworkInfo, NetworkRef
from virtjob.errors import ErrorCode, VirtError
from virtjob.jobs import JobInfo, JobKind
from virtjob.paths import printable

_STRICT = ConfigDict(extra="forbid")


_WHAT_TO_DO = {
    "path": "rename the file (and any directory on the way) to a UTF-8 name",
    "xml": "send the document as UTF-8 text",
}


class NotTextError(ValueError):
    """A request field that is not valid text; its message names the field and what to do
    (the API's validation answer uses the message as it is)."""


def valid_text(value: str, info: ValidationInfo) -> str:
    """Refuse a string UTF-8 cannot encode: a JSON ``\\udcff`` escape (lone surrogate) stands
    for a byte that is not text, e.g. from a file name that is not UTF-8. Raises
    `NotTextError` naming the field (`info.field_name`), keeping the encoding error as its
    cause."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        field = info.field_name or "a field"
        raise NotTextError(
            f"{field} is not valid UTF-8 text: it holds {printable(value[exc.start : exc.end])}"
            f" at position {exc.start}, a byte that is not UTF-8 (sent as a lone surrogate);"
            f" {_WHAT_TO_DO.get(field, 'send valid UTF-8 text')}"
        ) from exc
    return value


Text = Annotated[str, AfterValidator(valid_text)]
"""A string that is valid text (encodable as UTF-8); the API refuses anything else with 400."""


# -- request bodies ---------------------------------------------------------------------------


class XmlBody(BaseModel):
    """A domain or network XML document (at most 1 MiB, checked by the XML parser)."""

    model_config = _STRICT
    xml: Text = Field(description="The XML document.")


class ShutdownBody(BaseModel):
    """How to shut a domain down: only ask the guest (the default), or force it off later."""

    model_config = _STRICT
    force_after: float | None = Field(
        default=None,
        ge=0,
        le=MAX_FORCE_AFTER,
        allow_inf_nan=False,
        description="Seconds after which the domain is powered off at once (logged) if the"
        " guest has not powered off by then; null or absent: only ask the guest. The answer"
        " comes at once either way.",
    )


class PathBody(BaseModel):
    """An absolute file path on the daemon's host, inside one of its allowed directories."""

    model_config = _STRICT
    path: Text = Field(description="Absolute path, resolved (symlinks, '..') by the daemon.")


# -- answers (documentation only) -------------------------------------------------------------


class ErrorModel(BaseModel):
    """Every error answer (`virtjob.api.encode_error`): a stable code and a message saying
    what to do."""

    model_config = _STRICT
    code: ErrorCode
    message: str
    line: int | None = Field(default=None, description="XML errors: line of the problem.")
    column: int | None = Field(default=None, description="XML errors: column of the problem.")


class RefModel(BaseModel):
    """Identifies a domain or a network on its host (`virtjob.api.objects.encode_ref`)."""

    model_config = _STRICT
    type: Literal["domain", "network"]
    name: str
    uuid: str = Field(json_schema_extra={"format": "uuid"})


def _attribute_docs(cls: type) -> dict[str, str]:
    """The docstrings written under the fields of `cls` (none if its source is not at hand)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):
        return {}
    docs: dict[str, str] = {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    for node, after in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _documented(hint: Any, overrides: Mapping[Any, Any]) -> Any:
    """The type that documents a dataclass field typed `hint` (see `derive`)."""
    if hint in overrides:
        return overrides[hint]
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        rest = tuple(arg for arg in args if arg is not type(None))
        inner = rest[0] if len(rest) == 1 else typing.Union[rest]  # noqa: UP007 - from a tuple
        return _documented(inner, overrides) | None
    if hint is uuid.UUID:
        return Annotated[str, Field(json_schema_extra={"format": "uuid"})]
    if hint in (str, int, float, bool) or (isinstance(hint, type) and issubclass(hint, enum.Enum)):
        return hint
    raise TypeError(f"no documented type for {hint!r}: add it to the overrides")


def derive(cls: type, overrides: Mapping[Any, Any] | None = None) -> type[BaseModel]:
    """A pydantic model named ``{cls.__name__}Model`` that documents the JSON object the
    `virtjob.api` codec makes of dataclass `cls`: one required key per field, no other key,
    descriptions from the class's docstrings. `overrides` maps a field type to the type that
    documents it. Raises `TypeError` for a field type it cannot document."""
    hints = typing.get_type_hints(cls)
    docs = _attribute_docs(cls)
    fields: dict[str, Any] = {}
    for spec in dataclasses.fields(cls):
        if spec.init:
            documented = _documented(hints[spec.name], overrides or {})
            field = Field(description=docs.get(spec.name), alias=spec.name)
            # a key such as "schema" is an attribute of BaseModel: named apart, keyed the same
            fields[spec.name + "_" if hasattr(BaseModel, spec.name) else spec.name] = (
                documented,
                field,
            )
    model: type[BaseModel] = create_model(
        f"{cls.__name__}Model",
        __config__=_STRICT,
        __doc__=inspect.getdoc(cls),
        **fields,
    )
    return model


JobInfoModel = derive(JobInfo)
JobModel = derive(
    JobDocument,
    {DomainRef | NetworkRef: RefModel, VirtError: ErrorModel, JobInfo: JobInfoModel},
)
DomainInfoModel = derive(DomainInfo)
NetworkInfoModel = derive(NetworkInfo)
CapabilitiesModel = derive(Capabilities, {frozenset[JobKind]: list[JobKind]})


class HostModel(BaseModel):
    """A hosted driver: its URI and capabilities."""

    model_config = _STRICT
    uri: str
    capabilities: CapabilitiesModel  # type: ignore[valid-type]


class XmlModel(BaseModel):
    """An XML document."""

    model_config = _STRICT
    xml: str


class VersionModel(BaseModel):
    """The daemon's version and the hosts it has open."""

    model_config = _STRICT
    version: str
    api: str
    hosts: list[str]


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorModel, "description": description}
    for status, description in (
        (400, "invalid-arg or xml-error: a malformed request, path or document"),
        (401, "auth-failed: missing or wrong bearer token"),
        (403, "access-denied: a path outside the allowed directories"),
        (404, "no-domain, no-network, no-job; no-support for an unknown driver or route"),
        (405, "no-support: a method the path does not have (with Allow)"),
        (409, "operation-invalid: not allowed in the current state (e.g. a job runs)"),
        (413, "invalid-arg: request body over the limit"),
        (500, "operation-failed or internal-error"),
        (501, "no-support: the driver lacks this operation"),
        (502, "no-connect: the host (or what its driver talks to) could not be reached"),
        (503, "operation-invalid: too many connections (the connection is then closed)"),
        (504, "operation-timeout: a wait on the host ran out of time"),
    )
}
"""The error answers any route may give (`virtjob.daemon.answers.error_answer`): every
status of docs/api.md's table (a test checks both)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Stream:
    """Documents an answer that is a stream rather than one JSON body: its media type, the
    model of each item's data, and what it is."""

    media_type: str
    item: type[BaseModel]
    description: str


EVENTS = Stream(
    "text/event-stream",
    JobInfoModel,
    "Server-sent events: one `info` event per change of the job, whose data is its info (as"
    " in its document), the last one final; then the stream ends.",
)
"""The answer kind "events" (`virtjob.api.routes.Answer`): a job's event stream."""

ANSWERS: Mapping[Answer, Any] = {
    "host": HostModel,
    "refs": list[RefModel],
    "ref": RefModel,
    "domain-info": DomainInfoModel,
    "network-info": NetworkInfoModel,
    "xml": XmlModel,
    "job": JobModel,
    "jobs": list[JobModel],  # type: ignore[valid-type]
    "version": VersionModel,
    "events": EVENTS,
    "nothing": None,
}
"""The model documenting each kind of answer of `virtjob.api.routes` (a `Stream` for a
stream; None: no body)."""
