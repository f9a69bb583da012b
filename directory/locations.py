"""Reading a location for its managers: its organisation (and admins, who see a confidential one only
at its commune, like everyone but its organisation)."""

from __future__ import annotations

import uuid

from psycopg import AsyncConnection

from .access import Principal, Role
from .errors import NotFound
from .search import VISIBLE, viewer_params

LOCATION_JSON = f"""
    json_build_object(
        'id', l.id, 'organisation_id', l.organisation_id, 'name', l.name,
        'address', CASE WHEN {VISIBLE} THEN l.address END,
        'commune', json_build_object('code', c.code, 'name', c.name),
        'point', ST_AsGeoJSON(CASE WHEN {VISIBLE} THEN l.point ELSE l.public_point END, 7)::json,
        'location_precision', CASE WHEN {VISIBLE} THEN l.point_precision ELSE 'commune' END,
        'visibility', l.visibility,
        'front_door', json_build_object('phone', l.front_door_phone, 'email', l.front_door_email),
        'archived_at', l.archived_at, 'version', l.version)
"""


async def get(conn: AsyncConnection, location_id: uuid.UUID, *, viewer: Principal) -> tuple[str, int]:
    """(JSON, version) of a location its viewer manages."""
    row = await (
        await conn.execute(
            f"""SELECT {LOCATION_JSON}::text, l.version FROM location l JOIN commune c ON c.code = l.commune_code
             WHERE l.id = %(id)s AND (%(admin)s OR l.organisation_id = %(viewer_org)s::uuid)""",
            {"id": location_id, "admin": viewer.role is Role.admin, **viewer_params(viewer)},
        )
    ).fetchone()
    if row is None:
        raise NotFound("no such location")
    return str(row[0]), int(row[1])
