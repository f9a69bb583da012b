"""Directory tables. Organisations are shared by listings, handoffs and statistics."""

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Field, SQLModel

from geo.models import created_at, enum_column


class OrganisationKind(StrEnum):
    crip = "crip"
    association = "association"
    public_service = "public_service"
    health = "health"
    justice = "justice"
    police = "police"
    other = "other"


class Verification(StrEnum):
    unverified = "unverified"
    verified = "verified"


def updated_at() -> Any:
    return Field(
        default=None,
        sa_type=sa.DateTime(timezone=True),
        sa_column_kwargs={"server_default": sa.func.now(), "onupdate": sa.func.now(), "nullable": False},
    )


class Organisation(SQLModel, table=True):
    __tablename__ = "organisation"
    __table_args__ = (
        # One CRIP per collectivité: the competence answer must be unambiguous.
        sa.Index(
            "uq_organisation__crip_collectivite",
            "collectivite_code",
            unique=True,
            postgresql_where=sa.text("kind = 'crip'"),
        ),
        sa.CheckConstraint("kind <> 'crip' OR collectivite_code IS NOT NULL", name="crip_has_collectivite"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str = Field(max_length=200)
    kind: OrganisationKind = enum_column(OrganisationKind, index=True)
    description: str | None = Field(default=None, max_length=2000)
    website: str | None = Field(default=None, max_length=500)
    email: str | None = Field(default=None, max_length=254)
    phone: str | None = Field(default=None, max_length=32)
    siren: str | None = Field(default=None, max_length=9)
    rna: str | None = Field(default=None, max_length=10)
    collectives: list[str] = Field(
        default_factory=list, sa_column=sa.Column(ARRAY(sa.String(64)), nullable=False, server_default="{}")
    )
    # For CRIPs (and later any public body) the collectivité it acts for.
    collectivite_code: str | None = Field(default=None, foreign_key="collectivite.code", max_length=4)
    seat_commune_code: str | None = Field(default=None, foreign_key="commune.code", max_length=5)
    verification: Verification = enum_column(Verification, default=Verification.unverified)
    verified_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    demo: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    # Natural key of seeded rows ("crip:93D", "collective:acpe"), so re-seeding updates, never duplicates.
    seed_key: str | None = Field(default=None, max_length=80, unique=True)
    created_at: datetime = created_at()
    updated_at: datetime = updated_at()
