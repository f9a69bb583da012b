"""Search points: the projection a search near a point scans first (see the migration
2026-12-03_1100_search_points for why). Triggers keep it; this module declares it and rebuilds it."""

import uuid
from typing import Any

import psycopg
import sqlalchemy as sa
from geoalchemy2 import Geography
from sqlmodel import Field, SQLModel

from geo.columns import SRID, text_array


class SearchPoint(SQLModel, table=True):
    """One service a search may return, at its location's public point (a safe house: its commune's)."""

    __tablename__ = "search_point"
    __table_args__ = (sa.Index("ix_search_point__geog", "geog", postgresql_using="gist"),)

    service_id: uuid.UUID = Field(primary_key=True, foreign_key="service.id", ondelete="CASCADE")
    location_id: uuid.UUID = Field(foreign_key="location.id", ondelete="CASCADE", index=True)
    geog: Any = Field(sa_column=sa.Column(Geography("POINT", srid=SRID, spatial_index=False), nullable=False))
    specialisms: list[str] = text_array(64)


def rebuild(conn: psycopg.Connection) -> int:
    """Recompute every row from the listing tables, as the schema owner; returns the rows written."""
    with conn.transaction():
        row = conn.execute("SELECT search_points_rebuild()").fetchone()
    return int(row[0]) if row else 0
