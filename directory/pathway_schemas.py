"""What callers may write about cases, handoffs and pathway events (no identity, short free text).

Every free-text field here is one of the annotated types below, and each refuses what looks like a
phone number, an e-mail, a street address or a date of birth (directory/free_text.py).
"""

from __future__ import annotations

import uuid
from typing import Annotated

from pydantic import AfterValidator, ConfigDict, Field, Strict, model_validator

from .free_text import no_identifying_data
from .models import Gender
from .pathway_models import (
    Beneficiary,
    Caller,
    HandoffKind,
    HandoffStatus,
    IntakeChannel,
    LegalBasis,
    PathwayEventKind,
    Tristate,
    Urgency,
)
from .schemas import (
    UNIQUE_ITEMS,
    WHOLE,
    CollectiviteCode,
    CommuneCode,
    Filled,
    Input,
    OneLine,
    SpecialismSlug,
    Text,
    Timestamp,
    unique,
)

_NO_IDENTITY = "Refused when it looks like a phone number, an e-mail, a street address or a date of birth."
ShortText = Annotated[Text, Field(max_length=500), AfterValidator(no_identifying_data)]
SafeContact = Annotated[OneLine, Field(max_length=200), AfterValidator(no_identifying_data)]
EventNote = Annotated[Text, Field(max_length=280), AfterValidator(no_identifying_data)]
IntakeAge = Annotated[int, Strict(), Field(ge=0, le=25), WHOLE]
Needs = Annotated[list[SpecialismSlug], Field(max_length=16), AfterValidator(unique), UNIQUE_ITEMS]


class CaseFields(Input):
    age: Annotated[IntakeAge, Field(description="Age in years at intake.")] | None = None
    gender: Gender | None = None
    residence_collectivite: CollectiviteCode | None = None
    found_in_commune: CommuneCode | None = Field(default=None, description="Commune level only, never a point.")
    intake_channel: IntakeChannel | None = None
    caller: Caller | None = None
    known_to_child_welfare: Tristate | None = None
    needs: Needs | None = None
    do_not_contact_minor_directly: bool | None = None
    do_not_contact_parents: bool | None = None
    safe_contact: SafeContact | None = Field(
        default=None, description=f"Safe channel or time; short, no identity. {_NO_IDENTITY}"
    )


class CaseCreate(CaseFields):
    age: Annotated[IntakeAge, Field(description="Age in years at intake.")]
    residence_collectivite: CollectiviteCode
    intake_channel: IntakeChannel
    caller: Caller


class CasePatch(CaseFields):
    """JSON Merge Patch (RFC 7396)."""


class HandoffCreate(Input):
    # As the document states the rule `directory.handoffs.create` applies: only an information préoccupante
    # may leave the receiver out (it is routed to the CRIP of the child's residence).
    model_config = ConfigDict(
        json_schema_extra={
            "if": {"not": {"properties": {"kind": {"const": "information_preoccupante"}}}},
            "then": {"required": ["to_organisation_id"], "properties": {"to_organisation_id": {"type": "string"}}},
        }
    )

    case_id: uuid.UUID
    kind: HandoffKind
    to_organisation_id: uuid.UUID | None = Field(
        default=None,
        description="Required except for an information préoccupante: it then goes to the "
        "CRIP of the child's residence.",
    )
    to_service_id: uuid.UUID | None = None
    beneficiary: Beneficiary
    urgency: Urgency
    legal_basis: LegalBasis
    reason: ShortText | None = Field(default=None, description=f"Why, in a few words. {_NO_IDENTITY}")


class TransitionIn(Input):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    to: HandoffStatus
    reason_code: Annotated[str, Field(max_length=32)] | None = None
    reason: ShortText | None = Field(default=None, description=f"Why, in a few words. {_NO_IDENTITY}")
    expected: HandoffStatus | None = Field(
        default=None,
        alias="from",
        description="The status you saw. When given and no longer current, the move is refused (409), so "
        "that concurrent, conflicting moves cannot both apply.",
    )


class PathwayEventIn(Input):
    # `_note_only_for_notes`, as the document states it: a note event needs a note with some text.
    model_config = ConfigDict(
        json_schema_extra={
            "if": {"properties": {"kind": {"const": "note"}}, "required": ["kind"]},
            "then": {"required": ["note"], "properties": {"note": {"type": "string", "pattern": "\\S"}}},
        }
    )

    kind: PathwayEventKind
    occurred_at: Timestamp | None = Field(default=None, description="Defaults to now.")
    note: EventNote | None = Field(default=None, description=f"Free text. {_NO_IDENTITY}")

    @model_validator(mode="after")
    def _note_only_for_notes(self) -> PathwayEventIn:
        if self.kind == PathwayEventKind.note and not self.note:
            raise ValueError("a note event needs a note")
        return self


class Assignee(Input):
    """A specialist who works the case through this handoff, named as their identity provider names
    them. `issuer` defaults to the caller's own."""

    issuer: Annotated[Filled, Field(max_length=300)] | None = None
    subject: Annotated[Filled, Field(max_length=200)]


def _each_once(assignees: list[Assignee]) -> list[Assignee]:
    people = [(a.issuer, a.subject) for a in assignees]
    if len(set(people)) != len(people):
        raise ValueError("name each assignee once")
    return assignees


class AssigneesIn(Input):
    assignees: Annotated[list[Assignee], Field(max_length=20), AfterValidator(_each_once)]
