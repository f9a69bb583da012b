"""Service areas: from territory codes and radii to the one geometry search tests with ST_Covers.

An area is the union of its communes, départements, collectivités and régions (full-precision
boundaries, so coverage is exact at borders), plus a radius around the service's location — drawn
around the public point, so a confidential location's area never reveals its exact position.
`service.coverage` is the union of the service's areas and `service.covers_national` says whether
one of them is France as a whole.

The SQL uses psycopg's %(name)s parameters: it runs as is on a psycopg connection (seeds) and
through SQLAlchemy's exec_driver_sql (API writes).
"""

from __future__ import annotations

import uuid

from psycopg import AsyncConnection

from .access import Principal, Role
from .errors import NotFound

_AREAS = """
UPDATE service_area a SET area = (
    SELECT ST_Multi(ST_Union(part)) FROM (
        SELECT c.boundary AS part FROM commune c WHERE c.code = ANY(a.communes) AND c.boundary IS NOT NULL
        UNION ALL SELECT d.boundary FROM departement d WHERE d.code = ANY(a.departements)
        UNION ALL SELECT k.boundary FROM collectivite k WHERE k.code = ANY(a.collectivites)
        UNION ALL SELECT d.boundary FROM departement d WHERE d.region_code = ANY(a.regions)
        UNION ALL SELECT ST_Buffer(l.public_point::geography, a.radius_km * 1000)::geometry
                    FROM service s JOIN location l ON l.id = s.location_id
                   WHERE s.id = a.service_id AND a.radius_km IS NOT NULL
    ) parts)
 WHERE a.service_id = ANY(%(service_ids)s::uuid[])
"""

_COVERAGE = """
UPDATE service s SET
    covers_national = EXISTS (SELECT 1 FROM service_area a
                               WHERE a.service_id = s.id AND a.national AND a.archived_at IS NULL),
    coverage = (SELECT ST_Multi(ST_Union(a.area)) FROM service_area a
                 WHERE a.service_id = s.id AND a.archived_at IS NULL AND a.area IS NOT NULL)
 WHERE s.id = ANY(%(service_ids)s::uuid[])
"""

# Run in this order, with {"service_ids": [...]}, after changing areas or a service's location.
REFRESH = (_AREAS, _COVERAGE)


async def get(conn: AsyncConnection, area_id: uuid.UUID, *, viewer: Principal) -> tuple[str, int]:
    """(JSON, version) of a service area its viewer manages."""
    row = await (
        await conn.execute(
            """SELECT json_build_object('id', a.id, 'service_id', a.service_id, 'communes', a.communes,
                                    'departements', a.departements, 'collectivites', a.collectivites,
                                    'regions', a.regions, 'radius_km', a.radius_km, 'national', a.national,
                                    'archived_at', a.archived_at, 'version', a.version)::text, a.version
             FROM service_area a JOIN service s ON s.id = a.service_id
            WHERE a.id = %(id)s AND (%(admin)s OR s.organisation_id = %(own)s::uuid)""",
            {
                "id": area_id,
                "admin": viewer.role is Role.admin,
                "own": viewer.organisation_id if viewer.role is Role.partner else None,
            },
        )
    ).fetchone()
    if row is None:
        raise NotFound("no such service area")
    return str(row[0]), int(row[1])
