"""Reading listing history and freshness. JSON built in SQL."""

from __future__ import annotations

import uuid
from datetime import datetime

from psycopg import AsyncConnection

from .access import Principal, listing_params, listing_scope
from .errors import NotFound
from .search import STALE_AFTER_DAYS


async def service_history(
    conn: AsyncConnection, service_id: uuid.UUID, *, viewer: Principal, after: int | None, limit: int
) -> tuple[list[tuple[int, str]], bool]:
    """(id, JSON) of the changes to a service and its areas, oldest first; and whether more follow."""
    exists = await (
        await conn.execute(
            f"SELECT 1 FROM service s WHERE s.id = %(id)s AND {listing_scope('s.organisation_id')}",
            {"id": service_id, **listing_params(viewer)},
        )
    ).fetchone()
    if exists is None:
        raise NotFound("no such service")
    rows = await (
        await conn.execute(
            """SELECT r.id, json_build_object(
                   'id', r.id, 'at', r.at, 'entity', r.entity, 'entity_id', r.entity_id, 'action', r.action,
                   'changes', r.changes,
                   'actor', json_build_object('subject', r.actor_subject, 'role', r.actor_role,
                                              'client_id', r.actor_client_id,
                                              'organisation_id', r.actor_organisation_id))::text
             FROM listing_revision r
            WHERE r.service_id = %(id)s AND (%(after)s::bigint IS NULL OR r.id > %(after)s::bigint)
            ORDER BY r.id LIMIT %(limit)s""",
            {"id": service_id, "after": after, "limit": limit + 1},
        )
    ).fetchall()
    return [(row[0], row[1]) for row in rows[:limit]], len(rows) > limit


async def freshness(
    conn: AsyncConnection, organisation_id: uuid.UUID, *, viewer: Principal, within_days: int, now: datetime
) -> str:
    """Services of an organisation that are stale or will be within `within_days`, most overdue first."""
    row = await (
        await conn.execute(
            f"""SELECT json_build_object(
                   'organisation_id', o.id, 'stale_after_days', {STALE_AFTER_DAYS}, 'within_days', %(within)s::int,
                   'items', coalesce((
                       SELECT json_agg(json_build_object(
                                  'service_id', s.id, 'name', s.name, 'last_verified_at', s.last_verified_at,
                                  'due_at', s.last_verified_at + interval '{STALE_AFTER_DAYS} days',
                                  'stale', s.last_verified_at IS NULL
                                           OR s.last_verified_at < %(now)s - interval '{STALE_AFTER_DAYS} days')
                              ORDER BY s.last_verified_at NULLS FIRST, s.id)
                         FROM service s
                        WHERE s.organisation_id = o.id AND s.archived_at IS NULL
                          AND (s.last_verified_at IS NULL OR s.last_verified_at
                               < %(now)s - interval '{STALE_AFTER_DAYS} days' + make_interval(days => %(within)s::int))
                   ), '[]'))::text
              FROM organisation o WHERE o.id = %(id)s AND {listing_scope("o.id")}""",
            {"id": organisation_id, "within": within_days, "now": now, **listing_params(viewer)},
        )
    ).fetchone()
    if row is None:
        raise NotFound("no such organisation")
    return str(row[0])


async def organisations_with_due_listings(
    conn: AsyncConnection, *, now: datetime, within_days: int = 0
) -> list[tuple[uuid.UUID, int]]:
    """(organisation, number of listings due) for every active, non-demo organisation with some."""
    rows = await (
        await conn.execute(
            f"""SELECT s.organisation_id, count(*) FROM service s JOIN organisation o ON o.id = s.organisation_id
             WHERE s.archived_at IS NULL AND NOT s.demo AND o.deactivated_at IS NULL
               AND (s.last_verified_at IS NULL OR s.last_verified_at
                    < %(now)s - interval '{STALE_AFTER_DAYS} days' + make_interval(days => %(within)s::int))
             GROUP BY s.organisation_id ORDER BY s.organisation_id""",
            {"now": now, "within": within_days},
        )
    ).fetchall()
    return [(row[0], int(row[1])) for row in rows]
