"""Reading organisations. JSON is built in SQL from plain columns."""

from __future__ import annotations

import uuid
from typing import Any

from psycopg import AsyncConnection

from .access import Principal, Role
from .errors import NotFound

_ORGANISATION_JSON = """
    json_build_object(
        'id', o.id, 'name', o.name, 'kind', o.kind, 'description', o.description,
        'website', o.website, 'email', o.email, 'phone', o.phone,
        'identifiers', json_build_object('siren', o.siren, 'siret', o.siret, 'rna', o.rna),
        'collectives', o.collectives,
        'collectivite', (SELECT json_build_object('code', k.code, 'name', k.name)
                           FROM collectivite k WHERE k.code = o.collectivite_code),
        'seat', (SELECT json_build_object('code', c.code, 'name', c.name) FROM commune c
                  WHERE c.code = o.seat_commune_code),
        'verification', o.verification, 'verified_at', o.verified_at,
        'deactivated_at', o.deactivated_at, 'demo', o.demo)
"""

_SERVICES_JSON = """
    (SELECT coalesce(json_agg(json_build_object(
                'id', s.id, 'name', s.name, 'specialisms', s.specialisms, 'status', s.status,
                'demo', s.demo) ORDER BY s.name, s.id), '[]')
       FROM service s WHERE s.organisation_id = o.id AND s.archived_at IS NULL)
"""


async def list_(
    conn: AsyncConnection,
    *,
    viewer: Principal,
    kind: str | None,
    collective: str | None,
    collectivite: str | None,
    after: tuple[str, str] | None,
    limit: int,
) -> list[tuple[str, str, str]]:
    """(name, id, JSON) of organisations by name; deactivated ones only for admins."""
    params: dict[str, Any] = {
        "kind": kind,
        "collective": collective,
        "collectivite": collectivite,
        "limit": limit,
        "admin": viewer.role is Role.admin,
        "after_name": after[0] if after else None,
        "after_id": after[1] if after else None,
    }
    rows = await (
        await conn.execute(
            f"""SELECT o.name, o.id::text, {_ORGANISATION_JSON}::text FROM organisation o
             WHERE (o.deactivated_at IS NULL OR %(admin)s)
               AND (%(kind)s::text IS NULL OR o.kind = %(kind)s::text)
               AND (%(collective)s::text IS NULL OR %(collective)s::varchar = ANY(o.collectives))
               AND (%(collectivite)s::text IS NULL OR o.collectivite_code = %(collectivite)s::text)
               AND (%(after_name)s::text IS NULL OR (o.name, o.id) > (%(after_name)s::text, %(after_id)s::uuid))
             ORDER BY o.name, o.id LIMIT %(limit)s""",
            params,
        )
    ).fetchall()
    return [(row[0], row[1], row[2]) for row in rows]


async def get(conn: AsyncConnection, organisation_id: uuid.UUID, *, viewer: Principal) -> str:
    """An organisation with its current services."""
    row = await (
        await conn.execute(
            f"""SELECT (({_ORGANISATION_JSON})::jsonb || jsonb_build_object('services', {_SERVICES_JSON}))::text
              FROM organisation o WHERE o.id = %(id)s AND (o.deactivated_at IS NULL OR %(admin)s)""",
            {"id": organisation_id, "admin": viewer.role is Role.admin},
        )
    ).fetchone()
    if row is None:
        raise NotFound("no such organisation")
    return str(row[0])


async def crip_of(conn: AsyncConnection, collectivite_code: str) -> str:
    """The CRIP competent for a collectivité, with its services and the state of its contact details."""
    row = await (
        await conn.execute(
            f"""SELECT (({_ORGANISATION_JSON})::jsonb || jsonb_build_object(
                       'services', {_SERVICES_JSON},
                       'contact_state', CASE WHEN o.verification = 'verified' THEN 'verified'
                                             WHEN coalesce(o.phone, o.email, o.website) IS NULL THEN 'missing'
                                             ELSE 'unverified' END))::text
              FROM organisation o WHERE o.kind = 'crip' AND o.collectivite_code = %(code)s::text""",
            {"code": collectivite_code},
        )
    ).fetchone()
    if row is None:
        raise NotFound(f"no CRIP for collectivité {collectivite_code!r}")
    return str(row[0])
