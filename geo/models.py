"""Territory tables: régions, départements, collectivités départementales and communes.

INSEE codes are the natural keys ("2A", "971", "69M" are strings). Geometries are SRID 4326;
`boundary` is full precision (used for resolution), `boundary_simplified` is for display only.
Every spatial index is declared here once, never through GeoAlchemy2's implicit `spatial_index`.
"""

from datetime import date, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Field, SQLModel

from .columns import created_at, enum_column, geometry, text_array


class CollectiviteKind(StrEnum):
    departement = "departement"
    # Métropole de Lyon, collectivités uniques, Ville de Paris, Collectivité européenne d'Alsace…
    special_status = "special_status"


class PointSource(StrEnum):
    mairie = "mairie"
    surface = "surface"


class Region(SQLModel, table=True):
    __tablename__ = "region"

    code: str = Field(primary_key=True, max_length=3)
    name: str = Field(max_length=100)


class Departement(SQLModel, table=True):
    __tablename__ = "departement"
    __table_args__ = (sa.Index("ix_departement__boundary", "boundary", postgresql_using="gist"),)

    code: str = Field(primary_key=True, max_length=3)
    name: str = Field(max_length=100)
    region_code: str = Field(foreign_key="region.code", max_length=3, index=True)
    seat_commune_code: str = Field(max_length=5)
    # Where opening hours are read: Europe/Paris, or the overseas département's own zone.
    timezone: str = Field(default="Europe/Paris", max_length=40, sa_column_kwargs={"server_default": "Europe/Paris"})
    # Public holidays differ in Alsace-Moselle and overseas (`holidays` subdivisions).
    holiday_zone: str = Field(default="FR", max_length=4, sa_column_kwargs={"server_default": "FR"})
    boundary: Any = geometry("MULTIPOLYGON")
    boundary_simplified: Any = geometry("MULTIPOLYGON")


class Collectivite(SQLModel, table=True):
    """The collectivité that runs child protection (and its CRIP) for a territory."""

    __tablename__ = "collectivite"
    __table_args__ = (sa.Index("ix_collectivite__boundary", "boundary", postgresql_using="gist"),)

    code: str = Field(primary_key=True, max_length=4)
    name: str = Field(max_length=150)
    kind: CollectiviteKind = enum_column(CollectiviteKind)
    region_code: str = Field(foreign_key="region.code", max_length=3, index=True)
    seat_commune_code: str = Field(max_length=5)
    boundary: Any = geometry("MULTIPOLYGON")
    boundary_simplified: Any = geometry("MULTIPOLYGON")


class Commune(SQLModel, table=True):
    __tablename__ = "commune"
    __table_args__ = (
        sa.Index("ix_commune__boundary", "boundary", postgresql_using="gist"),
        sa.Index("ix_commune__point", "point", postgresql_using="gist"),
        sa.Index("ix_commune__search_name", "search_name", postgresql_ops={"search_name": "text_pattern_ops"}),
        sa.Index(
            "ix_commune__search_name_trgm",
            "search_name",
            postgresql_using="gin",
            postgresql_ops={"search_name": "gin_trgm_ops"},
        ),
        sa.Index("ix_commune__postal_codes", "postal_codes", postgresql_using="gin"),
    )

    code: str = Field(primary_key=True, max_length=5)
    name: str = Field(max_length=100)
    # Lower-case, accent-free, punctuation-free form of the name (see geo.names.normalise).
    search_name: str = Field(max_length=100)
    departement_code: str = Field(foreign_key="departement.code", max_length=3, index=True)
    collectivite_code: str = Field(foreign_key="collectivite.code", max_length=4, index=True)
    population: int | None = None
    postal_codes: list[str] = Field(
        default_factory=list, sa_column=sa.Column(ARRAY(sa.String(5)), nullable=False, server_default="{}")
    )
    # 4 communes restored in 2025 have neither boundary nor point in the source: they are left out of
    # spatial lookups (their territory still lies in the commune they were split from).
    boundary: Any = geometry("MULTIPOLYGON")
    point: Any = geometry("POINT")
    point_source: PointSource | None = enum_column(PointSource, default=None, nullable=True)


class PublicHoliday(SQLModel, table=True):
    __tablename__ = "public_holiday"

    zone: str = Field(primary_key=True, max_length=4)
    day: date = Field(primary_key=True)
    name: str = Field(max_length=100)


class ReferenceDataset(SQLModel, table=True):
    """What reference data was loaded, from which source and version: makes seeding idempotent."""

    __tablename__ = "reference_dataset"

    name: str = Field(primary_key=True, max_length=50)
    source: str = Field(max_length=200)
    version: str = Field(max_length=50)
    licence: str = Field(max_length=100)
    # The COG vintage of the territories (the communes as of 1 January of that year).
    reference_year: int | None = Field(default=None, sa_type=sa.SmallInteger)
    loaded_at: datetime = created_at()


class Epci(SQLModel, table=True):
    """An établissement public de coopération intercommunale (SIREN code) and its communes: data·inclusion
    names service areas by EPCI."""

    __tablename__ = "epci"

    code: str = Field(primary_key=True, max_length=9)
    name: str = Field(max_length=200)
    kind: str = Field(max_length=4)
    communes: list[str] = text_array(5)
