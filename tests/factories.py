"""Builders for directory rows, flushed in the test's transaction (rolled back afterwards)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from geoalchemy2.elements import WKTElement
from sqlmodel.ext.asyncio.session import AsyncSession

from directory.areas import REFRESH, rebuild_params
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
        await connection.exec_driver_sql(statement, rebuild_params(service_ids))


# --- care pathways, through the API (as a specialist or partner would make them) -------------------

CASE: dict[str, Any] = {
    "age": 15,
    "gender": "female",
    "residence_collectivite": "93D",
    "found_in_commune": "75056",
    "intake_channel": "phone",
    "caller": "parent",
    "known_to_child_welfare": "yes",
    "needs": ["emergency-shelter", "legal-support"],
    "do_not_contact_parents": True,
}


async def case(client: httpx.AsyncClient, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    """A case opened through the API; its JSON."""
    response = await client.post("/v1/cases", headers=headers, json={**CASE, **fields})
    assert response.status_code == 201, response.text
    return dict(response.json())


async def post_handoff(client: httpx.AsyncClient, headers: dict[str, str], **body: Any) -> httpx.Response:
    """POST /v1/handoffs with an orientation's defaults and a fresh Idempotency-Key."""
    payload = {
        "kind": "orientation",
        "beneficiary": "minor",
        "urgency": "within_24h",
        "legal_basis": "child_protection_duty",
        **body,
    }
    return await client.post("/v1/handoffs", headers={**headers, "Idempotency-Key": str(uuid.uuid4())}, json=payload)


async def handoff(client: httpx.AsyncClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    """A handoff created through the API; its JSON."""
    response = await post_handoff(client, headers, **body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def move(
    client: httpx.AsyncClient, headers: dict[str, str], handoff_id: str, to: str, **body: Any
) -> dict[str, Any]:
    """A transition through the API that must succeed; the handoff's JSON."""
    response = await client.post(f"/v1/handoffs/{handoff_id}/transitions", headers=headers, json={"to": to, **body})
    assert response.status_code == 200, response.text
    return dict(response.json())
