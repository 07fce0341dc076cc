"""`DomainRef` and `NetworkRef`: what names a domain or a network on its host.

Plain values every layer shares: drivers hand them out, the public `Domain` and `Network` wrap
them, and the job engine's documents (`virtjob.api.JobDocument`) carry one as a job's result.
They live apart from the driver protocol so that the engine and the wire contract need
nothing else of it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DomainRef:
    """Identifies a domain on its host."""

    name: str
    uuid: uuid.UUID


@dataclass(frozen=True, slots=True)
class NetworkRef:
    """Identifies a network on its host."""

    name: str
    uuid: uuid.UUID
