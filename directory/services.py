"""Services: reading one (the search feature plus what a detail page needs) and its organisation's
writes — create, change, archive, capacity, closures, verification.

Order in every write: scope (404), If-Match (412), then validation (422), then the write.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from . import revisions
from .access import Principal, listing_params, listing_scope, load_listing, organisation_for_new
from .areas import refresh_coverage
from .errors import Conflict, InvalidInput, NotFound
from .models import Location, Service, ServiceStatus
from .schemas import CapacityUpdate, ClosureCreate, ServiceCreate, ServicePatch
from .search import EXACT_CONFIDENTIAL, JOINS, feature_sql

FUTURE_TOLERANCE = timedelta(minutes=5)  # clock skew between a partner's system and ours
ARRAY_FIELDS = {"specialisms", "audiences", "genders", "languages", "channels"}

# What the service's managers (its organisation, admins) see besides the public feature: the ids
# they need to change its location and areas. The location's place follows the feature's own
# confidentiality (EXACT_LOCATION), not this.
_MANAGED = f"""CASE WHEN {listing_scope("s.organisation_id")} THEN jsonb_build_object(
                   'location_id', s.location_id,
                   'location', (SELECT jsonb_build_object('id', ml.id, 'name', ml.name, 'visibility', ml.visibility,
                                                          'commune_code', ml.commune_code,
                                                          'archived_at', ml.archived_at)
                                  FROM location ml WHERE ml.id = s.location_id))
               ELSE '{{}}'::jsonb END"""


# --- reads -------------------------------------------------------------------------------------


async def get(
    conn: AsyncConnection, service_id: uuid.UUID, *, viewer: Principal, now: datetime
) -> tuple[str, int, uuid.UUID | None]:
    """(GeoJSON Feature, version, the safe house shown exactly to a specialist if any — a read to
    journal) of a service. Archived services exist only for their organisation and admins, who also
    read the ids of its location and areas."""
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
                   'archived_at', s.archived_at) || {_MANAGED})::text, s.version, {EXACT_CONFIDENTIAL}
          FROM service s {JOINS}
          CROSS JOIN LATERAL (SELECT {feature_sql(with_origin=False)} AS feature) f
         WHERE s.id = %(id)s AND (s.archived_at IS NULL OR {listing_scope("s.organisation_id")})
        """,
            {"id": service_id, "now": now, **listing_params(viewer)},
        )
    ).fetchone()
    if row is None:
        raise NotFound("no such service")
    return str(row[0]), int(row[1]), row[2]


# --- writes ------------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


async def _check_location(session: AsyncSession, location_id: uuid.UUID | None, organisation_id: uuid.UUID) -> None:
    if location_id is None:
        return
    location = await session.get(Location, location_id)
    if location is None or location.organisation_id != organisation_id or location.archived_at is not None:
        raise InvalidInput("location_id", "no such location for this organisation")


def _values(data: ServiceCreate | ServicePatch, fields: set[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for field in fields:
        value = getattr(data, field)
        if field == "schedule":
            value = value.stored() if value is not None else {"mode": "unknown"}
        elif field in ("email", "website"):
            value = str(value) if value is not None else None
        elif field in ARRAY_FIELDS:
            value = [getattr(v, "value", v) for v in value] if value is not None else []
        values[field] = value
    return values


async def create(session: AsyncSession, data: ServiceCreate, *, actor: Principal, request_id: str | None) -> Service:
    organisation_id = await organisation_for_new(session, actor, data.organisation_id)
    await _check_location(session, data.location_id, organisation_id)
    values = _values(data, set(data.model_fields_set | {"name", "specialisms"}) - {"organisation_id"})
    service = Service(organisation_id=organisation_id, **values)
    session.add(service)
    await session.flush()
    await revisions.record_creation(session, service, values, actor=actor, request_id=request_id)
    await session.refresh(service)
    return service


async def update(
    session: AsyncSession,
    service_id: uuid.UUID,
    patch: ServicePatch,
    *,
    expected_version: revisions.Expected | None,
    actor: Principal,
    request_id: str | None,
) -> Service:
    service = await load_listing(session, Service, service_id, actor)
    revisions.check_version(service, expected_version)
    given = set(patch.model_fields_set)
    revisions.refuse_clearing(patch, ("name", "specialisms"))
    values = _values(patch, given)
    age_min = values.get("age_min", service.age_min)
    age_max = values.get("age_max", service.age_max)
    if age_min is not None and age_max is not None and age_min > age_max:
        raise InvalidInput("age_min", "age_min must not exceed age_max")
    if "location_id" in given:
        await _check_location(session, patch.location_id, service.organisation_id)
    changes = await revisions.update_row(
        session,
        service,
        expected_version=expected_version,
        values=values,
        action="update",
        actor=actor,
        request_id=request_id,
    )
    if "location_id" in changes:
        await refresh_coverage(session, [service.id])
    return service


async def archive(
    session: AsyncSession,
    service_id: uuid.UUID,
    *,
    expected_version: revisions.Expected | None,
    actor: Principal,
    request_id: str | None,
) -> None:
    service = await load_listing(session, Service, service_id, actor)
    revisions.check_version(service, expected_version)
    await revisions.update_row(
        session,
        service,
        expected_version=expected_version,
        values={"archived_at": _now()},
        action="archive",
        actor=actor,
        request_id=request_id,
    )


async def set_capacity(
    session: AsyncSession,
    service_id: uuid.UUID,
    data: CapacityUpdate,
    *,
    expected_version: revisions.Expected | None,
    actor: Principal,
    request_id: str | None,
) -> Service:
    service = await load_listing(session, Service, service_id, actor)
    revisions.check_version(service, expected_version)
    as_of = data.as_of or _now()
    if as_of > _now() + FUTURE_TOLERANCE:
        raise InvalidInput("as_of", "lies in the future")
    await revisions.update_row(
        session,
        service,
        expected_version=expected_version,
        values={"capacity": data.state, "capacity_places": data.places, "capacity_as_of": as_of},
        action="capacity",
        actor=actor,
        request_id=request_id,
        always=True,
    )
    return service


async def _unsuspended(
    session: AsyncSession, service_id: uuid.UUID, expected_version: revisions.Expected | None, actor: Principal
) -> Service:
    """The service for a change of its status, locked and at the version the caller holds (If-Match,
    optional here: api/etags.py OPTIONAL_IF_MATCH): a suspension is Maillage's, and neither a closure
    nor a reopening replaces it. Locked before both checks, so that a suspension or a closure committed
    meanwhile is seen (the status is one field: the later write would otherwise overwrite it)."""
    service = await load_listing(session, Service, service_id, actor)
    await revisions.lock_at_version(session, service, expected_version)
    if service.status == ServiceStatus.suspended:
        raise Conflict("the service is suspended: an admin lifts the suspension")
    return service


async def close_temporarily(
    session: AsyncSession,
    service_id: uuid.UUID,
    data: ClosureCreate,
    *,
    expected_version: revisions.Expected | None,
    actor: Principal,
    request_id: str | None,
) -> Service:
    service = await _unsuspended(session, service_id, expected_version, actor)
    starts = data.starts or _now()
    if data.until is not None and data.until <= starts:
        raise InvalidInput("until", "must come after the start of the closure")
    values = {
        "status": ServiceStatus.temporarily_closed,
        "closed_from": starts,
        "closed_until": data.until,
        "closure_message": data.message,
    }
    await revisions.update_row(
        session,
        service,
        expected_version=expected_version,
        values=values,
        action="closure",
        actor=actor,
        request_id=request_id,
        always=True,
        locked=True,
    )
    return service


async def reopen(
    session: AsyncSession,
    service_id: uuid.UUID,
    *,
    expected_version: revisions.Expected | None,
    actor: Principal,
    request_id: str | None,
) -> Service:
    service = await _unsuspended(session, service_id, expected_version, actor)
    values = {"status": ServiceStatus.active, "closed_from": None, "closed_until": None, "closure_message": None}
    await revisions.update_row(
        session,
        service,
        expected_version=expected_version,
        values=values,
        action="reopen",
        actor=actor,
        request_id=request_id,
        locked=True,
    )
    return service


async def verify(
    session: AsyncSession,
    service_id: uuid.UUID,
    *,
    expected_version: revisions.Expected | None,
    actor: Principal,
    request_id: str | None,
) -> Service:
    """The organisation confirms the listing is still true: it is fresh again for 180 days."""
    service = await load_listing(session, Service, service_id, actor)
    await revisions.lock_at_version(session, service, expected_version)
    await revisions.update_row(
        session,
        service,
        expected_version=expected_version,
        values={"last_verified_at": _now()},
        action="verify",
        actor=actor,
        request_id=request_id,
        always=True,
        locked=True,
    )
    return service
