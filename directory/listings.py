"""Partners keep their own listings true: scoped, versioned writes with an append-only history.

- Scope: a partner reaches only rows of its own organisation; anything else is NotFound, exactly
  like a row that does not exist. Admins reach every row.
- Concurrency: every write is a conditional UPDATE on the version the caller read (its ETag). Of two
  writers holding the same ETag, exactly one updates the row; the other gets StaleVersion (412).
- History: each change appends one listing_revision row with the fields, old and new values, and
  who made it. Domain functions only flush; the route commits.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from geoalchemy2.elements import WKTElement
from geoalchemy2.shape import to_shape
from sqlmodel import SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from geo.codes import commune_of

from .access import Principal, Role
from .areas import REFRESH
from .errors import InvalidListing, NotFound, StaleVersion
from .models import Entity, ListingRevision, Location, Organisation, Service, ServiceArea, ServiceStatus
from .schemas import (
    AreaCreate,
    AreaPatch,
    CapacityUpdate,
    ClosureCreate,
    LocationCreate,
    LocationPatch,
    ServiceCreate,
    ServicePatch,
)

FUTURE_TOLERANCE = timedelta(minutes=5)  # clock skew between a partner's system and ours
ARRAY_FIELDS = {
    "specialisms",
    "audiences",
    "genders",
    "languages",
    "channels",
    "communes",
    "departements",
    "collectivites",
    "regions",
}


async def sql(session: AsyncSession, statement: str, params: Mapping[str, Any]) -> Any:
    """Plain SQL in the session's transaction (checks that read reference tables)."""
    return await (await session.connection()).execute(sa.text(statement), dict(params))


def _now() -> datetime:
    return datetime.now(UTC)


def _jsonable(value: Any) -> Any:
    """History keeps plain JSON: points as [lon, lat], times as ISO strings, enums as values."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if hasattr(value, "value"):  # StrEnum
        return value.value
    if hasattr(value, "desc") or hasattr(value, "data"):  # geometry elements
        shape = to_shape(value)
        return [round(shape.x, 7), round(shape.y, 7)]
    return str(value)


# --- scope -------------------------------------------------------------------------------------


def _own(actor: Principal) -> uuid.UUID | None:
    """The organisation a writer is confined to; None for admins (every organisation)."""
    if actor.role is Role.admin:
        return None
    if actor.role is Role.partner and actor.organisation_id is not None:
        return actor.organisation_id
    raise NotFound("nothing to write here")  # other roles never reach this (route policies)


async def _load(session: AsyncSession, model: type[SQLModel], row_id: uuid.UUID, actor: Principal) -> Any:
    own = _own(actor)
    statement: Any = select(model).where(model.id == row_id, model.archived_at.is_(None))  # type: ignore[attr-defined]
    if model is ServiceArea:
        statement = statement.join(Service, Service.id == ServiceArea.service_id)
        if own is not None:
            statement = statement.where(Service.organisation_id == own)
    elif own is not None:
        statement = statement.where(model.organisation_id == own)  # type: ignore[attr-defined]
    row = (await session.exec(statement)).first()
    if row is None:
        raise NotFound(f"no such {str(model.__tablename__).replace('_', ' ')}")
    return row


async def _organisation_for_new(session: AsyncSession, actor: Principal, requested: uuid.UUID | None) -> uuid.UUID:
    own = _own(actor)
    target = requested or own
    if target is None:
        raise InvalidListing("organisation_id", "admins must say which organisation the listing belongs to")
    # A body that names another organisation is answered like one naming a missing organisation.
    organisation = await session.get(Organisation, target) if own is None or target == own else None
    if organisation is None or organisation.deactivated_at is not None:
        raise InvalidListing("organisation_id", "no such organisation")
    return target


# --- history and versioned updates --------------------------------------------------------------


def _revision(
    *,
    entity: Entity,
    row: Any,
    organisation_id: uuid.UUID,
    service_id: uuid.UUID | None,
    action: str,
    changes: dict[str, Any],
    actor: Principal,
    request_id: str | None,
) -> ListingRevision:
    return ListingRevision(
        entity=entity,
        entity_id=row.id,
        service_id=service_id,
        organisation_id=organisation_id,
        action=action,
        changes=changes,
        actor_subject=actor.subject,
        actor_role=actor.role,
        actor_client_id=actor.client_id,
        actor_organisation_id=actor.organisation_id,
        request_id=request_id,
    )


async def conditional_update(
    session: AsyncSession,
    row: Any,
    *,
    expected_version: set[int] | None,
    values: Mapping[str, Any],
    refresh: bool = True,
) -> None:
    """UPDATE the row only if it is still at the version it was read at (and at one of the versions the
    caller holds, when given): of two writers holding the same version, exactly one succeeds."""
    model = type(row)
    if expected_version is not None and row.version not in expected_version:
        raise StaleVersion(f"this record is now at version {row.version}: read it again")
    result = await session.exec(
        sa.update(model)
        .where(model.id == row.id, model.version == row.version)
        .values(
            **values,
            version=model.version + 1,
            **({"updated_at": sa.func.now()} if hasattr(model, "updated_at") else {}),
        )
        .returning(model.version)
    )
    if result.first() is None:  # another writer got there first, between our read and our write
        raise StaleVersion("this record was changed meanwhile: read it again")
    if refresh:
        await session.refresh(row)


async def update_row(
    session: AsyncSession,
    row: Any,
    *,
    expected_version: set[int] | None,
    values: Mapping[str, Any],
    entity: Entity,
    organisation_id: uuid.UUID,
    service_id: uuid.UUID | None,
    action: str,
    actor: Principal,
    request_id: str | None,
    always: bool = False,
) -> dict[str, Any]:
    """Apply `values` if the row is still at one of the versions the caller read (its If-Match ETags;
    None: whatever version it is now). Returns the changes recorded; a write that changes nothing
    records nothing and keeps the version."""
    if expected_version is not None and row.version not in expected_version:
        raise StaleVersion(f"this listing is now at version {row.version}: read it again")
    changes = {
        field: {"old": _jsonable(getattr(row, field)), "new": _jsonable(value)}
        for field, value in values.items()
        if _jsonable(getattr(row, field)) != _jsonable(value)
    }
    if not changes and not always:
        return {}
    await conditional_update(session, row, expected_version=None, values=values, refresh=False)
    session.add(
        _revision(
            entity=entity,
            row=row,
            organisation_id=organisation_id,
            service_id=service_id,
            action=action,
            changes=changes,
            actor=actor,
            request_id=request_id,
        )
    )
    await session.flush()
    await session.refresh(row)
    return changes


async def _refresh_coverage(session: AsyncSession, service_ids: list[uuid.UUID]) -> None:
    if not service_ids:
        return
    connection = await session.connection()
    for statement in REFRESH:
        await connection.exec_driver_sql(statement, {"service_ids": service_ids})


# --- locations ---------------------------------------------------------------------------------


async def _check_point(session: AsyncSession, commune_code: str, lon: float, lat: float) -> str:
    """The commune must exist and the point lie in it or within 2 km of it (so, in France)."""
    code = commune_of(commune_code)
    row = (
        await sql(
            session,
            """SELECT c.name, c.boundary IS NULL OR ST_DWithin(
                      c.boundary::geography, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography, 2000)
                 FROM commune c WHERE c.code = :code""",
            {"code": code, "lon": lon, "lat": lat},
        )
    ).first()
    if row is None:
        raise InvalidListing("commune_code", f"no commune with INSEE code {commune_code!r}")
    if not row[1]:
        raise InvalidListing(
            "point",
            f"the point is more than 2 km from {row[0]} ({code}): check the commune or the "
            "coordinates (GeoJSON order is [longitude, latitude])",
        )
    return code


def _point(lon: float, lat: float) -> WKTElement:
    return WKTElement(f"POINT({lon!r} {lat!r})", srid=4326)


def _check_front_door(visibility: Any, phone: str | None, email: str | None) -> None:
    if visibility == "confidential" and not (phone or email):
        raise InvalidListing("front_door_phone", "a confidential location needs a front-door phone or e-mail")


async def create_location(
    session: AsyncSession, data: LocationCreate, *, actor: Principal, request_id: str | None
) -> Location:
    organisation_id = await _organisation_for_new(session, actor, data.organisation_id)
    code = await _check_point(session, data.commune_code, data.point.lon, data.point.lat)
    _check_front_door(data.visibility, data.front_door_phone, data.front_door_email)
    location = Location(
        organisation_id=organisation_id,
        name=data.name,
        address=data.address,
        commune_code=code,
        point=_point(data.point.lon, data.point.lat),
        visibility=data.visibility,
        front_door_phone=data.front_door_phone,
        front_door_email=str(data.front_door_email or "") or None,
    )
    session.add(location)
    await session.flush()
    await session.refresh(location)
    changes = {
        field: {"old": None, "new": _jsonable(getattr(location, field))}
        for field in ("name", "address", "commune_code", "point", "visibility", "front_door_phone", "front_door_email")
    }
    session.add(
        _revision(
            entity=Entity.location,
            row=location,
            organisation_id=organisation_id,
            service_id=None,
            action="create",
            changes=changes,
            actor=actor,
            request_id=request_id,
        )
    )
    await session.flush()
    return location


async def update_location(
    session: AsyncSession,
    location_id: uuid.UUID,
    patch: LocationPatch,
    *,
    expected_version: set[int] | None,
    actor: Principal,
    request_id: str | None,
) -> Location:
    location = await _load(session, Location, location_id, actor)
    given = patch.model_fields_set
    for required in ("commune_code", "point", "visibility"):
        if required in given and getattr(patch, required) is None:
            raise InvalidListing(required, "cannot be cleared")
    values: dict[str, Any] = {
        field: getattr(patch, field) for field in given if field not in ("point", "front_door_email")
    }
    if "front_door_email" in given:
        values["front_door_email"] = str(patch.front_door_email) if patch.front_door_email else None
    if "commune_code" in given or "point" in given:
        shape = to_shape(location.point)
        lon, lat = (patch.point.lon, patch.point.lat) if patch.point else (shape.x, shape.y)
        values["commune_code"] = await _check_point(session, patch.commune_code or location.commune_code, lon, lat)
        if patch.point:
            values["point"] = _point(lon, lat)
    merged = {**{f: getattr(location, f) for f in ("visibility", "front_door_phone", "front_door_email")}, **values}
    _check_front_door(merged["visibility"], merged["front_door_phone"], merged["front_door_email"])
    await update_row(
        session,
        location,
        expected_version=expected_version,
        values=values,
        entity=Entity.location,
        organisation_id=location.organisation_id,
        service_id=None,
        action="update",
        actor=actor,
        request_id=request_id,
    )
    if {"point", "commune_code", "visibility"} & set(values):
        services = (await session.exec(select(Service.id).where(Service.location_id == location.id))).all()
        await _refresh_coverage(session, list(services))
    return location


async def archive_location(
    session: AsyncSession,
    location_id: uuid.UUID,
    *,
    expected_version: set[int] | None,
    actor: Principal,
    request_id: str | None,
) -> None:
    location = await _load(session, Location, location_id, actor)
    in_use = (
        await session.exec(
            select(Service.id).where(Service.location_id == location.id, Service.archived_at.is_(None))  # type: ignore[union-attr]
        )
    ).first()
    if in_use is not None:
        raise InvalidListing("location_id", "services still take place here: move or archive them first")
    await update_row(
        session,
        location,
        expected_version=expected_version,
        values={"archived_at": _now()},
        entity=Entity.location,
        organisation_id=location.organisation_id,
        service_id=None,
        action="archive",
        actor=actor,
        request_id=request_id,
    )


# --- services ----------------------------------------------------------------------------------


async def _check_location(session: AsyncSession, location_id: uuid.UUID | None, organisation_id: uuid.UUID) -> None:
    if location_id is None:
        return
    location = await session.get(Location, location_id)
    if location is None or location.organisation_id != organisation_id or location.archived_at is not None:
        raise InvalidListing("location_id", "no such location for this organisation")


def _service_values(data: ServiceCreate | ServicePatch, fields: set[str]) -> dict[str, Any]:
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


async def create_service(
    session: AsyncSession, data: ServiceCreate, *, actor: Principal, request_id: str | None
) -> Service:
    organisation_id = await _organisation_for_new(session, actor, data.organisation_id)
    await _check_location(session, data.location_id, organisation_id)
    values = _service_values(data, set(data.model_fields_set | {"name", "specialisms"}) - {"organisation_id"})
    service = Service(organisation_id=organisation_id, **values)
    session.add(service)
    await session.flush()
    session.add(
        _revision(
            entity=Entity.service,
            row=service,
            organisation_id=organisation_id,
            service_id=service.id,
            action="create",
            changes={k: {"old": None, "new": _jsonable(v)} for k, v in values.items()},
            actor=actor,
            request_id=request_id,
        )
    )
    await session.flush()
    await session.refresh(service)
    return service


async def update_service(
    session: AsyncSession,
    service_id: uuid.UUID,
    patch: ServicePatch,
    *,
    expected_version: set[int] | None,
    actor: Principal,
    request_id: str | None,
) -> Service:
    service = await _load(session, Service, service_id, actor)
    given = set(patch.model_fields_set)
    for required in ("name", "specialisms"):
        if required in given and getattr(patch, required) is None:
            raise InvalidListing(required, "cannot be cleared")
    values = _service_values(patch, given)
    age_min = values.get("age_min", service.age_min)
    age_max = values.get("age_max", service.age_max)
    if age_min is not None and age_max is not None and age_min > age_max:
        raise InvalidListing("age_min", "age_min must not exceed age_max")
    if "location_id" in given:
        await _check_location(session, patch.location_id, service.organisation_id)
    await update_row(
        session,
        service,
        expected_version=expected_version,
        values=values,
        entity=Entity.service,
        organisation_id=service.organisation_id,
        service_id=service.id,
        action="update",
        actor=actor,
        request_id=request_id,
    )
    if "location_id" in values:
        await _refresh_coverage(session, [service.id])
    return service


async def archive_service(
    session: AsyncSession,
    service_id: uuid.UUID,
    *,
    expected_version: set[int] | None,
    actor: Principal,
    request_id: str | None,
) -> None:
    service = await _load(session, Service, service_id, actor)
    await update_row(
        session,
        service,
        expected_version=expected_version,
        values={"archived_at": _now()},
        entity=Entity.service,
        organisation_id=service.organisation_id,
        service_id=service.id,
        action="archive",
        actor=actor,
        request_id=request_id,
    )


async def set_capacity(
    session: AsyncSession,
    service_id: uuid.UUID,
    data: CapacityUpdate,
    *,
    expected_version: set[int] | None,
    actor: Principal,
    request_id: str | None,
) -> Service:
    service = await _load(session, Service, service_id, actor)
    as_of = data.as_of or _now()
    if as_of > _now() + FUTURE_TOLERANCE:
        raise InvalidListing("as_of", "lies in the future")
    values = {"capacity": data.state, "capacity_places": data.places, "capacity_as_of": as_of}
    await update_row(
        session,
        service,
        expected_version=expected_version,
        values=values,
        entity=Entity.service,
        organisation_id=service.organisation_id,
        service_id=service.id,
        action="capacity",
        actor=actor,
        request_id=request_id,
        always=True,
    )
    return service


async def close_temporarily(
    session: AsyncSession, service_id: uuid.UUID, data: ClosureCreate, *, actor: Principal, request_id: str | None
) -> Service:
    service = await _load(session, Service, service_id, actor)
    if service.status == ServiceStatus.suspended:
        raise InvalidListing("status", "the service is suspended")
    starts = data.starts or _now()
    if data.until is not None and data.until <= starts:
        raise InvalidListing("until", "must come after the start of the closure")
    values = {
        "status": ServiceStatus.temporarily_closed,
        "closed_from": starts,
        "closed_until": data.until,
        "closure_message": data.message,
    }
    await update_row(
        session,
        service,
        expected_version=None,
        values=values,
        entity=Entity.service,
        organisation_id=service.organisation_id,
        service_id=service.id,
        action="closure",
        actor=actor,
        request_id=request_id,
        always=True,
    )
    return service


async def reopen(session: AsyncSession, service_id: uuid.UUID, *, actor: Principal, request_id: str | None) -> Service:
    service = await _load(session, Service, service_id, actor)
    values = {"status": ServiceStatus.active, "closed_from": None, "closed_until": None, "closure_message": None}
    await update_row(
        session,
        service,
        expected_version=None,
        values=values,
        entity=Entity.service,
        organisation_id=service.organisation_id,
        service_id=service.id,
        action="reopen",
        actor=actor,
        request_id=request_id,
    )
    return service


async def verify(session: AsyncSession, service_id: uuid.UUID, *, actor: Principal, request_id: str | None) -> Service:
    """The organisation confirms the listing is still true: it is fresh again for 180 days."""
    service = await _load(session, Service, service_id, actor)
    await update_row(
        session,
        service,
        expected_version=None,
        values={"last_verified_at": _now()},
        entity=Entity.service,
        organisation_id=service.organisation_id,
        service_id=service.id,
        action="verify",
        actor=actor,
        request_id=request_id,
        always=True,
    )
    return service


# --- service areas -----------------------------------------------------------------------------


async def _check_codes(session: AsyncSession, values: Mapping[str, Any]) -> None:
    tables = {
        "communes": "commune",
        "departements": "departement",
        "collectivites": "collectivite",
        "regions": "region",
    }
    for field, table in tables.items():
        codes = values.get(field) or []
        if not codes:
            continue
        found = set(
            (await sql(session, f"SELECT code FROM {table} WHERE code = ANY(:codes)", {"codes": list(codes)})).scalars()
        )
        unknown = [code for code in codes if code not in found]
        if unknown:
            raise InvalidListing(field, f"unknown code {unknown[0]!r}")


def _area_not_empty(values: Mapping[str, Any]) -> None:
    if not (
        values.get("national")
        or values.get("radius_km")
        or any(values.get(f) for f in ("communes", "departements", "collectivites", "regions"))
    ):
        raise InvalidListing("national", "an area needs territory codes, a radius or national: true")


async def _check_radius(session: AsyncSession, service: Service, radius_km: float | None) -> None:
    if radius_km is not None and service.location_id is None:
        raise InvalidListing("radius_km", "a radius needs the service to have a location")


async def create_area(
    session: AsyncSession, data: AreaCreate, *, actor: Principal, request_id: str | None
) -> ServiceArea:
    try:
        service = await _load(session, Service, data.service_id, actor)
    except NotFound as exc:
        raise InvalidListing("service_id", "no such service") from exc
    values = {field: getattr(data, field) for field in data.model_fields_set - {"service_id"}}
    values = {k: (v if v is not None else ([] if k in ARRAY_FIELDS else None)) for k, v in values.items()}
    values.setdefault("national", False)
    if values["national"] is None:
        values["national"] = False
    _area_not_empty(values)
    await _check_codes(session, values)
    await _check_radius(session, service, values.get("radius_km"))
    area = ServiceArea(service_id=service.id, **values)
    session.add(area)
    await session.flush()
    session.add(
        _revision(
            entity=Entity.service_area,
            row=area,
            organisation_id=service.organisation_id,
            service_id=service.id,
            action="create",
            changes={k: {"old": None, "new": _jsonable(v)} for k, v in values.items()},
            actor=actor,
            request_id=request_id,
        )
    )
    await _refresh_coverage(session, [service.id])
    await session.refresh(area)
    return area


async def update_area(
    session: AsyncSession,
    area_id: uuid.UUID,
    patch: AreaPatch,
    *,
    expected_version: set[int] | None,
    actor: Principal,
    request_id: str | None,
) -> ServiceArea:
    area = await _load(session, ServiceArea, area_id, actor)
    service = await _load(session, Service, area.service_id, actor)
    values = {field: getattr(patch, field) for field in patch.model_fields_set}
    values = {
        k: (v if v is not None else ([] if k in ARRAY_FIELDS else False if k == "national" else None))
        for k, v in values.items()
    }
    merged = {
        **{
            f: getattr(area, f)
            for f in ("communes", "departements", "collectivites", "regions", "radius_km", "national")
        },
        **values,
    }
    _area_not_empty(merged)
    await _check_codes(session, values)
    await _check_radius(session, service, values.get("radius_km"))
    await update_row(
        session,
        area,
        expected_version=expected_version,
        values=values,
        entity=Entity.service_area,
        organisation_id=service.organisation_id,
        service_id=service.id,
        action="update",
        actor=actor,
        request_id=request_id,
    )
    await _refresh_coverage(session, [service.id])
    return area


async def archive_area(
    session: AsyncSession,
    area_id: uuid.UUID,
    *,
    expected_version: set[int] | None,
    actor: Principal,
    request_id: str | None,
) -> None:
    area = await _load(session, ServiceArea, area_id, actor)
    service = await _load(session, Service, area.service_id, actor)
    await update_row(
        session,
        area,
        expected_version=expected_version,
        values={"archived_at": _now()},
        entity=Entity.service_area,
        organisation_id=service.organisation_id,
        service_id=service.id,
        action="archive",
        actor=actor,
        request_id=request_id,
    )
    await _refresh_coverage(session, [service.id])
