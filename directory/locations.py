"""Locations: where services take place. Reads for their managers (the organisation and admins),
writes by them, history.

A confidential location (a safe house) is seen exactly — point, address, metre distances — only by
those `access.EXACT_LOCATION` names; admins see it at its commune like everyone else. Two rules keep
writes from leaking what a writer may not see, and keep publishing the owner's act:

- Visibility is the owning organisation's alone: a body from anyone else (an admin) that sets
  `visibility` — on PATCH any value, on POST `confidential` — is refused (422 naming the field, as
  for any field this caller may not write). Admins create public locations only.
- The place of a confidential location (`point`, `address`, `commune_code`) is the owner's alone too:
  an admin's PATCH touching it is refused the same way, before anything reads the stored point. So no
  validation that reads a hidden point (a commune checked against it) ever runs for someone who may
  not see it, and no answer — status, code, message, version bump — depends on it.

Both refusals depend only on the caller, the body's members and the stored visibility (which admins
see), never on the hidden place. Order in every write: scope (404), If-Match (412), then validation.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from geoalchemy2.elements import WKTElement
from geoalchemy2.shape import to_shape
from psycopg import AsyncConnection
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from geo.territories import commune_near, commune_point

from . import revisions
from .access import (
    EXACT_LOCATION,
    PLACE_HISTORY_VISIBLE,
    Principal,
    check_managed_organisation,
    listing_params,
    listing_scope,
    load_listing,
    organisation_for_new,
    owns_listing,
)
from .areas import lock_services, refresh_coverage
from .errors import Conflict, InvalidInput, NotFound
from .models import Location, PointPrecision, Service, Visibility
from .schemas import LocationCreate, LocationPatch

LOCATION_JSON = f"""
    json_build_object(
        'id', l.id, 'organisation_id', l.organisation_id, 'name', l.name,
        'address', CASE WHEN {EXACT_LOCATION} THEN l.address END,
        'commune', json_build_object('code', c.code, 'name', c.name),
        'point', ST_AsGeoJSON(CASE WHEN {EXACT_LOCATION} THEN l.point ELSE l.public_point END, 7)::json,
        'location_precision', CASE WHEN {EXACT_LOCATION} THEN l.point_precision ELSE 'commune' END,
        'visibility', l.visibility,
        'front_door', json_build_object('phone', l.front_door_phone, 'email', l.front_door_email),
        'geocoding', CASE WHEN {EXACT_LOCATION} AND l.geocoding_type IS NOT NULL
                          THEN json_build_object('score', l.geocoding_score, 'type', l.geocoding_type) END,
        'archived_at', l.archived_at, 'version', l.version)
"""

# The exact place of a location: on a confidential one, only its organisation reads or writes it.
PLACE_FIELDS = ("commune_code", "point", "address")
_HIDDEN_IN_HISTORY = ("point", "address", "commune_code")
_FIELDS = ("name", "address", "commune_code", "point", "visibility", "front_door_phone", "front_door_email")


# --- reads -------------------------------------------------------------------------------------


async def get(conn: AsyncConnection, location_id: uuid.UUID, *, viewer: Principal) -> tuple[str, int]:
    """(JSON, version) of a location its viewer manages."""
    row = await (
        await conn.execute(
            f"""SELECT {LOCATION_JSON}::text, l.version FROM location l JOIN commune c ON c.code = l.commune_code
             WHERE l.id = %(id)s AND {listing_scope("l.organisation_id")}""",
            {"id": location_id, **listing_params(viewer)},
        )
    ).fetchone()
    if row is None:
        raise NotFound("no such location")
    return str(row[0]), int(row[1])


async def of_organisation(
    conn: AsyncConnection,
    organisation_id: uuid.UUID,
    *,
    viewer: Principal,
    after: tuple[str, str] | None,
    limit: int,
) -> list[tuple[str, str, str]]:
    """(created_at, id, JSON) of an organisation's current locations, oldest first, up to `limit`.
    NotFound when the organisation is missing or not the viewer's."""
    await check_managed_organisation(conn, organisation_id, viewer)
    params = {"id": organisation_id, "limit": limit, **listing_params(viewer)}
    rows = await (
        await conn.execute(
            f"""SELECT l.created_at::text, l.id::text, {LOCATION_JSON}::text
                  FROM location l JOIN commune c ON c.code = l.commune_code
                 WHERE l.organisation_id = %(id)s AND l.archived_at IS NULL
                   AND (%(after_at)s::timestamptz IS NULL
                        OR (l.created_at, l.id) > (%(after_at)s::timestamptz, %(after_id)s::uuid))
                 ORDER BY l.created_at, l.id LIMIT %(limit)s""",
            {**params, "after_at": after[0] if after else None, "after_id": after[1] if after else None},
        )
    ).fetchall()
    return [(row[0], row[1], row[2]) for row in rows]


async def history(
    conn: AsyncConnection, location_id: uuid.UUID, *, viewer: Principal, after: int | None, limit: int
) -> tuple[list[tuple[int, str]], bool]:
    """(id, JSON) of the changes to a location, oldest first; and whether more follow. Former points
    and addresses are shown only to those PLACE_HISTORY_VISIBLE names; others read `{"redacted": true}`
    for them (that they changed, not what they were)."""
    hidden = ", ".join(f"'{field}'" for field in _HIDDEN_IN_HISTORY)
    rows = await (
        await conn.execute(
            f"""SELECT r.id, json_build_object(
                   'id', r.id, 'at', r.at, 'entity', r.entity, 'entity_id', r.entity_id, 'action', r.action,
                   'changes', CASE WHEN {PLACE_HISTORY_VISIBLE} THEN r.changes ELSE (
                       SELECT coalesce(jsonb_object_agg(e.key, CASE WHEN e.key IN ({hidden})
                                                                    THEN '{{"redacted": true}}'::jsonb
                                                                    ELSE e.value END), '{{}}'::jsonb)
                         FROM jsonb_each(r.changes) e) END,
                   'actor', json_build_object('subject', r.actor_subject, 'role', r.actor_role,
                                              'client_id', r.actor_client_id,
                                              'organisation_id', r.actor_organisation_id))::text
             FROM location l JOIN listing_revision r ON r.entity = 'location' AND r.entity_id = l.id
            WHERE l.id = %(id)s AND {listing_scope("l.organisation_id")}
              AND (%(after)s::bigint IS NULL OR r.id > %(after)s::bigint)
            ORDER BY r.id LIMIT %(limit)s""",
            {"id": location_id, "after": after, "limit": limit + 1, **listing_params(viewer)},
        )
    ).fetchall()
    if not rows and after is None:
        exists = await (
            await conn.execute(
                f"SELECT 1 FROM location l WHERE l.id = %(id)s AND {listing_scope('l.organisation_id')}",
                {"id": location_id, **listing_params(viewer)},
            )
        ).fetchone()
        if exists is None:
            raise NotFound("no such location")
    return [(row[0], row[1]) for row in rows[:limit]], len(rows) > limit


# --- writes ------------------------------------------------------------------------------------


def _point(lon: float, lat: float) -> WKTElement:
    return WKTElement(f"POINT({lon!r} {lat!r})", srid=4326)


async def _check_point(session: AsyncSession, commune_code: str, lon: float, lat: float) -> str:
    """The commune must exist and the point lie in it or within 2 km of it (so, in France). Runs only
    on points the caller may see: its own input, or the stored point of a location it sees exactly."""
    found = await commune_near(await revisions.driver(session), commune_code, lon=lon, lat=lat)
    if found is None:
        raise InvalidInput("commune_code", "no commune with this INSEE code")
    code, name, near = found
    if not near:
        raise InvalidInput(
            "point",
            f"the point is more than 2 km from {name} ({code}): check the commune or the "
            "coordinates (GeoJSON order is [longitude, latitude])",
        )
    return code


async def _near(session: AsyncSession, commune_code: str, lon: float, lat: float) -> bool:
    found = await commune_near(await revisions.driver(session), commune_code, lon=lon, lat=lat)
    return found is not None and bool(found[2])


def _check_front_door(visibility: Any, phone: str | None, email: str | None) -> None:
    if visibility == Visibility.confidential and not (phone or email):
        raise InvalidInput("front_door_phone", "a confidential location needs a front-door phone or e-mail")


def _check_owner_fields(
    actor: Principal, organisation_id: uuid.UUID, given: set[str], *, stored: Location | None, visibility: Any
) -> None:
    """Refuse a non-owner's body that publishes, hides or moves a safe house (see the module doc)."""
    if owns_listing(actor, organisation_id):
        return
    if stored is None and visibility == Visibility.confidential:
        raise InvalidInput("visibility", "only the location's own organisation makes it confidential")
    if stored is not None and "visibility" in given:
        raise InvalidInput("visibility", "only the location's own organisation changes its visibility")
    if stored is not None and stored.visibility == Visibility.confidential:
        for field in PLACE_FIELDS:
            if field in given:
                raise InvalidInput(field, "only the organisation of a confidential location changes its place")


async def check_new(session: AsyncSession, data: LocationCreate, *, actor: Principal) -> uuid.UUID:
    """The organisation a new location belongs to, once the caller may create it and it can be placed.
    The route runs it before asking the geocoder: a request refused here sends no address out."""
    organisation_id = await organisation_for_new(session, actor, data.organisation_id)
    _check_owner_fields(actor, organisation_id, data.model_fields_set, stored=None, visibility=data.visibility)
    if data.point is None and not data.address:
        raise InvalidInput("point", "give the location's point, or its address to place it")
    if await commune_point(await revisions.driver(session), data.commune_code) is None:
        raise InvalidInput("commune_code", "no commune with this INSEE code")
    return organisation_id


@dataclass(frozen=True)
class Geocoded:
    """A point the geocoder found for a location's address (the api layer asks; the domain knows no
    HTTP): kept with the geocoder's score and result type."""

    lon: float
    lat: float
    score: float
    type: str


async def create(
    session: AsyncSession,
    data: LocationCreate,
    *,
    actor: Principal,
    request_id: str | None,
    geocoded: Geocoded | None = None,
) -> Location:
    """A location at the point given, else at the point the geocoder found for its address, else at
    its commune's point with `point_precision = commune` (say so: it is only the commune)."""
    organisation_id = await check_new(session, data, actor=actor)
    precision, score, kind = PointPrecision.exact, None, None
    if data.point is not None:
        lon, lat = data.point.lon, data.point.lat
    elif geocoded is not None and await _near(session, data.commune_code, geocoded.lon, geocoded.lat):
        lon, lat, score, kind = geocoded.lon, geocoded.lat, geocoded.score, geocoded.type
    else:  # no point, or the geocoder's was not in the commune: the commune's point, said to be no more
        found = await commune_point(await revisions.driver(session), data.commune_code)
        if found is None:
            raise InvalidInput("commune_code", "no commune with this INSEE code")
        (lon, lat), precision = found, PointPrecision.commune
    code = await _check_point(session, data.commune_code, lon, lat)
    _check_front_door(data.visibility, data.front_door_phone, data.front_door_email)
    location = Location(
        organisation_id=organisation_id,
        name=data.name,
        address=data.address,
        commune_code=code,
        point=_point(lon, lat),
        point_precision=precision,
        geocoding_score=score,
        geocoding_type=kind,
        visibility=data.visibility,
        front_door_phone=data.front_door_phone,
        front_door_email=str(data.front_door_email or "") or None,
    )
    session.add(location)
    await session.flush()
    await session.refresh(location)
    await revisions.record_creation(session, location, _FIELDS, actor=actor, request_id=request_id)
    return location


async def update(
    session: AsyncSession,
    location_id: uuid.UUID,
    patch: LocationPatch,
    *,
    expected_version: revisions.Expected | None,
    actor: Principal,
    request_id: str | None,
) -> tuple[Location, dict[str, Any]]:
    """The location and the changes recorded (a visibility change is journalled by the route)."""
    location = await load_listing(session, Location, location_id, actor)
    revisions.check_version(location, expected_version)
    given = set(patch.model_fields_set)
    _check_owner_fields(actor, location.organisation_id, given, stored=location, visibility=patch.visibility)
    revisions.refuse_clearing(patch, ("commune_code", "point", "visibility"))
    values: dict[str, Any] = {
        field: getattr(patch, field) for field in given if field not in ("point", "front_door_email")
    }
    if "front_door_email" in given:
        values["front_door_email"] = str(patch.front_door_email) if patch.front_door_email else None
    if "commune_code" in given or "point" in given:
        # The stored point is read only here: for the owner, or for a public location (seen by all).
        if patch.point is not None:
            lon, lat = patch.point.lon, patch.point.lat
        else:
            shape = to_shape(location.point)
            lon, lat = shape.x, shape.y
        values["commune_code"] = await _check_point(session, patch.commune_code or location.commune_code, lon, lat)
        if patch.point is not None:  # the partner's own point: exact, and no longer the geocoder's
            values["point"] = _point(lon, lat)
            values["point_precision"] = PointPrecision.exact
            values["geocoding_score"] = values["geocoding_type"] = None
    if location.source is not None and values.get("visibility") == Visibility.confidential:
        raise InvalidInput(
            "visibility",
            "an imported location is public open data: create a new, confidential location for the safe house",
        )
    merged = {**{f: getattr(location, f) for f in ("visibility", "front_door_phone", "front_door_email")}, **values}
    _check_front_door(merged["visibility"], merged["front_door_phone"], merged["front_door_email"])
    publishing = "visibility" in values and values["visibility"] != location.visibility
    services: list[uuid.UUID] = []
    if {"point", "commune_code", "visibility"} & set(values):
        # Services first, then the location (whose coverage trigger takes the coverage lock) and their
        # areas: the order every write that reaches a service's coverage follows (areas.lock_services).
        services = list((await session.exec(select(Service.id).where(Service.location_id == location.id))).all())
        await lock_services(session, services)
    changes = await revisions.update_row(
        session,
        location,
        expected_version=expected_version,
        values=values,
        action="visibility" if publishing else "update",
        actor=actor,
        request_id=request_id,
    )
    if {"point", "commune_code", "visibility"} & set(changes):
        await refresh_coverage(session, services)
    return location, changes


async def archive(
    session: AsyncSession,
    location_id: uuid.UUID,
    *,
    expected_version: revisions.Expected | None,
    actor: Principal,
    request_id: str | None,
) -> None:
    location = await load_listing(session, Location, location_id, actor)
    revisions.check_version(location, expected_version)
    in_use = (
        await session.exec(
            select(Service.id).where(Service.location_id == location.id, Service.archived_at.is_(None))  # type: ignore[union-attr]
        )
    ).first()
    if in_use is not None:
        raise Conflict("services still take place here: move or archive them first")
    await revisions.update_row(
        session,
        location,
        expected_version=expected_version,
        values={"archived_at": datetime.now(UTC)},
        action="archive",
        actor=actor,
        request_id=request_id,
    )
