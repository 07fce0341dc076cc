"""Pydantic models of the daemon's API: request bodies (validated) and responses (documented).

Request bodies are validated strictly (unknown fields refused). Responses are built by
`virtjob.drivers.remote.wire` for speed and declared here so that ``/openapi.json`` describes
exactly what the daemon sends; the test-suite checks the two agree.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo

from virtjob.domain import MAX_FORCE_AFTER
from virtjob.errors import ErrorCode
from virtjob.jobs import JobKind, JobState
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


class ErrorModel(BaseModel):
    """Every error answer: a stable code and a message saying what to do."""

    code: ErrorCode
    message: str
    line: int | None = Field(default=None, description="XML errors: line of the problem.")
    column: int | None = Field(default=None, description="XML errors: column of the problem.")


class JobInfoModel(BaseModel):
    """A snapshot of a job's progress (`virtjob.JobInfo`)."""

    state: JobState
    bounded: bool
    elapsed: float
    remaining: float | None
    percent: float | None
    processed: int | None
    total: int | None
    cancel_requested: bool


class RefModel(BaseModel):
    """Identifies a domain or a network on its host."""

    type: Literal["domain", "network"]
    name: str
    uuid: str


class JobModel(BaseModel):
    """A job: identity, latest progress, and its result or error once final."""

    id: str
    host: str = Field(description="The hosted driver's URI, e.g. test:///default.")
    kind: JobKind
    subject: str
    info: JobInfoModel
    result: RefModel | None = Field(description="Succeeded create/start/restore jobs only.")
    error: ErrorModel | None = Field(description="Failed jobs only.")
    target: str | None = Field(description="The file a save or dump writes.")
    created: float = Field(description="Wall-clock time (Unix seconds) the job was created.")
    started: float | None
    ended: float | None


class DomainInfoModel(BaseModel):
    """A snapshot of a domain."""

    name: str
    uuid: str
    id: int | None
    state: str
    memory: int
    current_memory: int
    vcpus: int
    persistent: bool
    os_type: str
    reason: str | None = Field(
        default=None, description="Why it is in its state (virsh's words), if known."
    )


class NetworkInfoModel(BaseModel):
    """A snapshot of a network."""

    name: str
    uuid: str
    active: bool
    persistent: bool
    bridge: str | None
    forward_mode: str | None


class CapabilitiesModel(BaseModel):
    """What the hosted driver offers."""

    driver: str
    job_kinds: list[JobKind]
    networks: bool
    hypervisor: str


class HostModel(BaseModel):
    """A hosted driver: its URI and capabilities."""

    uri: str
    capabilities: CapabilitiesModel


class XmlModel(BaseModel):
    """An XML document."""

    xml: str


class VersionModel(BaseModel):
    """The daemon's version and the hosts it has open."""

    version: str
    api: str
    hosts: list[str]
