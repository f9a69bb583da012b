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
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from psycopg import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from geo.territories import TerritoryKind, unknown_codes

from . import revisions
from .access import Principal, check_managed_organisation, listing_params, listing_scope, load_listing
from .errors import InvalidInput, NotFound
from .models import Service, ServiceArea
from .schemas import AreaCreate, AreaPatch

# Recomputes the areas named by %(area_ids)s, or when it is null every area of the services that
# depends on their location (a radius), or with %(all)s every area of the services.
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
   AND (%(all)s OR a.id = ANY(%(area_ids)s::uuid[])
        OR (%(area_ids)s::uuid[] IS NULL AND a.radius_km IS NOT NULL))
"""

_COVERAGE = """
UPDATE service s SET
    covers_national = EXISTS (SELECT 1 FROM service_area a
                               WHERE a.service_id = s.id AND a.national AND a.archived_at IS NULL),
    coverage = (SELECT ST_Multi(ST_Union(a.area)) FROM service_area a
                 WHERE a.service_id = s.id AND a.archived_at IS NULL AND a.area IS NOT NULL)
 WHERE s.id = ANY(%(service_ids)s::uuid[])
"""

# Run in this order after changing areas or a service's location, with {"service_ids": [...],
# "area_ids": [...] or None, "all": bool}; the services' rows locked first (`lock_services`).
REFRESH = (_AREAS, _COVERAGE)


def rebuild_params(service_ids: list[uuid.UUID]) -> dict[str, Any]:
    """REFRESH's parameters that redraw every area of these services (seeds, tests, benches)."""
    return {"service_ids": service_ids, "area_ids": None, "all": True}


TERRITORY_FIELDS = {
    "communes": TerritoryKind.commune,
    "departements": TerritoryKind.departement,
    "collectivites": TerritoryKind.collectivite,
    "regions": TerritoryKind.region,
}

AREA_JSON = """
    json_build_object('id', a.id, 'service_id', a.service_id, 'communes', a.communes,
                      'departements', a.departements, 'collectivites', a.collectivites,
                      'regions', a.regions, 'radius_km', a.radius_km, 'national', a.national,
                      'archived_at', a.archived_at, 'version', a.version)
"""


# --- reads -------------------------------------------------------------------------------------


async def get(conn: AsyncConnection, area_id: uuid.UUID, *, viewer: Principal) -> tuple[str, int]:
    """(JSON, version) of a service area its viewer manages."""
    row = await (
        await conn.execute(
            f"""SELECT {AREA_JSON}::text, a.version FROM service_area a JOIN service s ON s.id = a.service_id
                 WHERE a.id = %(id)s AND {listing_scope("s.organisation_id")}""",
            {"id": area_id, **listing_params(viewer)},
        )
    ).fetchone()
    if row is None:
        raise NotFound("no such service area")
    return str(row[0]), int(row[1])


async def of_organisation(
    conn: AsyncConnection,
    organisation_id: uuid.UUID,
    *,
    viewer: Principal,
    after: tuple[str, str] | None,
    limit: int,
) -> list[tuple[str, str, str]]:
    """(created_at, id, JSON) of the current areas of an organisation's current services, oldest
    first, up to `limit`. NotFound when the organisation is missing or not the viewer's."""
    await check_managed_organisation(conn, organisation_id, viewer)
    params = {"id": organisation_id, "limit": limit, **listing_params(viewer)}
    rows = await (
        await conn.execute(
            f"""SELECT a.created_at::text, a.id::text, {AREA_JSON}::text
                  FROM service_area a JOIN service s ON s.id = a.service_id
                 WHERE s.organisation_id = %(id)s AND s.archived_at IS NULL AND a.archived_at IS NULL
                   AND (%(after_at)s::timestamptz IS NULL
                        OR (a.created_at, a.id) > (%(after_at)s::timestamptz, %(after_id)s::uuid))
                 ORDER BY a.created_at, a.id LIMIT %(limit)s""",
            {**params, "after_at": after[0] if after else None, "after_id": after[1] if after else None},
        )
    ).fetchall()
    return [(row[0], row[1], row[2]) for row in rows]


# --- writes ------------------------------------------------------------------------------------


async def lock_services(session: AsyncSession, service_ids: list[uuid.UUID]) -> None:
    """Lock these services' rows, in id order, before writing any of their areas.

    Every write that recomputes a coverage takes the service first and its areas after: an area's
    write, the service's own (its update locks the row first) and a location's (which reaches its
    services through `refresh_coverage`). Two writers on areas of one service therefore queue
    instead of each holding one area and waiting for the other's — a deadlock PostgreSQL resolves
    by failing one of them."""
    if service_ids:
        connection = await session.connection()
        await connection.exec_driver_sql(
            "SELECT 1 FROM service WHERE id = ANY(%(ids)s::uuid[]) ORDER BY id FOR UPDATE",
            {"ids": sorted(service_ids)},
        )


async def refresh_coverage(
    session: AsyncSession, service_ids: list[uuid.UUID], *, area_ids: list[uuid.UUID] | None = None
) -> None:
    """Recompute the coverage of these services: after their location moved (`area_ids` None: only
    the areas drawn around it are redrawn) or after the areas `area_ids` changed (only those)."""
    if not service_ids:
        return
    await lock_services(session, service_ids)
    connection = await session.connection()
    params = {"service_ids": service_ids, "area_ids": area_ids, "all": False}
    for statement in REFRESH:
        await connection.exec_driver_sql(statement, params)


ARRAY_FIELDS = set(TERRITORY_FIELDS)


async def _check_codes(session: AsyncSession, values: Mapping[str, Any]) -> None:
    conn = await revisions.driver(session)
    for field, kind in TERRITORY_FIELDS.items():
        codes = list(values.get(field) or [])
        unknown = await unknown_codes(conn, kind, codes)
        if unknown:
            raise InvalidInput(field, f"item {codes.index(unknown[0])} is not a known {kind.value} code")


def _not_empty(values: Mapping[str, Any]) -> None:
    if not (values.get("national") or values.get("radius_km") or any(values.get(f) for f in TERRITORY_FIELDS)):
        raise InvalidInput("national", "an area needs territory codes, a radius or national: true")


def _check_radius(service: Service, radius_km: float | None) -> None:
    if radius_km is not None and service.location_id is None:
        raise InvalidInput("radius_km", "a radius needs the service to have a location")


async def create(session: AsyncSession, data: AreaCreate, *, actor: Principal, request_id: str | None) -> ServiceArea:
    try:
        service = await load_listing(session, Service, data.service_id, actor)
    except NotFound as exc:
        raise InvalidInput("service_id", "no such service") from exc
    values = {field: getattr(data, field) for field in data.model_fields_set - {"service_id"}}
    values = {k: (v if v is not None else ([] if k in ARRAY_FIELDS else None)) for k, v in values.items()}
    if values.get("national") is None:
        values["national"] = False
    _not_empty(values)
    await _check_codes(session, values)
    _check_radius(service, values.get("radius_km"))
    await lock_services(session, [service.id])
    area = ServiceArea(service_id=service.id, **values)
    session.add(area)
    await session.flush()
    await revisions.record_creation(session, area, values, actor=actor, request_id=request_id)
    await refresh_coverage(session, [service.id], area_ids=[area.id])
    await session.refresh(area)
    return area


async def update(
    session: AsyncSession,
    area_id: uuid.UUID,
    patch: AreaPatch,
    *,
    expected_version: revisions.Expected | None,
    actor: Principal,
    request_id: str | None,
) -> ServiceArea:
    area = await load_listing(session, ServiceArea, area_id, actor)
    revisions.check_version(area, expected_version)
    service = await load_listing(session, Service, area.service_id, actor)
    values = {field: getattr(patch, field) for field in patch.model_fields_set}
    values = {
        k: (v if v is not None else ([] if k in ARRAY_FIELDS else False if k == "national" else None))
        for k, v in values.items()
    }
    _not_empty({**{f: getattr(area, f) for f in (*TERRITORY_FIELDS, "radius_km", "national")}, **values})
    await _check_codes(session, values)
    _check_radius(service, values.get("radius_km"))
    await lock_services(session, [service.id])
    await revisions.update_row(
        session,
        area,
        expected_version=expected_version,
        values=values,
        action="update",
        actor=actor,
        request_id=request_id,
    )
    await refresh_coverage(session, [service.id], area_ids=[area.id])
    return area


async def archive(
    session: AsyncSession,
    area_id: uuid.UUID,
    *,
    expected_version: revisions.Expected | None,
    actor: Principal,
    request_id: str | None,
) -> None:
    area = await load_listing(session, ServiceArea, area_id, actor)
    revisions.check_version(area, expected_version)
    await lock_services(session, [area.service_id])
    await revisions.update_row(
        session,
        area,
        expected_version=expected_version,
        values={"archived_at": datetime.now(UTC)},
        action="archive",
        actor=actor,
        request_id=request_id,
    )
    await refresh_coverage(session, [area.service_id], area_ids=[])
