"""Every listing route × every role × {own, other organisation, nonexistent} against the checked-in
policy below. A denied cell must change nothing in the database.

Scope rule (one for the whole API): an object outside your scope answers exactly like a missing one —
404 when it is in the path, 422 naming the field when a body refers to it. A role that may not call
an operation at all gets 403.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from psycopg import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from directory.access import Role
from tests import factories
from tests.api.test_listings import fingerprint


@dataclass
class Target:
    organisation: str
    service: str
    location: str
    spare_location: str  # no service uses it: it can be archived
    area: str


Body = Callable[[Target], dict[str, Any]] | None


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # formatted with the target's ids
    body: Body = None
    if_match: bool = False


ROUTES: dict[str, Route] = {
    "service.read": Route("GET", "/v1/services/{service}"),
    "service.create": Route(
        "POST",
        "/v1/services",
        lambda t: {"organisation_id": t.organisation, "name": "Matrix", "specialisms": ["legal-support"]},
    ),
    "service.update": Route("PATCH", "/v1/services/{service}", lambda t: {"name": "Matrix"}, if_match=True),
    "service.archive": Route("DELETE", "/v1/services/{service}", if_match=True),
    "service.capacity": Route("PUT", "/v1/services/{service}/capacity", lambda t: {"state": "limited"}, if_match=True),
    "service.close": Route("POST", "/v1/services/{service}/closures", lambda t: {"message": "Matrix"}),
    "service.reopen": Route("POST", "/v1/services/{service}/reopen"),
    "service.verify": Route("POST", "/v1/services/{service}/verify"),
    "service.history": Route("GET", "/v1/services/{service}/history"),
    "location.read": Route("GET", "/v1/locations/{location}"),
    "location.create": Route(
        "POST",
        "/v1/locations",
        lambda t: {
            "organisation_id": t.organisation,
            "commune_code": "69123",
            "point": {"type": "Point", "coordinates": [4.84, 45.76]},
        },
    ),
    "location.update": Route("PATCH", "/v1/locations/{location}", lambda t: {"name": "Matrix"}, if_match=True),
    "location.archive": Route("DELETE", "/v1/locations/{spare_location}", if_match=True),
    "area.read": Route("GET", "/v1/service-areas/{area}"),
    "area.create": Route("POST", "/v1/service-areas", lambda t: {"service_id": t.service, "radius_km": 10}),
    "area.update": Route("PATCH", "/v1/service-areas/{area}", lambda t: {"radius_km": 5}, if_match=True),
    "area.archive": Route("DELETE", "/v1/service-areas/{area}", if_match=True),
    "organisation.freshness": Route("GET", "/v1/organisations/{organisation}/freshness"),
}

OWN, OTHER, MISSING = "own", "other", "nonexistent"
WRITE = {
    "partner": {OWN: 200, OTHER: 404, MISSING: 404},
    "admin": {OWN: 200, OTHER: 200, MISSING: 404},
    "specialist": dict.fromkeys((OWN, OTHER, MISSING), 403),
    "department": dict.fromkeys((OWN, OTHER, MISSING), 403),
}
CREATE = {
    "partner": {OWN: 201, OTHER: 422, MISSING: 422},
    "admin": {OWN: 201, OTHER: 201, MISSING: 422},
    "specialist": dict.fromkeys((OWN, OTHER, MISSING), 403),
    "department": dict.fromkeys((OWN, OTHER, MISSING), 403),
}
ARCHIVE = {
    role: {target: 204 if status == 200 else status for target, status in cells.items()}
    for role, cells in WRITE.items()
}
READ_ANYONE = {role: {OWN: 200, OTHER: 200, MISSING: 404} for role in ("partner", "admin", "specialist", "department")}

# The checked-in policy: route → role → target → status.
POLICY: dict[str, dict[str, dict[str, int]]] = {
    "service.read": READ_ANYONE,
    "service.create": CREATE,
    "service.update": WRITE,
    "service.archive": ARCHIVE,
    "service.capacity": WRITE,
    "service.close": WRITE,
    "service.reopen": WRITE,
    "service.verify": WRITE,
    "service.history": WRITE,
    "location.read": WRITE,
    "location.create": CREATE,
    "location.update": WRITE,
    "location.archive": ARCHIVE,
    "area.read": WRITE,
    "area.create": CREATE,
    "area.update": WRITE,
    "area.archive": ARCHIVE,
    "organisation.freshness": WRITE,
}

MATRIX_ROUTES = {
    (
        route.method,
        route.path.replace("{spare_location}", "{location_id}")
        .replace("{service}", "{service_id}")
        .replace("{location}", "{location_id}")
        .replace("{area}", "{area_id}")
        .replace("{organisation}", "{organisation_id}"),
    )
    for route in ROUTES.values()
}

CELLS = [
    (name, role, target)
    for name in ROUTES
    for role in ("partner", "admin", "specialist", "department")
    for target in (OWN, OTHER, MISSING)
]


async def _target(session: AsyncSession, name: str) -> Target:
    org = await factories.organisation(session, name=name)
    place = await factories.location(session, org, lon=4.8357, lat=45.7640, commune="69123")
    spare = await factories.location(session, org, lon=4.8357, lat=45.7640, commune="69123")
    svc = await factories.service(session, org, place)
    area = await factories.area(session, svc, departements=["69"])
    return Target(str(org.id), str(svc.id), str(place.id), str(spare.id), str(area.id))


def test_the_policy_covers_every_cell() -> None:
    assert set(POLICY) == set(ROUTES)
    for name, roles in POLICY.items():
        assert set(roles) == {"partner", "admin", "specialist", "department"}, name
        assert all(set(cells) == {OWN, OTHER, MISSING} for cells in roles.values()), name


@pytest.mark.parametrize(("name", "role", "target"), CELLS)
async def test_cell(
    client: httpx.AsyncClient,
    session: AsyncSession,
    reader: AsyncConnection,
    auth,  # type: ignore[no-untyped-def]
    name: str,
    role: str,
    target: str,
) -> None:
    own = await _target(session, "Own")
    other = await _target(session, "Other")
    missing = Target(*(str(uuid.uuid4()) for _ in range(5)))
    chosen = {OWN: own, OTHER: other, MISSING: missing}[target]
    headers = auth(Role(role), org=uuid.UUID(own.organisation) if role == "partner" else None)
    route = ROUTES[name]
    if route.if_match:
        headers["If-Match"] = "*"
    before = await fingerprint(reader)
    response = await client.request(
        route.method,
        route.path.format(**vars(chosen)),
        headers=headers,
        json=route.body(chosen) if route.body else None,
    )
    expected = POLICY[name][role][target]
    assert response.status_code == expected, response.text
    if expected >= 400:
        assert response.headers["content-type"] == "application/problem+json"
    if expected >= 400 or route.method == "GET":  # denials and reads change nothing
        assert await fingerprint(reader) == before
