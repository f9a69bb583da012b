"""Partners can find their own things (issue 9, B12): the lists of an organisation's locations and
service areas, and the owner's view of a service naming its location and areas."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from psycopg import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from api.schemas import AreaPage, LocationPage, ServiceDetail
from directory.access import Role
from directory.models import Visibility
from tests import factories
from tests.api.test_listings import fingerprint
from tests.conftest import Tokens

# Routes this file walks per role and target (tests/api/test_policies.py counts them as exercised).
OWN_LISTING_ROUTES = {
    ("GET", "/v1/organisations/{organisation_id}/locations"),
    ("GET", "/v1/organisations/{organisation_id}/service-areas"),
    ("GET", "/v1/locations/{location_id}/history"),
}

SAFE = (4.8357, 45.7640)


@pytest.fixture
async def orgs(session: AsyncSession) -> dict[str, dict[str, str]]:
    made: dict[str, dict[str, str]] = {}
    for name in ("own", "other"):
        org = await factories.organisation(session, name=f"Asso {name}")
        public = await factories.location(session, org, lon=4.85, lat=45.75, commune="69123", address="1 rue Ouverte")
        safe = await factories.location(
            session,
            org,
            lon=SAFE[0],
            lat=SAFE[1],
            commune="69123",
            address="2 rue Fermée",
            visibility=Visibility.confidential,
            front_door_phone="+33199000001",
        )
        gone = await factories.location(session, org, lon=4.85, lat=45.75, commune="69123", archived_at=_past())
        svc = await factories.service(session, org, safe)
        first = await factories.area(session, svc, departements=["69"])
        second = await factories.area(session, svc, national=True)
        old = await factories.area(session, svc, communes=["69123"], archived_at=_past())
        made[name] = {
            "organisation": str(org.id),
            "public": str(public.id),
            "safe": str(safe.id),
            "gone": str(gone.id),
            "service": str(svc.id),
            "areas": f"{first.id} {second.id}",
            "old_area": str(old.id),
        }
    return made


def _past() -> datetime:
    return datetime(2026, 1, 1, tzinfo=UTC)


async def _all(client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    next_url: str | None = url + "?limit=1"
    while next_url:
        response = await client.get(next_url, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"items", "links"}
        items += body["items"]
        assert len(body["items"]) <= 1
        next_url = body["links"][0]["href"] if body["links"] else None
    return items


async def test_a_partner_lists_its_own_locations_exactly(
    client: httpx.AsyncClient, orgs: dict[str, dict[str, str]], auth: Tokens
) -> None:
    own = orgs["own"]
    headers = auth("partner", org=uuid.UUID(own["organisation"]))
    url = f"/v1/organisations/{own['organisation']}/locations"
    items = await _all(client, url, headers)
    LocationPage.model_validate({"items": items, "links": []})
    assert sorted(item["id"] for item in items) == sorted([own["public"], own["safe"]])  # not the archived one
    safe = next(item for item in items if item["id"] == own["safe"])
    assert (safe["address"], safe["point"]["coordinates"], safe["location_precision"]) == (
        "2 rue Fermée",
        list(SAFE),
        "exact",
    )


async def test_an_admin_lists_them_without_the_safe_houses_place(
    client: httpx.AsyncClient, orgs: dict[str, dict[str, str]], auth: Tokens
) -> None:
    own = orgs["own"]
    items = await _all(client, f"/v1/organisations/{own['organisation']}/locations", auth("admin"))
    safe = next(item for item in items if item["id"] == own["safe"])
    assert (safe["address"], safe["location_precision"]) == (None, "commune")
    assert safe["point"]["coordinates"] != list(SAFE)
    public = next(item for item in items if item["id"] == own["public"])
    assert public["address"] == "1 rue Ouverte"


async def test_a_partner_lists_its_own_service_areas(
    client: httpx.AsyncClient, orgs: dict[str, dict[str, str]], auth: Tokens
) -> None:
    own = orgs["own"]
    headers = auth("partner", org=uuid.UUID(own["organisation"]))
    items = await _all(client, f"/v1/organisations/{own['organisation']}/service-areas", headers)
    AreaPage.model_validate({"items": items, "links": []})
    assert sorted(item["id"] for item in items) == sorted(own["areas"].split())
    assert {item["service_id"] for item in items} == {own["service"]}


async def test_the_owners_view_of_a_service_names_its_location_and_areas(
    client: httpx.AsyncClient, orgs: dict[str, dict[str, str]], auth: Tokens
) -> None:
    own = orgs["own"]
    url = f"/v1/services/{own['service']}"
    mine = await client.get(url, headers=auth("partner", org=uuid.UUID(own["organisation"])))
    props = ServiceDetail.model_validate(mine.json()).properties
    assert str(props.location_id) == own["safe"]
    assert props.location is not None
    assert (str(props.location.id), props.location.visibility, props.location.commune_code) == (
        own["safe"],
        "confidential",
        "69123",
    )
    assert sorted(area["id"] for area in mine.json()["properties"]["areas"]) == sorted(own["areas"].split())
    admin = (await client.get(url, headers=auth("admin"))).json()["properties"]
    assert admin["location_id"] == own["safe"]
    for outsider in (
        auth("specialist"),
        auth("department"),
        auth("partner", org=uuid.UUID(orgs["other"]["organisation"])),
    ):
        props = (await client.get(url, headers=outsider)).json()["properties"]
        assert "location_id" not in props
        assert "location" not in props


OWN, OTHER, MISSING = "own", "other", "nonexistent"
EXPECTED = {
    "partner": {OWN: 200, OTHER: 404, MISSING: 404},
    "admin": {OWN: 200, OTHER: 200, MISSING: 404},
    "specialist": dict.fromkeys((OWN, OTHER, MISSING), 403),
    "department": dict.fromkeys((OWN, OTHER, MISSING), 403),
}
PATHS = {
    "locations": "/v1/organisations/{organisation}/locations",
    "service-areas": "/v1/organisations/{organisation}/service-areas",
    "location-history": "/v1/locations/{safe}/history",
}


def test_this_file_walks_every_route_it_declares() -> None:
    declared = {
        ("GET", path.replace("{organisation}", "{organisation_id}").replace("{safe}", "{location_id}"))
        for path in PATHS.values()
    }
    assert declared == OWN_LISTING_ROUTES


@pytest.mark.parametrize("route", sorted(PATHS))
@pytest.mark.parametrize("role", sorted(EXPECTED))
@pytest.mark.parametrize("target", [OWN, OTHER, MISSING])
async def test_cell(
    client: httpx.AsyncClient,
    reader: AsyncConnection,
    orgs: dict[str, dict[str, str]],
    auth: Tokens,
    route: str,
    role: str,
    target: str,
) -> None:
    ids = orgs[target] if target != MISSING else {"organisation": str(uuid.uuid4()), "safe": str(uuid.uuid4())}
    headers = auth(Role(role), org=uuid.UUID(orgs["own"]["organisation"]) if role == "partner" else None)
    before = await fingerprint(reader)
    response = await client.get(PATHS[route].format(**ids), headers=headers)
    assert response.status_code == EXPECTED[role][target], response.text
    if response.status_code >= 400:
        assert response.headers["content-type"] == "application/problem+json"
    assert await fingerprint(reader) == before


async def test_a_cursor_belongs_to_its_organisations_list(
    client: httpx.AsyncClient, orgs: dict[str, dict[str, str]], auth: Tokens
) -> None:
    admin = auth("admin")
    first = await client.get(f"/v1/organisations/{orgs['own']['organisation']}/locations?limit=1", headers=admin)
    href = first.json()["links"][0]["href"]
    cursor = httpx.URL(href).params["cursor"]
    other = await client.get(
        f"/v1/organisations/{orgs['other']['organisation']}/locations", params={"cursor": cursor}, headers=admin
    )
    assert other.status_code == 422
