"""Directory tables. Organisations are shared by listings, handoffs and statistics."""

import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from geoalchemy2 import Geometry
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSVECTOR
from sqlmodel import Field, SQLModel

import geo.models  # noqa: F401 - declares the territory tables these foreign keys refer to
from geo.columns import created_at, enum_column, geometry, text_array, updated_at, version_column

from .access import Role


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


class DataSource(SQLModel, table=True):
    """An outside source of listings (data·inclusion), named once with its licence."""

    __tablename__ = "data_source"

    slug: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    licence: str = Field(max_length=200)
    url: str = Field(max_length=500)


def _provenance(table: str) -> tuple[Any, ...]:
    """Table arguments of a row that may come from an outside source: (source, source_id) together,
    and unique per source, so a re-import finds the row it made."""
    return (
        sa.CheckConstraint("(source IS NULL) = (source_id IS NULL)", name="provenance_complete"),
        sa.Index(
            f"uq_{table}__source_source_id",
            "source",
            "source_id",
            unique=True,
            postgresql_where=sa.text("source IS NOT NULL"),
        ),
    )


class Provenance(SQLModel):
    """Where an imported row comes from: the source, its id there, the source's own update date, and
    when Maillage last imported it. Null on rows Maillage's users made."""

    source: str | None = Field(default=None, foreign_key="data_source.slug", max_length=64)
    source_id: str | None = Field(default=None, max_length=200)
    source_updated_on: date | None = None
    imported_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))


class Organisation(Provenance, table=True):
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
        *_provenance("organisation"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str = Field(max_length=200)
    kind: OrganisationKind = enum_column(OrganisationKind, index=True)
    description: str | None = Field(default=None, max_length=2000)
    website: str | None = Field(default=None, max_length=500)
    email: str | None = Field(default=None, max_length=254)
    phone: str | None = Field(default=None, max_length=32)
    siren: str | None = Field(default=None, max_length=9)
    siret: str | None = Field(default=None, max_length=14)
    rna: str | None = Field(default=None, max_length=10)
    collectives: list[str] = Field(
        default_factory=list, sa_column=sa.Column(ARRAY(sa.String(64)), nullable=False, server_default="{}")
    )
    # For CRIPs (and later any public body) the collectivité it acts for.
    collectivite_code: str | None = Field(default=None, foreign_key="collectivite.code", max_length=4)
    seat_commune_code: str | None = Field(default=None, foreign_key="commune.code", max_length=5)
    verification: Verification = enum_column(Verification, default=Verification.unverified)
    verified_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    deactivated_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    demo: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    # Natural key of seeded rows ("crip:93D", "collective:acpe"), so re-seeding updates, never duplicates.
    seed_key: str | None = Field(default=None, max_length=80, unique=True)
    version: int = version_column()
    created_at: datetime = created_at()
    updated_at: datetime = updated_at()


class Visibility(StrEnum):
    public = "public"
    # A safe house: exact address and point only for the owner and specialists with an open
    # handoff to one of its services; everyone else sees the commune and a front-door contact.
    confidential = "confidential"


class PointPrecision(StrEnum):
    exact = "exact"
    commune = "commune"


class ServiceStatus(StrEnum):
    active = "active"
    temporarily_closed = "temporarily_closed"
    suspended = "suspended"


class Capacity(StrEnum):
    available = "available"
    limited = "limited"
    full = "full"
    waitlist = "waitlist"


class Audience(StrEnum):
    minor = "minor"
    young_adult = "young_adult"
    entourage = "entourage"
    professional = "professional"


class Gender(StrEnum):
    female = "female"
    male = "male"
    other = "other"


class Channel(StrEnum):
    in_person = "in_person"
    phone = "phone"
    online = "online"
    outreach = "outreach"


class Specialism(SQLModel, table=True):
    """Mirror of directory.taxonomy, for labels in SQL-built responses and referential integrity."""

    __tablename__ = "specialism"

    slug: str = Field(primary_key=True, max_length=64)
    label_fr: str = Field(max_length=120)
    label_en: str = Field(max_length=120)
    data_inclusion: str | None = Field(default=None, max_length=120)
    position: int


class Location(Provenance, table=True):
    __tablename__ = "location"
    __table_args__ = (
        # Every spatial filter and ordering runs on public_point, so a confidential location can never
        # be located more precisely than its commune by combining queries.
        sa.Index("ix_location__public_point", "public_point", postgresql_using="gist"),
        sa.Index("ix_location__public_point_geography", sa.text("(public_point::geography)"), postgresql_using="gist"),
        # An outside source's open data is never a safe house.
        sa.CheckConstraint("source IS NULL OR visibility = 'public'", name="imported_public"),
        *_provenance("location"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    organisation_id: uuid.UUID = Field(foreign_key="organisation.id", index=True)
    name: str | None = Field(default=None, max_length=200)
    address: str | None = Field(default=None, max_length=300)
    commune_code: str = Field(foreign_key="commune.code", max_length=5)
    point: Any = Field(sa_column=sa.Column(Geometry("POINT", srid=4326, spatial_index=False), nullable=False))
    # Set by a trigger: the exact point when public, the commune's point when confidential.
    public_point: Any = Field(
        default=None, sa_column=sa.Column(Geometry("POINT", srid=4326, spatial_index=False), nullable=False)
    )
    visibility: Visibility = enum_column(Visibility, default=Visibility.public, server_default=Visibility.public)
    # "commune" when the point only says which commune (a seat known from a public source, no address).
    point_precision: PointPrecision = enum_column(
        PointPrecision, default=PointPrecision.exact, server_default=PointPrecision.exact
    )
    front_door_phone: str | None = Field(default=None, max_length=32)
    front_door_email: str | None = Field(default=None, max_length=254)
    # When the point came from the geocoder (sync/geocoding.py): its score (0–1) and result type.
    geocoding_score: float | None = None
    geocoding_type: str | None = Field(default=None, max_length=16)
    demo: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    seed_key: str | None = Field(default=None, max_length=80, unique=True)
    archived_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    version: int = version_column()
    created_at: datetime = created_at()
    updated_at: datetime = updated_at()


class Service(Provenance, table=True):
    __tablename__ = "service"
    __table_args__ = (
        sa.Index("ix_service__specialisms", "specialisms", postgresql_using="gin"),
        sa.Index("ix_service__coverage", "coverage", postgresql_using="gist"),
        sa.Index("ix_service__search_vector", "search_vector", postgresql_using="gin"),
        sa.Index("ix_service__covers_national", "covers_national", postgresql_where=sa.text("covers_national")),
        sa.CheckConstraint("age_min IS NULL OR age_max IS NULL OR age_min <= age_max", name="age_range"),
        sa.CheckConstraint("age_min IS NULL OR age_min BETWEEN 0 AND 99", name="age_min_range"),
        sa.CheckConstraint("age_max IS NULL OR age_max BETWEEN 0 AND 99", name="age_max_range"),
        sa.CheckConstraint("capacity_places IS NULL OR capacity_places >= 0", name="places_positive"),
        *_provenance("service"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    organisation_id: uuid.UUID = Field(foreign_key="organisation.id", index=True)
    location_id: uuid.UUID | None = Field(default=None, foreign_key="location.id", index=True)
    name: str = Field(max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    specialisms: list[str] = text_array(64)
    audiences: list[str] = text_array(32)
    age_min: int | None = Field(default=None, sa_type=sa.SmallInteger)
    age_max: int | None = Field(default=None, sa_type=sa.SmallInteger)
    genders: list[str] = text_array(16)
    languages: list[str] = text_array(3)
    channels: list[str] = text_array(16)
    phone: str | None = Field(default=None, max_length=32)
    email: str | None = Field(default=None, max_length=254)
    website: str | None = Field(default=None, max_length=500)
    # {"mode": "weekly"|"always"|"on_call"|"unknown", "weekly": {"mon": [["09:00", "12:00"]], ...},
    #  "closed_on_public_holidays": bool, "exceptions": [{"date": "2026-12-24", "hours": [...]}]}
    schedule: dict[str, Any] = Field(
        default_factory=lambda: {"mode": "unknown"},
        sa_column=sa.Column(JSONB, nullable=False, server_default=sa.text("""'{"mode": "unknown"}'""")),
    )
    status: ServiceStatus = enum_column(
        ServiceStatus, default=ServiceStatus.active, server_default=ServiceStatus.active
    )
    closed_from: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    closed_until: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    closure_message: str | None = Field(default=None, max_length=500)
    capacity: Capacity | None = enum_column(Capacity, default=None, nullable=True)
    capacity_places: int | None = None
    capacity_as_of: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    last_verified_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    # Union of the service areas, kept by directory.areas: "covers this point" is one indexed test.
    coverage: Any = geometry("MULTIPOLYGON")
    covers_national: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    search_vector: Any = Field(
        default=None,
        sa_column=sa.Column(
            TSVECTOR,
            sa.Computed(
                "to_tsvector('public.french_unaccent'::regconfig,"
                " coalesce(name, '') || ' ' || coalesce(description, ''))",
                persisted=True,
            ),
        ),
    )
    demo: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    seed_key: str | None = Field(default=None, max_length=80, unique=True)
    archived_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    version: int = version_column()
    created_at: datetime = created_at()
    updated_at: datetime = updated_at()


class ServiceArea(SQLModel, table=True):
    """Where a service takes people from: territory codes, a radius around its location, or France."""

    __tablename__ = "service_area"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    service_id: uuid.UUID = Field(foreign_key="service.id", index=True)
    communes: list[str] = text_array(5)
    departements: list[str] = text_array(3)
    collectivites: list[str] = text_array(4)
    regions: list[str] = text_array(3)
    radius_km: float | None = None
    national: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    area: Any = geometry("MULTIPOLYGON")
    archived_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    version: int = version_column()
    created_at: datetime = created_at()


class ApiClient(SQLModel, table=True):
    """A partner system's OAuth 2.0 client (client-credentials grant). The secret is kept only as an
    argon2 hash; revoking stops new tokens at once, and writes re-check the client."""

    __tablename__ = "api_client"
    __table_args__ = (
        sa.CheckConstraint("role <> 'partner' OR organisation_id IS NOT NULL", name="partner_has_organisation"),
        sa.CheckConstraint("role <> 'department' OR collectivite_code IS NOT NULL", name="department_has_collectivite"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str = Field(max_length=200)
    role: Role = enum_column(Role)
    organisation_id: uuid.UUID | None = Field(default=None, foreign_key="organisation.id", index=True)
    collectivite_code: str | None = Field(default=None, foreign_key="collectivite.code", max_length=4)
    secret_hash: str = Field(max_length=200)
    created_at: datetime = created_at()
    rotated_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    revoked_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    last_used_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))


class Entity(StrEnum):
    organisation = "organisation"
    service = "service"
    location = "location"
    service_area = "service_area"


class ListingRevision(SQLModel, table=True):
    """Append-only history of listing changes: who (client, organisation, role), when, which fields,
    old and new values."""

    __tablename__ = "listing_revision"
    __table_args__ = (sa.Index("ix_listing_revision__service_id_at", "service_id", "at"),)

    id: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True))
    entity: Entity = enum_column(Entity)
    entity_id: uuid.UUID = Field(index=True)
    # The service a change belongs to (itself, or the service of an area), to list a service's history.
    service_id: uuid.UUID | None = None
    organisation_id: uuid.UUID = Field(index=True)
    action: str = Field(max_length=32)
    changes: dict[str, Any] = Field(sa_column=sa.Column(JSONB, nullable=False))
    actor_subject: str = Field(max_length=200)
    actor_role: Role = enum_column(Role)
    actor_client_id: uuid.UUID | None = None
    actor_organisation_id: uuid.UUID | None = None
    request_id: str | None = Field(default=None, max_length=64)
    at: datetime = created_at()
