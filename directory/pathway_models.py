"""Care-pathway tables: pseudonymous cases, handoffs and their events, the audit trail.

Minimisation (DESIGN §3): a case holds no name, birth date, address or phone — a random reference, an
age in years, optional gender, territory codes, intake channel, needs and contact-safety flags.

Every case-level row carries the collectivité of the child's residence (`collectivite_code`), and
foreign keys between them include it, so cases, handoffs and events can later be distributed by
collectivité (Citus) without a schema rewrite. Changing a case's residence cascades to its rows.
"""

import uuid
from datetime import date, datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from geo.columns import created_at, enum_column, text_array, timestamp, updated_at, version_column

from .access import Role
from .models import Gender


class CaseStatus(StrEnum):
    open = "open"
    closed = "closed"


class IntakeChannel(StrEnum):
    phone = "phone"
    web_form = "web_form"
    chat = "chat"
    partner = "partner"


class Caller(StrEnum):
    minor = "minor"
    parent = "parent"
    relative = "relative"
    professional = "professional"
    other = "other"


class Tristate(StrEnum):
    yes = "yes"
    no = "no"
    unknown = "unknown"


class HandoffKind(StrEnum):
    information_preoccupante = "information_preoccupante"
    orientation = "orientation"
    professional_contact = "professional_contact"
    signalement = "signalement"  # to the public prosecutor
    shelter_request = "shelter_request"


class Beneficiary(StrEnum):
    minor = "minor"
    entourage = "entourage"
    professional = "professional"


class Urgency(StrEnum):
    immediate = "immediate"
    within_24h = "within_24h"
    routine = "routine"


class LegalBasis(StrEnum):
    child_protection_duty = "child_protection_duty"
    consent = "consent"


class HandoffStatus(StrEnum):
    sent = "sent"
    acknowledged = "acknowledged"
    accepted = "accepted"
    declined = "declined"
    in_progress = "in_progress"
    on_hold = "on_hold"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"
    expired = "expired"
    entered_in_error = "entered_in_error"


class PathwayEventKind(StrEnum):
    runaway_started = "runaway_started"
    runaway_ended = "runaway_ended"
    relapse = "relapse"
    placement = "placement"
    complaint_filed = "complaint_filed"
    hospitalisation = "hospitalisation"
    contact_lost = "contact_lost"
    contact_restored = "contact_restored"
    note = "note"


class Case(SQLModel, table=True):
    # "case" is an SQL keyword: the table is case_record.
    __tablename__ = "case_record"
    __table_args__ = (
        sa.UniqueConstraint("collectivite_code", "id", name="uq_case_record__collectivite_code_id"),
        sa.CheckConstraint("age BETWEEN 0 AND 25", name="age_range"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    # Random, never derived from identity: what people quote on the phone.
    reference: str = Field(max_length=16, unique=True)
    collectivite_code: str = Field(
        foreign_key="collectivite.code",
        max_length=4,
        index=True,
        sa_column_kwargs={"comment": "residence of the child: the competent collectivité"},
    )
    found_in_commune_code: str | None = Field(default=None, foreign_key="commune.code", max_length=5)
    age: int = Field(sa_type=sa.SmallInteger)
    gender: Gender | None = enum_column(Gender, constraint="casegender", default=None, nullable=True)
    intake_channel: IntakeChannel = enum_column(IntakeChannel)
    caller: Caller = enum_column(Caller)
    known_to_child_welfare: Tristate = enum_column(Tristate, default=Tristate.unknown)
    needs: list[str] = text_array(64)
    do_not_contact_minor_directly: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    do_not_contact_parents: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    safe_contact: str | None = Field(default=None, max_length=200)
    status: CaseStatus = enum_column(CaseStatus, default=CaseStatus.open, server_default=CaseStatus.open)
    opened_at: datetime = created_at()
    closed_at: datetime | None = timestamp()
    created_by: str = Field(max_length=200)
    version: int = version_column()
    updated_at: datetime = updated_at()
    # The case's number in the statistics' rollups (directory/handoff_rollups.py): an internal sequence,
    # never shown, that outlives the case there once retention has deleted it.
    stat_no: int | None = Field(
        default=None, sa_column=sa.Column(sa.Integer, sa.Identity(always=True), nullable=False, unique=True)
    )


CREATED_MONTH = "date_trunc('month', timezone('Europe/Paris', created_at))::date"


class Handoff(SQLModel, table=True):
    __tablename__ = "handoff"
    __table_args__ = (
        sa.UniqueConstraint("collectivite_code", "id", name="uq_handoff__collectivite_code_id"),
        sa.ForeignKeyConstraint(
            ["collectivite_code", "case_id"],
            ["case_record.collectivite_code", "case_record.id"],
            onupdate="CASCADE",
            name="fk_handoff__case",
        ),
        sa.Index("ix_handoff__receiver_status", "receiver_organisation_id", "status"),
        sa.Index("ix_handoff__sender_status", "sender_organisation_id", "status"),
        sa.Index("ix_handoff__open_deadline", "acknowledge_by", postgresql_where=sa.text("status = 'sent'")),
        sa.Index("ix_handoff__receiver_service_id", "receiver_service_id"),
        # Statistics: atoms (collectivité, month, kind) and their distinct cases, from the index alone.
        sa.Index(
            "ix_handoff__stats", "collectivite_code", "created_month", "kind", postgresql_include=["case_id", "status"]
        ),
        # Need-to-know: the open handoffs a specialist sent (exact places of safe houses).
        sa.Index(
            "ix_handoff__sender_person_open",
            "created_by_issuer",
            "created_by",
            postgresql_where=sa.text("status IN ('sent', 'acknowledged', 'accepted', 'in_progress', 'on_hold')"),
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    case_id: uuid.UUID = Field(index=True)
    collectivite_code: str = Field(foreign_key="collectivite.code", max_length=4)
    sender_organisation_id: uuid.UUID = Field(foreign_key="organisation.id")
    receiver_organisation_id: uuid.UUID = Field(foreign_key="organisation.id")
    receiver_service_id: uuid.UUID | None = Field(default=None, foreign_key="service.id")
    kind: HandoffKind = enum_column(HandoffKind)
    beneficiary: Beneficiary = enum_column(Beneficiary)
    urgency: Urgency = enum_column(Urgency)
    legal_basis: LegalBasis = enum_column(LegalBasis)
    reason: str | None = Field(default=None, max_length=500)
    status: HandoffStatus = enum_column(HandoffStatus, default=HandoffStatus.sent, server_default=HandoffStatus.sent)
    acknowledge_by: datetime = Field(sa_type=sa.DateTime(timezone=True))
    overdue_at: datetime | None = timestamp()
    acknowledged_at: datetime | None = timestamp()
    accepted_at: datetime | None = timestamp()
    closed_at: datetime | None = timestamp()
    decline_reason: str | None = Field(default=None, max_length=32)
    created_at: datetime = created_at()
    # The Paris month of creation, the unit of every statistic (stored: computing it per row is most of
    # the cost of a national query).
    created_month: date | None = Field(
        default=None, sa_column=sa.Column(sa.Date, sa.Computed(CREATED_MONTH, persisted=True), nullable=False)
    )
    created_by: str = Field(max_length=200)
    # With created_by (the subject), the sender as one person across identity providers.
    created_by_issuer: str = Field(default="", max_length=300, sa_column_kwargs={"server_default": ""})
    version: int = version_column()


class HandoffAssignee(SQLModel, table=True):
    """A specialist the sender adds to a handoff: with the sender, the people working the child's case
    through it (they may see the receiving safe house exactly while it is open). Removal sets
    `removed_at`: the application's role never deletes."""

    __tablename__ = "handoff_assignee"
    __table_args__ = (
        sa.ForeignKeyConstraint(
            ["collectivite_code", "handoff_id"],
            ["handoff.collectivite_code", "handoff.id"],
            onupdate="CASCADE",
            name="fk_handoff_assignee__handoff",
        ),
        sa.Index("ix_handoff_assignee__person", "issuer", "subject", postgresql_where=sa.text("removed_at IS NULL")),
    )

    collectivite_code: str = Field(max_length=4)
    handoff_id: uuid.UUID = Field(primary_key=True)
    issuer: str = Field(primary_key=True, max_length=300)
    subject: str = Field(primary_key=True, max_length=200)
    added_at: datetime = created_at()
    added_by_issuer: str = Field(max_length=300)
    added_by: str = Field(max_length=200)
    removed_at: datetime | None = timestamp()


class HandoffEvent(SQLModel, table=True):
    """One immutable row per transition (and one for the creation, from_status null)."""

    __tablename__ = "handoff_event"
    __table_args__ = (
        sa.ForeignKeyConstraint(
            ["collectivite_code", "handoff_id"],
            ["handoff.collectivite_code", "handoff.id"],
            onupdate="CASCADE",
            name="fk_handoff_event__handoff",
        ),
    )

    id: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True))
    handoff_id: uuid.UUID = Field(index=True)
    case_id: uuid.UUID = Field(index=True)
    collectivite_code: str = Field(max_length=4)
    at: datetime = created_at()
    from_status: HandoffStatus | None = enum_column(
        HandoffStatus, default=None, nullable=True, constraint="from_status"
    )
    to_status: HandoffStatus = enum_column(HandoffStatus, constraint="to_status")
    reason_code: str | None = Field(default=None, max_length=32)
    reason: str | None = Field(default=None, max_length=500)
    actor_subject: str = Field(max_length=200)
    actor_role: Role | None = enum_column(Role, default=None, nullable=True)  # None: the system (expiry)
    actor_organisation_id: uuid.UUID | None = None


class CaseEvent(SQLModel, table=True):
    """Events of the child's pathway: runaways, returns, relapses, placements…"""

    __tablename__ = "case_event"
    __table_args__ = (
        sa.ForeignKeyConstraint(
            ["collectivite_code", "case_id"],
            ["case_record.collectivite_code", "case_record.id"],
            onupdate="CASCADE",
            name="fk_case_event__case",
        ),
    )

    id: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True))
    case_id: uuid.UUID = Field(index=True)
    collectivite_code: str = Field(max_length=4)
    kind: PathwayEventKind = enum_column(PathwayEventKind)
    occurred_at: datetime = Field(sa_type=sa.DateTime(timezone=True))
    recorded_at: datetime = created_at()
    note: str | None = Field(default=None, max_length=280)
    actor_subject: str = Field(max_length=200)
    actor_role: Role = enum_column(Role)
    actor_organisation_id: uuid.UUID | None = None
