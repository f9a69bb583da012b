"""Who is calling, and what they may see. Every scoped read starts from this module."""

import uuid
from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    specialist = "specialist"  # the 119 unit's specialists
    partner = "partner"  # an organisation's staff or system, scoped to that organisation
    department = "department"  # a collectivité's analysts, scoped to its aggregates
    admin = "admin"


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    role: Role
    organisation_id: uuid.UUID | None = None
    collectivite_code: str | None = None
    # Set when the token came from an API client (client-credentials grant): writes re-check it.
    client_id: uuid.UUID | None = None
