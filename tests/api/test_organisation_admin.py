"""Admins register, change, verify and deactivate organisations; freshness of listings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from psycopg import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from tests import factories
from tests.api.test_listings import fingerprint


async def test_create_change_verify_and_deactivate(client: httpx.AsyncClient, auth, session: AsyncSession) -> None:  # type: ignore[no-untyped-def]
    admin = auth("admin")
    created = await client.post(
        "/v1/organisations",
        headers=admin,
        json={
            "name": "Nouvelle asso",
            "kind": "association",
            "siren": "123456789",
            "collectives": ["ensemble-contre-la-traite"],
            "seat_commune_code": "93048",
            "website": "https://asso.example",
        },
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["verification"], body["seat"]["name"], created.headers["etag"]) == ("unverified", "Montreuil", '"1"')
    url = f"/v1/organisations/{body['id']}"
    changed = await client.patch(url, headers={**admin, "If-Match": '"1"'}, json={"description": "Accompagnement"})
    assert changed.status_code == 200
    stale = await client.patch(url, headers={**admin, "If-Match": '"1"'}, json={"description": "Autre"})
    assert stale.status_code == 412
    verified = await client.post(f"{url}/verification", headers=admin, json={"state": "verified"})
    assert verified.json()["verification"] == "verified"
    assert verified.json()["verified_at"] is not None
    gone = await client.post(f"{url}/deactivate", headers=admin)
    assert gone.json()["deactivated_at"] is not None
    assert (await client.get(url, headers=auth("specialist"))).status_code == 404


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({"name": "x", "kind": "crip"}, "/kind"),
        ({"name": "x", "kind": "sect"}, "/kind"),
        ({"name": "x", "kind": "association", "siren": "12345"}, "/siren"),
        ({"name": "x", "kind": "association", "seat_commune_code": "99999"}, "/seat_commune_code"),
        ({"name": "x", "kind": "association", "collectivite_code": "99D"}, "/collectivite_code"),
        ({"name": "x", "kind": "association", "verification": "verified"}, "/verification"),
        ({"name": "x", "kind": "association", "demo": True}, "/demo"),
    ],
)
async def test_bad_organisation_bodies(
    client: httpx.AsyncClient,
    auth,
    reader: AsyncConnection,
    body: dict,  # type: ignore[no-untyped-def, type-arg]
    pointer: str,
) -> None:
    before = await fingerprint(reader)
    response = await client.post("/v1/organisations", headers=auth("admin"), json=body)
    assert response.status_code == 422, response.text
    assert any((e.get("pointer") or "").startswith(pointer) for e in response.json()["errors"])
    assert await fingerprint(reader) == before


async def test_freshness_lists_what_needs_reverifying(client: httpx.AsyncClient, auth, session: AsyncSession) -> None:  # type: ignore[no-untyped-def]
    org = await factories.organisation(session)
    now = datetime.now(UTC)
    never = await factories.service(session, org, name="Jamais vérifié", last_verified_at=None)
    stale = await factories.service(session, org, name="Périmé", last_verified_at=now - timedelta(days=200))
    soon = await factories.service(session, org, name="Bientôt", last_verified_at=now - timedelta(days=170))
    await factories.service(session, org, name="Frais", last_verified_at=now - timedelta(days=10))
    response = await client.get(f"/v1/organisations/{org.id}/freshness", headers=auth("partner", org=org.id))
    assert response.status_code == 200
    items = response.json()["items"]
    assert [i["service_id"] for i in items] == [str(never.id), str(stale.id), str(soon.id)]
    assert [i["stale"] for i in items] == [True, True, False]
    only_stale = await client.get(
        f"/v1/organisations/{org.id}/freshness", params={"within_days": 0}, headers=auth("admin")
    )
    assert [i["service_id"] for i in only_stale.json()["items"]] == [str(never.id), str(stale.id)]


async def test_stale_listings_rank_after_fresh_ones_at_equal_distance(
    client: httpx.AsyncClient,
    auth,  # type: ignore[no-untyped-def]
    session: AsyncSession,
) -> None:
    org = await factories.organisation(session)
    place = await factories.location(session, org, lon=3.09, lat=45.03, commune="15187")
    old = await factories.service(
        session, org, place, name="Ancien", last_verified_at=datetime.now(UTC) - timedelta(days=365)
    )
    new = await factories.service(session, org, place, name="Récent", last_verified_at=datetime.now(UTC))
    body = (
        await client.get(
            "/v1/services/search",
            headers=auth("specialist"),
            params={"lat": 45.03, "lon": 3.09, "radius_km": 1, "include_covering": "false"},
        )
    ).json()
    assert [f["id"] for f in body["features"]] == [str(new.id), str(old.id)]
