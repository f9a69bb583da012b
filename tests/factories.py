"""Builders for directory rows, flushed in the test's transaction (rolled back afterwards)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from geoalchemy2.elements import WKTElement
from sqlmodel.ext.asyncio.session import AsyncSession

from directory.areas import REFRESH
from directory.models import Location, Organisation, OrganisationKind, Service, ServiceArea


async def organisation(session: AsyncSession, **fields: Any) -> Organisation:
    row = Organisation(
        **{"name": f"Organisation {uuid.uuid4().hex[:6]}", "kind": OrganisationKind.association, **fields}
    )
    session.add(row)
    await session.flush()
    return row


async def location(
    session: AsyncSession, org: Organisation, *, lon: float, lat: float, commune: str, **fields: Any
) -> Location:
    row = Location(
        organisation_id=org.id, commune_code=commune, point=WKTElement(f"POINT({lon} {lat})", srid=4326), **fields
    )
    session.add(row)
    await session.flush()
    return row


async def service(session: AsyncSession, org: Organisation, place: Location | None = None, **fields: Any) -> Service:
    defaults: dict[str, Any] = {
        "name": f"Service {uuid.uuid4().hex[:6]}",
        "specialisms": ["legal-support"],
        "schedule": {"mode": "always"},
        "last_verified_at": datetime.now(UTC),
    }
    row = Service(organisation_id=org.id, location_id=place.id if place else None, **{**defaults, **fields})
    session.add(row)
    await session.flush()
    return row


async def area(session: AsyncSession, svc: Service, **fields: Any) -> ServiceArea:
    row = ServiceArea(service_id=svc.id, **fields)
    session.add(row)
    await session.flush()
    await refresh_areas(session, [svc.id])
    return row


async def refresh_areas(session: AsyncSession, service_ids: list[uuid.UUID]) -> None:
    connection = await session.connection()
    for statement in REFRESH:
        await connection.exec_driver_sql(statement, {"service_ids": service_ids})
