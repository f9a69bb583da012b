"""Reading one service: the search feature plus what a detail page needs (description, hours, areas)."""

from __future__ import annotations

import uuid
from datetime import datetime

from psycopg import AsyncConnection

from .access import Principal, Role
from .errors import NotFound
from .search import JOINS, feature_sql, viewer_params


async def get(conn: AsyncConnection, service_id: uuid.UUID, *, viewer: Principal, now: datetime) -> tuple[str, int]:
    """(GeoJSON Feature, version) of a service. Archived services exist only for their organisation
    and admins."""
    row = await (
        await conn.execute(
            f"""
        SELECT jsonb_set(f.feature::jsonb, '{{properties}}', (f.feature->'properties')::jsonb || jsonb_build_object(
                   'description', s.description,
                   'schedule', s.schedule,
                   'areas', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                 'id', a.id, 'communes', a.communes, 'departements', a.departements,
                                 'collectivites', a.collectivites, 'regions', a.regions,
                                 'radius_km', a.radius_km, 'national', a.national) ORDER BY a.created_at, a.id), '[]')
                               FROM service_area a WHERE a.service_id = s.id AND a.archived_at IS NULL),
                   'archived_at', s.archived_at))::text, s.version
          FROM service s {JOINS}
          CROSS JOIN LATERAL (SELECT {feature_sql(with_origin=False)} AS feature) f
         WHERE s.id = %(id)s
           AND (s.archived_at IS NULL OR %(admin)s OR s.organisation_id = %(viewer_org)s::uuid)
        """,
            {"id": service_id, "now": now, "admin": viewer.role is Role.admin, **viewer_params(viewer)},
        )
    ).fetchone()
    if row is None:
        raise NotFound("no such service")
    return str(row[0]), int(row[1])
