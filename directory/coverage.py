"""Coverage of the territory: how far each commune's point is from the nearest service of each
specialism, precomputed so that the national coverage statistic answers in a second, not 10.

Distances are on the sphere (PostGIS geography without the spheroid: the KNN operator's measure, within
0.5 % of the ellipsoid), from the commune's point to the public point of the nearest service that
counts: current, not suspended, not demo, at a current location. Triggers keep `commune_coverage`
current in the writes' own transaction (api/migrations/versions/…_commune_coverage.py); `refresh`
fills in communes and specialisms that reference data added since, and `rebuild` recomputes all.
"""

from __future__ import annotations

import uuid

import psycopg
from sqlmodel import Field, SQLModel

# The largest `within_km` the statistic accepts: triggers keep distances exact up to it.
MAX_WITHIN_KM = 100


class CommuneCoverage(SQLModel, table=True):
    """The nearest counting service of one specialism from one commune's point (none: null)."""

    __tablename__ = "commune_coverage"

    specialism: str = Field(primary_key=True, max_length=64)
    commune_code: str = Field(primary_key=True, max_length=5, foreign_key="commune.code", ondelete="CASCADE")
    service_id: uuid.UUID | None = Field(default=None, index=True)
    metres: float | None = None


# Whether a commune (alias c) has a counting service of specialism `{specialism}` within %(metres)s:
# what the table answers, probed live for a pair it has no row for yet.
LIVE_PROBE = """EXISTS (SELECT 1 FROM service s JOIN location l ON l.id = s.location_id
                         WHERE s.specialisms @> ARRAY[{specialism}]::varchar[] AND s.archived_at IS NULL
                           AND s.status <> 'suspended' AND NOT s.demo AND l.archived_at IS NULL
                           AND ST_DWithin(l.public_point::geography, c.point::geography, %(metres)s, false))"""


def refresh(conn: psycopg.Connection, *, rebuild: bool = False) -> int:
    """Compute the missing commune × specialism rows (all of them with `rebuild`) and drop those of
    communes without a point or of specialisms that no longer exist; returns the rows computed. Run as
    the schema owner, one specialism at a time (each gathers its points once)."""
    computed = 0
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('commune_coverage'))")
        conn.execute(
            """DELETE FROM commune_coverage cc
                WHERE NOT EXISTS (SELECT 1 FROM specialism sp WHERE sp.slug = cc.specialism)
                   OR NOT EXISTS (SELECT 1 FROM commune c WHERE c.code = cc.commune_code AND c.point IS NOT NULL)"""
        )
        rows = conn.execute(
            """SELECT sp.slug, CASE WHEN %(rebuild)s THEN NULL ELSE array_agg(c.code) END
                 FROM specialism sp JOIN commune c ON c.point IS NOT NULL
                WHERE %(rebuild)s OR NOT EXISTS (SELECT 1 FROM commune_coverage cc
                                                 WHERE cc.commune_code = c.code AND cc.specialism = sp.slug)
                GROUP BY sp.slug ORDER BY sp.slug""",
            {"rebuild": rebuild},
        ).fetchall()
        for specialism, communes in rows:
            row = conn.execute("SELECT coverage_compute(%s, %s)", (specialism, communes)).fetchone()
            computed += row[0] if row else 0
    return computed
