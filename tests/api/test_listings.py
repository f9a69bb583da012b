"""Partners keep their own listings: writes, validation, ETags, history, and every denial.

Denials are checked to leave the database as it was: `fingerprint` hashes every listing table.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from psycopg import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from directory.models import Location, Organisation, Service, ServiceArea, ServiceStatus
from tests import factories

LYON = {"type": "Point", "coordinates": [4.8357, 45.7640]}  # Lyon, 69123


async def fingerprint(reader: AsyncConnection) -> str:
    """A hash of every row a listing write could touch."""
    row = await (
        await reader.execute(
            """SELECT md5(string_agg(t, '|' ORDER BY t)) FROM (
               SELECT 'o' || o::text AS t FROM organisation o
               UNION ALL SELECT 's' || s::text FROM service s
               UNION ALL SELECT 'l' || l::text FROM location l
               UNION ALL SELECT 'a' || a::text FROM service_area a
               UNION ALL SELECT 'r' || r::text FROM listing_revision r
               UNION ALL SELECT 'c' || c::text FROM api_client c
               UNION ALL SELECT 'b' || b::text FROM identity_binding b) rows"""
        )
    ).fetchone()
    return str(row[0])


@dataclass
class Partner:
    organisation: Organisation
    location: Location
    service: Service
    area: ServiceArea
    headers: dict[str, str]


@pytest.fixture
async def partners(session: AsyncSession, auth) -> tuple[Partner, Partner]:  # type: ignore[no-untyped-def]
    made = []
    for name in ("A", "B"):
        org = await factories.organisation(session, name=f"Asso {name}")
        place = await factories.location(session, org, lon=4.8357, lat=45.7640, commune="69123", address="1 rue X")
        svc = await factories.service(session, org, place, name=f"Service {name}")
        area = await factories.area(session, svc, departements=["69"])
        made.append(Partner(org, place, svc, area, auth("partner", org=org.id)))
    return made[0], made[1]


async def _etag(client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> str:
    response = await client.get(url, headers=headers)
    assert response.status_code == 200, response.text
    return response.headers["etag"]


# --- the happy paths ---------------------------------------------------------------------------


async def test_a_partner_creates_a_location_a_service_and_an_area(
    client: httpx.AsyncClient, partners: tuple[Partner, Partner], reader: AsyncConnection
) -> None:
    a, _ = partners
    location = await client.post(
        "/v1/locations",
        headers=a.headers,
        json={"name": "Accueil", "address": "12 rue de la République", "commune_code": "69123", "point": LYON},
    )
    assert location.status_code == 201, location.text
    assert location.headers["etag"] == '"1"'
    assert location.headers["location"].endswith(f"/v1/locations/{location.json()['id']}")
    assert location.json()["organisation_id"] == str(a.organisation.id)

    service = await client.post(
        "/v1/services",
        headers=a.headers,
        json={
            "name": "Permanence",
            "specialisms": ["legal-support"],
            "location_id": location.json()["id"],
            "audiences": ["minor"],
            "age_min": 12,
            "age_max": 17,
            "languages": ["fr", "ar"],
            "phone": "04 72 00 00 00",
            "email": "contact@asso.example",
            "website": "https://asso.example/",
            "schedule": {"mode": "weekly", "weekly": {"mon": [["09:00", "12:00"], ["14:00", "17:00"]]}},
        },
    )
    assert service.status_code == 201, service.text
    props = service.json()["properties"]
    assert (props["name"], props["organisation"]["id"], props["contact"]["phone"]) == (
        "Permanence",
        str(a.organisation.id),
        "0472000000",
    )
    assert props["stale"] is True  # never verified yet

    area = await client.post(
        "/v1/service-areas", headers=a.headers, json={"service_id": service.json()["id"], "radius_km": 15}
    )
    assert area.status_code == 201, area.text
    covered = await client.get(
        "/v1/services/search",
        headers=a.headers,
        params={"lat": 45.70, "lon": 4.98, "radius_km": 1, "specialism": "legal-support"},
    )  # ≈ 12 km away
    hit = [f for f in covered.json()["features"] if f["id"] == service.json()["id"]]
    assert hit
    assert hit[0]["properties"]["covers"] is True

    actions = await (
        await reader.execute(
            "SELECT entity, action FROM listing_revision WHERE organisation_id = %s ORDER BY id", (a.organisation.id,)
        )
    ).fetchall()
    assert [tuple(r) for r in actions][-3:] == [
        ("location", "create"),
        ("service", "create"),
        ("service_area", "create"),
    ]


async def test_patch_with_the_etag_then_history(client: httpx.AsyncClient, partners: tuple[Partner, Partner]) -> None:
    a, _ = partners
    url = f"/v1/services/{a.service.id}"
    tag = await _etag(client, url, a.headers)
    response = await client.patch(
        url,
        headers={**a.headers, "If-Match": tag, "Content-Type": "application/merge-patch+json"},
        json={"name": "Nouveau nom", "description": None, "languages": ["fr", "en"]},
    )
    assert response.status_code == 200, response.text
    assert response.headers["etag"] == f'"{int(tag.strip(chr(34))) + 1}"'
    assert response.json()["properties"]["name"] == "Nouveau nom"
    assert response.json()["properties"]["languages"] == ["fr", "en"]

    history = (await client.get(f"{url}/history", headers=a.headers)).json()["items"]
    last = history[-1]
    assert last["action"] == "update"
    assert last["changes"] == {
        "name": {"old": "Service A", "new": "Nouveau nom"},
        "languages": {"old": [], "new": ["fr", "en"]},
    }
    assert last["actor"]["role"] == "partner"
    assert last["actor"]["organisation_id"] == str(a.organisation.id)


async def test_capacity_closure_reopen_and_verify(client: httpx.AsyncClient, partners: tuple[Partner, Partner]) -> None:
    a, _ = partners
    url = f"/v1/services/{a.service.id}"
    tag = await _etag(client, url, a.headers)
    full = await client.put(
        f"{url}/capacity", headers={**a.headers, "If-Match": tag}, json={"state": "full", "places": 0}
    )
    assert full.status_code == 200, full.text
    assert full.json()["properties"]["capacity"]["state"] == "full"

    until = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    closed = await client.post(f"{url}/closures", headers=a.headers, json={"until": until, "message": "Inventaire"})
    assert closed.status_code == 200, closed.text
    props = closed.json()["properties"]
    assert (props["status"], props["open_now"], props["closure"]["message"]) == (
        "temporarily_closed",
        False,
        "Inventaire",
    )
    reopened = await client.post(f"{url}/reopen", headers=a.headers)
    assert reopened.json()["properties"]["status"] == "active"
    verified = await client.post(f"{url}/verify", headers=a.headers)
    assert verified.status_code == 200
    last_verified = datetime.fromisoformat(verified.json()["properties"]["last_verified_at"])
    assert datetime.now(UTC) - last_verified < timedelta(seconds=30)
    actions = [item["action"] for item in (await client.get(f"{url}/history", headers=a.headers)).json()["items"]]
    assert actions[-4:] == ["capacity", "closure", "reopen", "verify"]


async def test_a_suspended_service_is_neither_closed_nor_reopened_by_its_partner(
    client: httpx.AsyncClient, partners: tuple[Partner, Partner], session: AsyncSession, reader: AsyncConnection
) -> None:
    """A suspension is Maillage's, not the partner's: reopening must not lift it, and a closure must not
    replace it (the status is one field)."""
    a, _ = partners
    a.service.status = ServiceStatus.suspended
    session.add(a.service)
    await session.commit()
    url = f"/v1/services/{a.service.id}"
    before = await fingerprint(reader)
    for path, body in (("closures", {"message": "Inventaire"}), ("reopen", None)):
        refused = await client.post(f"{url}/{path}", headers=a.headers, json=body)
        assert refused.status_code == 409, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert "suspended" in refused.json()["detail"]
    assert await fingerprint(reader) == before


async def test_archiving_removes_from_search_and_keeps_history(
    client: httpx.AsyncClient,
    partners: tuple[Partner, Partner],
    auth,  # type: ignore[no-untyped-def]
) -> None:
    a, _ = partners
    url = f"/v1/services/{a.service.id}"
    tag = await _etag(client, url, a.headers)
    assert (await client.delete(url, headers={**a.headers, "If-Match": tag})).status_code == 204
    assert (await client.get(url, headers=auth("specialist"))).status_code == 404
    mine = await client.get(url, headers=a.headers)
    assert mine.status_code == 200
    assert mine.json()["properties"]["archived_at"] is not None
    search = await client.get("/v1/services/search", headers=a.headers, params={"commune": "69123", "limit": 100})
    assert str(a.service.id) not in [f["id"] for f in search.json()["features"]]
    assert (await client.get(f"{url}/history", headers=a.headers)).json()["items"][-1]["action"] == "archive"


async def test_areas_and_locations_round_trip(client: httpx.AsyncClient, partners: tuple[Partner, Partner]) -> None:
    a, _ = partners
    area_url = f"/v1/service-areas/{a.area.id}"
    tag = await _etag(client, area_url, a.headers)
    changed = await client.patch(
        area_url, headers={**a.headers, "If-Match": tag}, json={"departements": None, "collectivites": ["69M"]}
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["departements"], changed.json()["collectivites"]) == ([], ["69M"])
    empty = await client.patch(
        area_url, headers={**a.headers, "If-Match": changed.headers["etag"]}, json={"collectivites": None}
    )
    assert empty.status_code == 422
    location_url = f"/v1/locations/{a.location.id}"
    tag = await _etag(client, location_url, a.headers)
    moved = await client.patch(
        location_url,
        headers={**a.headers, "If-Match": tag},
        json={"point": {"type": "Point", "coordinates": [4.84, 45.76]}},
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["point"]["coordinates"] == [4.84, 45.76]
    in_use = await client.delete(location_url, headers={**a.headers, "If-Match": moved.headers["etag"]})
    assert in_use.status_code == 409


async def test_confidential_locations_need_a_front_door_and_hide_from_admins(
    client: httpx.AsyncClient,
    partners: tuple[Partner, Partner],
    auth,  # type: ignore[no-untyped-def]
) -> None:
    a, _ = partners
    body = {"commune_code": "69123", "point": LYON, "visibility": "confidential", "address": "secret"}
    refused = await client.post("/v1/locations", headers=a.headers, json=body)
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["pointer"] == "/front_door_phone"
    created = await client.post("/v1/locations", headers=a.headers, json={**body, "front_door_phone": "+33199000001"})
    assert created.status_code == 201
    assert created.json()["address"] == "secret"
    seen_by_admin = (await client.get(f"/v1/locations/{created.json()['id']}", headers=auth("admin"))).json()
    assert seen_by_admin["address"] is None
    assert seen_by_admin["location_precision"] == "commune"


# --- validation ----------------------------------------------------------------------------------


async def test_a_website_of_500_characters_is_kept_as_sent(
    client: httpx.AsyncClient, partners: tuple[Partner, Partner]
) -> None:
    a, _ = partners
    website = "https://a.example/" + "p" * 482
    assert len(website) == 500
    created = await client.post(
        "/v1/services", headers=a.headers, json={"name": "x", "specialisms": ["legal-support"], "website": website}
    )
    assert created.status_code == 201, created.text
    read = await client.get(f"/v1/services/{created.json()['id']}", headers=a.headers)
    assert read.json()["properties"]["contact"]["website"] == website


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({"name": "x", "specialisms": ["legal-support"], "organisation_id": None, "status": "active"}, "/status"),
        ({"name": "x", "specialisms": ["legal-support"], "demo": True}, "/demo"),
        ({"name": "x", "specialisms": ["legal-support"], "id": str(uuid.uuid4())}, "/id"),
        (
            {"name": "x", "specialisms": ["legal-support"], "last_verified_at": "2026-01-01T00:00:00Z"},
            "/last_verified_at",
        ),
        ({"name": "x", "specialisms": ["legal-support"], "verification": "verified"}, "/verification"),
        ({"name": "x", "specialisms": ["legal-support"], "created_at": "2026-01-01T00:00:00Z"}, "/created_at"),
        ({"name": "x", "specialisms": ["sorcery"]}, "/specialisms/0"),
        ({"name": "x", "specialisms": []}, "/specialisms"),
        ({"name": "x", "specialisms": ["legal-support", "legal-support"]}, "/specialisms"),
        ({"name": "", "specialisms": ["legal-support"]}, "/name"),
        ({"name": "x" * 201, "specialisms": ["legal-support"]}, "/name"),
        ({"name": "a\x00b", "specialisms": ["legal-support"]}, "/name"),
        ({"name": "a\nb", "specialisms": ["legal-support"]}, "/name"),
        ({"name": "x", "specialisms": ["legal-support"], "phone": "12345"}, "/phone"),
        ({"name": "x", "specialisms": ["legal-support"], "email": "not-an-email"}, "/email"),
        ({"name": "x", "specialisms": ["legal-support"], "website": "http://insecure.example"}, "/website"),
        # Longer than the column: once a 500 server error.
        ({"name": "x", "specialisms": ["legal-support"], "website": "https://a.example/" + "p" * 483}, "/website"),
        # 497 characters as sent, 731 once the path is percent-encoded as stored.
        (
            {"name": "x", "specialisms": ["legal-support"], "website": "https://a.example/" + "é" * 117 + "p" * 362},
            "/website",
        ),
        ({"name": "x", "specialisms": ["legal-support"], "age_min": 16, "age_max": 12}, ""),
        ({"name": "x", "specialisms": ["legal-support"], "age_min": "12"}, "/age_min"),
        ({"name": "x", "specialisms": ["legal-support"], "languages": ["French"]}, "/languages/0"),
        ({"name": "x", "specialisms": ["legal-support"], "audiences": ["adults"]}, "/audiences/0"),
        (
            {
                "name": "x",
                "specialisms": ["legal-support"],
                "schedule": {"mode": "weekly", "weekly": {"mon": [["09:00", "12:00"], ["11:00", "13:00"]]}},
            },
            "/schedule/weekly/mon",
        ),
        (
            {
                "name": "x",
                "specialisms": ["legal-support"],
                "schedule": {"mode": "weekly", "weekly": {"mon": [["25:00", "26:00"]]}},
            },
            "/schedule/weekly/mon/0/0",
        ),
        ({"name": "x", "specialisms": ["legal-support"], "schedule": {"mode": "weekly"}}, "/schedule"),
        (
            {"name": "x", "specialisms": ["legal-support"], "schedule": {"mode": "always", "weekly": {"mon": []}}},
            "/schedule",
        ),
        (
            {"name": "x", "specialisms": ["legal-support"], "schedule": {"mode": "weekly", "weekly": {"lun": []}}},
            "/schedule/weekly/lun/[key]",
        ),
        ({"name": "x", "specialisms": ["legal-support"], "location_id": str(uuid.uuid4())}, "/location_id"),
    ],
)
async def test_service_bodies_are_checked_field_by_field(
    client: httpx.AsyncClient,
    partners: tuple[Partner, Partner],
    reader: AsyncConnection,
    body: dict[str, Any],
    pointer: str,
) -> None:
    a, _ = partners
    before = await fingerprint(reader)
    response = await client.post("/v1/services", headers=a.headers, json=body)
    assert response.status_code == 422, response.text
    pointers = [error.get("pointer") for error in response.json()["errors"]]
    assert any(p is not None and p.startswith(pointer) for p in pointers), pointers
    assert await fingerprint(reader) == before


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({"commune_code": "69123", "point": {"type": "Point", "coordinates": [-3.0, 46.5]}}, "/point"),  # at sea
        ({"commune_code": "13055", "point": LYON}, "/point"),  # Marseille's code, Lyon's point
        ({"commune_code": "99999", "point": LYON}, "/commune_code"),
        ({"commune_code": "69123", "point": {"type": "Point", "coordinates": [45.764, 4.8357]}}, "/point"),  # swapped
        ({"commune_code": "69123", "point": {"type": "Point", "coordinates": [4.8, 45.7, 10]}}, "/point/coordinates"),
        ({"commune_code": "69123", "point": {"type": "Point", "coordinates": [181, 45]}}, "/point/coordinates"),
        ({"commune_code": "69123", "point": {"type": "Polygon", "coordinates": [4.8, 45.7]}}, "/point/type"),
        ({"commune_code": "69123", "point": {"type": "Point", "coordinates": ["4.8", 45.7]}}, "/point/coordinates/0"),
        ({"commune_code": "69123", "point": LYON, "visibility": "secret"}, "/visibility"),
        ({"commune_code": "69123", "point": LYON, "public_point": LYON}, "/public_point"),
        ({"commune_code": "69123"}, "/point"),
    ],
)
async def test_location_bodies_are_checked(
    client: httpx.AsyncClient,
    partners: tuple[Partner, Partner],
    reader: AsyncConnection,
    body: dict[str, Any],
    pointer: str,
) -> None:
    a, _ = partners
    before = await fingerprint(reader)
    response = await client.post("/v1/locations", headers=a.headers, json=body)
    assert response.status_code == 422, response.text
    assert any((e.get("pointer") or "").startswith(pointer) for e in response.json()["errors"]), response.json()
    assert await fingerprint(reader) == before


async def test_non_finite_numbers_are_refused(client: httpx.AsyncClient, partners: tuple[Partner, Partner]) -> None:
    a, _ = partners
    content = '{"commune_code": "69123", "point": {"type": "Point", "coordinates": [NaN, 45.7]}}'
    response = await client.post(
        "/v1/locations", headers={**a.headers, "content-type": "application/json"}, content=content
    )
    assert response.status_code == 422


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({"departements": ["99"]}, "/departements/0"),
        ({"communes": ["99999"]}, "/communes"),
        ({"collectivites": ["99D"]}, "/collectivites"),
        ({}, "/national"),
        ({"radius_km": 500}, "/radius_km"),
        ({"radius_km": 0}, "/radius_km"),
        ({"national": True, "area": "POLYGON((0 0, 1 1, 1 0, 0 0))"}, "/area"),
    ],
)
async def test_area_bodies_are_checked(
    client: httpx.AsyncClient,
    partners: tuple[Partner, Partner],
    reader: AsyncConnection,
    body: dict[str, Any],
    pointer: str,
) -> None:
    a, _ = partners
    before = await fingerprint(reader)
    response = await client.post("/v1/service-areas", headers=a.headers, json={"service_id": str(a.service.id), **body})
    assert response.status_code == 422, response.text
    assert any((e.get("pointer") or "").startswith(pointer) for e in response.json()["errors"]), response.json()
    assert await fingerprint(reader) == before


# --- If-Match ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [("PATCH", "", {"name": "x"}), ("DELETE", "", None), ("PUT", "/capacity", {"state": "full"})],
)
async def test_writes_without_if_match_are_428(
    client: httpx.AsyncClient,
    partners: tuple[Partner, Partner],
    reader: AsyncConnection,
    method: str,
    suffix: str,
    body: dict[str, Any] | None,
) -> None:
    a, _ = partners
    before = await fingerprint(reader)
    response = await client.request(method, f"/v1/services/{a.service.id}{suffix}", headers=a.headers, json=body)
    assert response.status_code == 428
    assert response.json()["code"] == "precondition_required"
    assert await fingerprint(reader) == before


@pytest.mark.parametrize("tag", ['"999"', 'W/"1"', '"abc"'])
async def test_stale_etags_are_412(
    client: httpx.AsyncClient, partners: tuple[Partner, Partner], reader: AsyncConnection, tag: str
) -> None:
    a, _ = partners
    before = await fingerprint(reader)
    response = await client.patch(
        f"/v1/services/{a.service.id}", headers={**a.headers, "If-Match": tag}, json={"name": "x"}
    )
    assert response.status_code == 412
    assert response.json()["code"] == "stale_version"
    assert await fingerprint(reader) == before


@pytest.mark.parametrize("tag", ["garbage", '"1", "2"x', '"1",', "1", '"a b"'])
async def test_malformed_if_match_is_422_naming_the_header(
    client: httpx.AsyncClient, partners: tuple[Partner, Partner], reader: AsyncConnection, tag: str
) -> None:
    """Not a list of entity tags (RFC 9110 §8.8.3): bad input, said as such, and nothing changes."""
    a, _ = partners
    before = await fingerprint(reader)
    response = await client.patch(
        f"/v1/services/{a.service.id}", headers={**a.headers, "If-Match": tag}, json={"name": "x"}
    )
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"in": "header", "name": "If-Match", "message": 'a list of ETags such as "3", or *'}
    ]
    assert await fingerprint(reader) == before


async def test_malformed_if_match_on_a_record_out_of_scope_is_still_404(
    client: httpx.AsyncClient, partners: tuple[Partner, Partner]
) -> None:
    a, b = partners
    response = await client.patch(
        f"/v1/services/{b.service.id}", headers={**a.headers, "If-Match": "garbage"}, json={"name": "x"}
    )
    assert response.status_code == 404


async def test_if_match_star_and_lists(client: httpx.AsyncClient, partners: tuple[Partner, Partner]) -> None:
    a, _ = partners
    url = f"/v1/services/{a.service.id}"
    assert (await client.patch(url, headers={**a.headers, "If-Match": "*"}, json={"name": "one"})).status_code == 200
    response = await client.patch(url, headers={**a.headers, "If-Match": '"7", "2"'}, json={"name": "two"})
    assert response.status_code == 200
    assert response.headers["etag"] == '"3"'


async def test_a_second_write_with_the_same_etag_loses(
    client: httpx.AsyncClient, partners: tuple[Partner, Partner]
) -> None:
    a, _ = partners
    url = f"/v1/services/{a.service.id}"
    tag = await _etag(client, url, a.headers)
    first = await client.patch(url, headers={**a.headers, "If-Match": tag}, json={"name": "first"})
    second = await client.patch(url, headers={**a.headers, "If-Match": tag}, json={"name": "second"})
    assert (first.status_code, second.status_code) == (200, 412)
    assert (await client.get(url, headers=a.headers)).json()["properties"]["name"] == "first"


# --- If-Match, optional: closures, reopening, verification ---------------------------------------
# These took no If-Match at first, and the clients written then send none: without it they are still
# served (no 428); with it, a stale view is refused (412) instead of ending or replacing a colleague's
# newer closure unseen. The same 412 and 422 as capacity's, and nothing changes on a refusal.

STATUS_WRITES = [("closures", {"message": "Inventaire"}), ("reopen", None), ("verify", None)]


async def _state(reader: AsyncConnection, service_id: uuid.UUID) -> tuple[Any, ...]:
    """The service's row as the three writes touch it, and its history (every revision, in order)."""
    row = await (
        await reader.execute(
            """SELECT version, status, closed_from, closed_until, closure_message, last_verified_at
                 FROM service WHERE id = %s""",
            (service_id,),
        )
    ).fetchone()
    revisions = await (
        await reader.execute(
            "SELECT id, action, changes FROM listing_revision WHERE entity_id = %s ORDER BY id", (service_id,)
        )
    ).fetchall()
    return tuple(row), [tuple(r) for r in revisions]


async def _closed_by_a_colleague(client: httpx.AsyncClient, partner: Partner) -> tuple[str, str]:
    """(the ETag a partner read, the service's ETag once a colleague closed it meanwhile)."""
    url = f"/v1/services/{partner.service.id}"
    read = await _etag(client, url, partner.headers)
    colleague = await client.post(
        f"{url}/closures", headers={**partner.headers, "If-Match": read}, json={"message": "Fermé par Camille"}
    )
    assert colleague.status_code == 200, colleague.text
    assert colleague.headers["etag"] == f'"{int(read.strip(chr(34))) + 1}"'
    return read, colleague.headers["etag"]


@pytest.mark.parametrize(("path", "body"), STATUS_WRITES)
async def test_a_stale_if_match_on_a_status_write_is_capacity_s_412_and_changes_nothing(
    client: httpx.AsyncClient,
    partners: tuple[Partner, Partner],
    reader: AsyncConnection,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    a, _ = partners
    url = f"/v1/services/{a.service.id}"
    stale, current = await _closed_by_a_colleague(client, a)
    before, fingerprint_before = await _state(reader, a.service.id), await fingerprint(reader)

    refused = await client.post(f"{url}/{path}", headers={**a.headers, "If-Match": stale}, json=body)

    assert refused.status_code == 412, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "stale_version"
    assert f"now at version {current.strip(chr(34))}" in refused.json()["detail"]
    capacity = await client.put(f"{url}/capacity", headers={**a.headers, "If-Match": stale}, json={"state": "full"})
    assert (refused.status_code, refused.json()) == (capacity.status_code, capacity.json())
    assert await _state(reader, a.service.id) == before  # the colleague's closure stands, no revision added
    assert await fingerprint(reader) == fingerprint_before
    assert before[0][1:3] != ("active", None)  # (the colleague's closure is what stood)


@pytest.mark.parametrize("tag", ['"999"', 'W/"1"', '"abc"'])
@pytest.mark.parametrize(("path", "body"), STATUS_WRITES)
async def test_if_match_that_can_match_nothing_is_412_on_status_writes(
    client: httpx.AsyncClient,
    partners: tuple[Partner, Partner],
    reader: AsyncConnection,
    path: str,
    body: dict[str, Any] | None,
    tag: str,
) -> None:
    a, _ = partners
    before = await fingerprint(reader)
    response = await client.post(
        f"/v1/services/{a.service.id}/{path}", headers={**a.headers, "If-Match": tag}, json=body
    )
    assert response.status_code == 412, response.text
    assert response.json()["code"] == "stale_version"
    assert await fingerprint(reader) == before


@pytest.mark.parametrize(("path", "body"), STATUS_WRITES)
async def test_a_matching_if_match_on_a_status_write_succeeds(
    client: httpx.AsyncClient,
    partners: tuple[Partner, Partner],
    reader: AsyncConnection,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    a, _ = partners
    url = f"/v1/services/{a.service.id}"
    _, current = await _closed_by_a_colleague(client, a)  # so that reopening has a closure to end
    (version, *_), revisions = await _state(reader, a.service.id)
    assert current == f'"{version}"'

    done = await client.post(f"{url}/{path}", headers={**a.headers, "If-Match": current}, json=body)

    assert done.status_code == 200, done.text
    assert done.headers["etag"] == f'"{version + 1}"'
    (after_version, status, *_), after_revisions = await _state(reader, a.service.id)
    assert after_version == version + 1
    assert after_revisions[:-1] == revisions
    assert after_revisions[-1][1] == {"closures": "closure", "reopen": "reopen", "verify": "verify"}[path]
    assert status == ("active" if path == "reopen" else "temporarily_closed")
    # A list holding the current ETag, and `*`, match too.
    again = await client.post(
        f"{url}/{path}", headers={**a.headers, "If-Match": f'"999", {done.headers["etag"]}'}, json=body
    )
    assert again.status_code == 200, again.text
    assert (await client.post(f"{url}/{path}", headers={**a.headers, "If-Match": "*"}, json=body)).status_code == 200


@pytest.mark.parametrize(("path", "body"), STATUS_WRITES)
async def test_a_status_write_without_if_match_is_still_served(
    client: httpx.AsyncClient,
    partners: tuple[Partner, Partner],
    reader: AsyncConnection,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    """Backwards-compatible on purpose: no 428 for the clients written before these read If-Match."""
    a, _ = partners
    url = f"/v1/services/{a.service.id}"
    await _closed_by_a_colleague(client, a)
    (version, *_), revisions = await _state(reader, a.service.id)
    done = await client.post(f"{url}/{path}", headers=a.headers, json=body)
    assert done.status_code == 200, done.text
    assert done.headers["etag"] == f'"{version + 1}"'
    (after_version, *_), after_revisions = await _state(reader, a.service.id)
    assert (after_version, len(after_revisions)) == (version + 1, len(revisions) + 1)


@pytest.mark.parametrize("tag", ["garbage", '"1", "2"x', '"1",', "1", '"a b"'])
@pytest.mark.parametrize(("path", "body"), STATUS_WRITES)
async def test_a_malformed_if_match_on_a_status_write_is_capacity_s_422(
    client: httpx.AsyncClient,
    partners: tuple[Partner, Partner],
    reader: AsyncConnection,
    path: str,
    body: dict[str, Any] | None,
    tag: str,
) -> None:
    a, _ = partners
    url = f"/v1/services/{a.service.id}"
    before, fingerprint_before = await _state(reader, a.service.id), await fingerprint(reader)
    refused = await client.post(f"{url}/{path}", headers={**a.headers, "If-Match": tag}, json=body)
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"] == [
        {"in": "header", "name": "If-Match", "message": 'a list of ETags such as "3", or *'}
    ]
    capacity = await client.put(f"{url}/capacity", headers={**a.headers, "If-Match": tag}, json={"state": "full"})
    assert refused.json() == capacity.json()
    assert await _state(reader, a.service.id) == before
    assert await fingerprint(reader) == fingerprint_before


@pytest.mark.parametrize(("path", "body"), STATUS_WRITES)
async def test_another_partner_s_service_is_404_whatever_its_if_match(
    client: httpx.AsyncClient,
    partners: tuple[Partner, Partner],
    reader: AsyncConnection,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    """Scope before the precondition: B's current ETag, a stale one or garbage from A are all the 404 of
    a service that does not exist, and nothing changes."""
    a, b = partners
    current = await _etag(client, f"/v1/services/{b.service.id}", b.headers)
    before = await fingerprint(reader)
    for headers in ({}, {"If-Match": current}, {"If-Match": '"999"'}, {"If-Match": "garbage"}, {"If-Match": "*"}):
        hidden = await client.post(f"/v1/services/{b.service.id}/{path}", headers={**a.headers, **headers}, json=body)
        missing = await client.post(f"/v1/services/{uuid.uuid4()}/{path}", headers={**a.headers, **headers}, json=body)
        assert (hidden.status_code, missing.status_code) == (404, 404), (headers, hidden.text)
        assert hidden.json() == missing.json()
    assert await fingerprint(reader) == before


@pytest.mark.parametrize(("path", "body"), STATUS_WRITES)
async def test_roles_that_keep_no_listing_are_403_whatever_their_if_match(
    client: httpx.AsyncClient,
    partners: tuple[Partner, Partner],
    reader: AsyncConnection,
    auth,  # type: ignore[no-untyped-def]
    path: str,
    body: dict[str, Any] | None,
) -> None:
    a, _ = partners
    current = await _etag(client, f"/v1/services/{a.service.id}", a.headers)
    before = await fingerprint(reader)
    for role in ("specialist", "department"):
        for headers in ({}, {"If-Match": current}, {"If-Match": '"999"'}, {"If-Match": "garbage"}):
            refused = await client.post(
                f"/v1/services/{a.service.id}/{path}", headers={**auth(role), **headers}, json=body
            )
            assert refused.status_code == 403, (role, headers, refused.text)
    assert await fingerprint(reader) == before


async def test_on_a_suspended_service_a_stale_if_match_is_412_and_a_current_one_409(
    client: httpx.AsyncClient, partners: tuple[Partner, Partner], session: AsyncSession, reader: AsyncConnection
) -> None:
    """The precondition before what the service's state forbids (DESIGN §3), and nothing changes."""
    a, _ = partners
    url = f"/v1/services/{a.service.id}"
    stale = await _etag(client, url, a.headers)
    a.service.status = ServiceStatus.suspended
    a.service.version += 1  # as Maillage's own suspension would
    session.add(a.service)
    await session.commit()
    current = await _etag(client, url, a.headers)
    assert current != stale
    before = await fingerprint(reader)
    for path, body in STATUS_WRITES[:2]:
        assert (
            await client.post(f"{url}/{path}", headers={**a.headers, "If-Match": stale}, json=body)
        ).status_code == 412
        conflict = await client.post(f"{url}/{path}", headers={**a.headers, "If-Match": current}, json=body)
        assert conflict.status_code == 409, conflict.text
        assert "suspended" in conflict.json()["detail"]
    assert await fingerprint(reader) == before


async def test_a_stale_closure_is_412_before_its_body_is_judged(
    client: httpx.AsyncClient, partners: tuple[Partner, Partner], reader: AsyncConnection
) -> None:
    a, _ = partners
    url = f"/v1/services/{a.service.id}"
    stale, current = await _closed_by_a_colleague(client, a)
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()  # ends before it starts: a 422…
    before = await fingerprint(reader)
    refused = await client.post(f"{url}/closures", headers={**a.headers, "If-Match": stale}, json={"until": past})
    assert refused.status_code == 412  # …but only for a caller holding the current version
    invalid = await client.post(f"{url}/closures", headers={**a.headers, "If-Match": current}, json={"until": past})
    assert invalid.status_code == 422
    assert invalid.json()["errors"][0]["pointer"] == "/until"
    assert await fingerprint(reader) == before
