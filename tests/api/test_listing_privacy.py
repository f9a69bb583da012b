"""A hidden point changes no answer; only the owner publishes (issue 9, B1 and B2).

- Order of checks in every listing write: scope (404), If-Match (412), then validation (422).
- An admin may write a confidential location but never see its place: its answers never depend on
  the hidden point, and it may not change the location's visibility or place (422 naming the field).
- The owner's visibility change is recorded in the history (action `visibility`) and the audit journal.
- Nothing an admin receives — write responses, reads, history — carries a safe house's point or address.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from psycopg import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from directory.models import Location, Organisation, Service, ServiceArea, Visibility
from tests import factories
from tests.api.test_listings import fingerprint
from tests.conftest import Tokens

LYON_POINT = (4.8357, 45.7640)
# Two safe houses registered in Lyon (69123): one inside Villeurbanne's 2 km, one far from it.
NEAR_VILLEURBANNE = (4.8700, 45.7700)
FAR_FROM_VILLEURBANNE = (4.7750, 45.7600)
VILLEURBANNE = "69266"


@dataclass
class Owner:
    organisation: Organisation
    safe_house: Location
    public: Location
    service: Service
    area: ServiceArea
    headers: dict[str, str]


async def _safe_house(session: AsyncSession, org: Organisation, point: tuple[float, float]) -> Location:
    return await factories.location(
        session,
        org,
        lon=point[0],
        lat=point[1],
        commune="69123",
        address="7 impasse Secrète",
        visibility=Visibility.confidential,
        front_door_phone="+33199000001",
    )


@pytest.fixture
async def owner(session: AsyncSession, auth: Tokens) -> Owner:
    org = await factories.organisation(session, name="Asso Refuge")
    house = await _safe_house(session, org, LYON_POINT)
    public = await factories.location(session, org, lon=4.8357, lat=45.7640, commune="69123", address="1 rue Publique")
    svc = await factories.service(session, org, house, name="Mise à l'abri")
    area = await factories.area(session, svc, departements=["69"])
    return Owner(org, house, public, svc, area, auth("partner", org=org.id))


async def _etag(client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> str:
    response = await client.get(url, headers=headers)
    assert response.status_code == 200, response.text
    return response.headers["etag"]


def _answer(response: httpx.Response) -> tuple[Any, ...]:
    """Everything of an error answer a caller can compare."""
    body = response.json()
    return response.status_code, body.get("code"), body.get("detail"), body.get("errors")


async def _version(reader: AsyncConnection, table: str, row_id: object) -> int:
    row = await (await reader.execute(f"SELECT version FROM {table} WHERE id = %s", (row_id,))).fetchone()
    assert row is not None
    return int(row[0])


# --- B1: a hidden point changes no answer --------------------------------------------------------


async def test_an_admin_patching_the_commune_learns_nothing_about_the_hidden_point(
    client: httpx.AsyncClient, session: AsyncSession, reader: AsyncConnection, auth: Tokens, owner: Owner
) -> None:
    near = await _safe_house(session, owner.organisation, NEAR_VILLEURBANNE)
    far = await _safe_house(session, owner.organisation, FAR_FROM_VILLEURBANNE)
    # The premise: one hidden point lies within 2 km of Villeurbanne, the other does not.
    relation = await (
        await reader.execute(
            """SELECT l.id = %s, ST_DWithin(c.boundary::geography, l.point::geography, 2000)
                 FROM location l, commune c WHERE c.code = %s AND l.id IN (%s, %s)""",
            (near.id, VILLEURBANNE, near.id, far.id),
        )
    ).fetchall()
    assert sorted(tuple(r) for r in relation) == [(False, False), (True, True)]

    admin = auth("admin")
    before = await fingerprint(reader)
    answers = []
    for house in (near, far):
        response = await client.patch(
            f"/v1/locations/{house.id}", headers={**admin, "If-Match": '"1"'}, json={"commune_code": VILLEURBANNE}
        )
        answers.append(_answer(response))
    assert answers[0] == answers[1]
    assert answers[0][0] == 422
    assert answers[0][3][0]["pointer"] == "/commune_code"
    assert await fingerprint(reader) == before
    assert (await _version(reader, "location", near.id), await _version(reader, "location", far.id)) == (1, 1)


@pytest.mark.parametrize(
    "body",
    [
        {"address": "7 impasse Secrète"},  # the stored address: a no-op would keep the version
        {"address": "8 impasse Ailleurs"},
        {"point": {"type": "Point", "coordinates": list(LYON_POINT)}},  # the stored point
        {"point": {"type": "Point", "coordinates": [4.8400, 45.7600]}},
        {"commune_code": "69123", "point": {"type": "Point", "coordinates": [4.8400, 45.7600]}},
    ],
)
async def test_an_admin_cannot_move_or_guess_a_safe_house(
    client: httpx.AsyncClient, reader: AsyncConnection, auth: Tokens, owner: Owner, body: dict[str, Any]
) -> None:
    """Same answer whether the guess is right or wrong; nothing changes, not even the version."""
    before = await fingerprint(reader)
    response = await client.patch(
        f"/v1/locations/{owner.safe_house.id}", headers={**auth("admin"), "If-Match": '"1"'}, json=body
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["pointer"] == "/" + next(iter(body))
    assert "only the organisation of a confidential location" in response.json()["detail"]
    assert await fingerprint(reader) == before


async def test_the_owner_still_moves_its_safe_house_with_checks(
    client: httpx.AsyncClient, reader: AsyncConnection, owner: Owner
) -> None:
    url = f"/v1/locations/{owner.safe_house.id}"
    far = await client.patch(url, headers={**owner.headers, "If-Match": '"1"'}, json={"commune_code": "13055"})
    assert far.status_code == 422
    assert far.json()["errors"][0]["pointer"] == "/point"
    moved = await client.patch(
        url,
        headers={**owner.headers, "If-Match": '"1"'},
        json={"point": {"type": "Point", "coordinates": [4.84, 45.76]}},
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["point"]["coordinates"] == [4.84, 45.76]
    assert moved.json()["address"] == "7 impasse Secrète"


def _stale_cases(owner: Owner) -> list[tuple[str, str, dict[str, Any], str]]:
    """(url, who, body that fails validation, table) for each conditional write."""
    return [
        (f"/v1/locations/{owner.safe_house.id}", "owner", {"commune_code": "13055"}, "location"),  # 2 km check
        (f"/v1/locations/{owner.public.id}", "owner", {"commune_code": "99999"}, "location"),
        (f"/v1/locations/{owner.safe_house.id}", "admin", {"commune_code": VILLEURBANNE}, "location"),
        (f"/v1/locations/{owner.safe_house.id}", "admin", {"visibility": "public"}, "location"),
        (f"/v1/services/{owner.service.id}", "owner", {"age_min": 16, "age_max": 12}, "service"),
        (f"/v1/services/{owner.service.id}", "owner", {"location_id": str(owner.organisation.id)}, "service"),
        (
            f"/v1/service-areas/{owner.area.id}",
            "owner",
            {"departements": ["2A"], "communes": ["99999"]},
            "service_area",
        ),
        (f"/v1/service-areas/{owner.area.id}", "owner", {"departements": None}, "service_area"),
        (f"/v1/organisations/{owner.organisation.id}", "admin", {"collectivite_code": "99D"}, "organisation"),
    ]


@pytest.mark.parametrize("case", range(9))
async def test_a_stale_if_match_is_412_before_any_validation(
    client: httpx.AsyncClient, reader: AsyncConnection, auth: Tokens, owner: Owner, case: int
) -> None:
    url, who, body, _ = _stale_cases(owner)[case]
    headers = owner.headers if who == "owner" else auth("admin")
    before = await fingerprint(reader)
    stale = await client.patch(url, headers={**headers, "If-Match": '"999"'}, json=body)
    assert stale.status_code == 412, stale.text
    assert stale.json()["code"] == "stale_version"
    assert await fingerprint(reader) == before
    current = await client.patch(url, headers={**headers, "If-Match": "*"}, json=body)
    assert current.status_code == 422, current.text  # the same body, once current, is invalid
    assert await fingerprint(reader) == before


@pytest.mark.parametrize(
    ("path", "body"),
    [("/v1/services/{service}/capacity", {"state": "full", "as_of": "2999-01-01T00:00:00Z"})],
)
async def test_a_stale_capacity_update_is_412_before_its_422(
    client: httpx.AsyncClient, reader: AsyncConnection, owner: Owner, path: str, body: dict[str, Any]
) -> None:
    url = path.format(service=owner.service.id)
    before = await fingerprint(reader)
    stale = await client.put(url, headers={**owner.headers, "If-Match": '"999"'}, json=body)
    assert stale.status_code == 412
    current = await client.put(url, headers={**owner.headers, "If-Match": "*"}, json=body)
    assert current.status_code == 422
    assert await fingerprint(reader) == before


async def test_a_stale_archive_of_a_location_in_use_is_412(
    client: httpx.AsyncClient, reader: AsyncConnection, owner: Owner
) -> None:
    url = f"/v1/locations/{owner.safe_house.id}"
    before = await fingerprint(reader)
    assert (await client.delete(url, headers={**owner.headers, "If-Match": '"999"'})).status_code == 412
    assert (await client.delete(url, headers={**owner.headers, "If-Match": '"1"'})).status_code == 409  # in use
    assert await fingerprint(reader) == before


# --- B2: only the owner publishes -----------------------------------------------------------------


@pytest.mark.parametrize(("which", "to"), [("safe_house", "public"), ("public", "confidential"), ("public", "public")])
async def test_an_admin_never_changes_visibility(
    client: httpx.AsyncClient, reader: AsyncConnection, auth: Tokens, owner: Owner, which: str, to: str
) -> None:
    location = getattr(owner, which)
    before = await fingerprint(reader)
    response = await client.patch(
        f"/v1/locations/{location.id}",
        headers={**auth("admin"), "If-Match": '"1"'},
        json={"visibility": to, "front_door_phone": "+33199000002"},
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["pointer"] == "/visibility"
    assert await fingerprint(reader) == before


async def test_an_admin_creates_public_locations_only(
    client: httpx.AsyncClient, reader: AsyncConnection, auth: Tokens, owner: Owner
) -> None:
    admin = auth("admin")
    body = {
        "organisation_id": str(owner.organisation.id),
        "commune_code": "69123",
        "point": {"type": "Point", "coordinates": [4.84, 45.76]},
        "address": "3 rue Cachée",
        "front_door_phone": "+33199000003",
    }
    before = await fingerprint(reader)
    refused = await client.post("/v1/locations", headers=admin, json={**body, "visibility": "confidential"})
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["pointer"] == "/visibility"
    assert await fingerprint(reader) == before
    created = await client.post("/v1/locations", headers=admin, json=body)
    assert created.status_code == 201, created.text
    assert (created.json()["visibility"], created.json()["address"]) == ("public", "3 rue Cachée")
    by_owner = await client.post(
        "/v1/locations", headers=owner.headers, json={**body, "organisation_id": None, "visibility": "confidential"}
    )
    assert by_owner.status_code == 201, by_owner.text
    assert by_owner.json()["address"] == "3 rue Cachée"


async def test_the_owners_visibility_change_is_journalled(
    client: httpx.AsyncClient, reader: AsyncConnection, owner: Owner
) -> None:
    url = f"/v1/locations/{owner.public.id}"
    hidden = await client.patch(
        url,
        headers={**owner.headers, "If-Match": '"1"'},
        json={"visibility": "confidential", "front_door_phone": "+33199000004"},
    )
    assert hidden.status_code == 200, hidden.text
    revision = await (
        await reader.execute(
            """SELECT action, changes->'visibility', actor_organisation_id FROM listing_revision
                WHERE entity = 'location' AND entity_id = %s ORDER BY id DESC LIMIT 1""",
            (owner.public.id,),
        )
    ).fetchone()
    assert revision is not None
    assert (revision[0], revision[1], revision[2]) == (
        "visibility",
        {"old": "public", "new": "confidential"},
        owner.organisation.id,
    )
    journal = await (
        await reader.execute(
            "SELECT action, object_type, outcome, actor_organisation_id FROM audit_event WHERE object_id = %s",
            (owner.public.id,),
        )
    ).fetchall()
    assert [tuple(r) for r in journal] == [("location.visibility", "location", "allowed", owner.organisation.id)]
    renamed = await client.patch(url, headers={**owner.headers, "If-Match": hidden.headers["etag"]}, json={"name": "X"})
    assert renamed.status_code == 200
    count = await (
        await reader.execute("SELECT count(*) FROM audit_event WHERE object_id = %s", (owner.public.id,))
    ).fetchone()
    assert count is not None
    assert count[0] == 1  # only visibility changes are journalled there


def _no_exact_place(location: dict[str, Any]) -> None:
    assert location["address"] is None
    assert location["location_precision"] == "commune"
    assert location["point"]["coordinates"] != list(LYON_POINT)


async def test_admins_never_receive_a_safe_houses_place(
    client: httpx.AsyncClient, reader: AsyncConnection, auth: Tokens, owner: Owner
) -> None:
    admin = auth("admin")
    url = f"/v1/locations/{owner.safe_house.id}"
    _no_exact_place((await client.get(url, headers=admin)).json())
    renamed = await client.patch(url, headers={**admin, "If-Match": '"1"'}, json={"name": "Accueil"})
    assert renamed.status_code == 200, renamed.text
    _no_exact_place(renamed.json())
    contact = await client.patch(
        url, headers={**admin, "If-Match": renamed.headers["etag"]}, json={"front_door_email": "accueil@asso.example"}
    )
    assert contact.status_code == 200
    _no_exact_place(contact.json())
    listed = (await client.get(f"/v1/organisations/{owner.organisation.id}/locations", headers=admin)).json()
    _no_exact_place(next(item for item in listed["items"] if item["id"] == str(owner.safe_house.id)))

    service_url = f"/v1/services/{owner.service.id}"
    responses = [
        await client.get(service_url, headers=admin),
        await client.patch(service_url, headers={**admin, "If-Match": "*"}, json={"name": "Abri"}),
        await client.put(f"{service_url}/capacity", headers={**admin, "If-Match": "*"}, json={"state": "limited"}),
        await client.post(f"{service_url}/closures", headers=admin, json={"message": "Travaux"}),
        await client.post(f"{service_url}/reopen", headers=admin),
        await client.post(f"{service_url}/verify", headers=admin),
    ]
    for response in responses:
        assert response.status_code == 200, response.text
        props = response.json()["properties"]
        assert (props["address"], props["location_precision"]) == (None, "commune")
        assert response.json()["geometry"]["coordinates"] != [round(c, 6) for c in LYON_POINT]
        assert "Secrète" not in response.text
    for history_url in (f"{service_url}/history", f"{url}/history"):
        history = await client.get(history_url, headers=admin)
        assert history.status_code == 200
        assert "Secrète" not in history.text
        for item in history.json()["items"]:
            assert all(item["changes"].get(f) in (None, {"redacted": True}) for f in ("point", "address"))


async def test_a_location_history_hides_a_safe_houses_place_from_all_but_its_owner(
    client: httpx.AsyncClient, reader: AsyncConnection, auth: Tokens, owner: Owner
) -> None:
    created = await client.post(
        "/v1/locations",
        headers=owner.headers,
        json={
            "commune_code": "69123",
            "point": {"type": "Point", "coordinates": [4.84, 45.76]},
            "address": "9 rue du Refuge",
            "visibility": "confidential",
            "front_door_phone": "+33199000005",
        },
    )
    assert created.status_code == 201
    url = f"/v1/locations/{created.json()['id']}"
    moved = await client.patch(
        url,
        headers={**owner.headers, "If-Match": '"1"'},
        json={"address": "10 rue du Refuge", "point": {"type": "Point", "coordinates": [4.841, 45.761]}},
    )
    assert moved.status_code == 200
    published = await client.patch(
        url,
        headers={**owner.headers, "If-Match": moved.headers["etag"]},
        json={
            "visibility": "public",
            "address": "1 place Publique",
            "point": {"type": "Point", "coordinates": [4.85, 45.76]},
        },
    )
    assert published.status_code == 200

    mine = (await client.get(f"{url}/history", headers=owner.headers)).json()["items"]
    assert [item["action"] for item in mine] == ["create", "update", "visibility"]
    assert mine[1]["changes"]["address"] == {"old": "9 rue du Refuge", "new": "10 rue du Refuge"}
    assert mine[1]["changes"]["point"] == {"old": [4.84, 45.76], "new": [4.841, 45.761]}

    # Now public, but it was a safe house: its former places stay hidden from admins, as do the new.
    theirs = (await client.get(f"{url}/history", headers=auth("admin"))).json()["items"]
    assert [item["action"] for item in theirs] == ["create", "update", "visibility"]
    for item in theirs:
        for field in ("address", "point"):
            if field in item["changes"]:
                assert item["changes"][field] == {"redacted": True}
    assert theirs[2]["changes"]["visibility"] == {"old": "confidential", "new": "public"}
    assert "Refuge" not in str(theirs)

    other = auth("partner")
    assert (await client.get(f"{url}/history", headers=other)).status_code == 404
    assert (await client.get(f"{url}/history", headers=auth("specialist"))).status_code == 403


async def test_a_public_locations_history_is_plain_for_admins(
    client: httpx.AsyncClient, auth: Tokens, owner: Owner
) -> None:
    url = f"/v1/locations/{owner.public.id}"
    moved = await client.patch(url, headers={**owner.headers, "If-Match": '"1"'}, json={"address": "2 rue Publique"})
    assert moved.status_code == 200
    items = (await client.get(f"{url}/history", headers=auth("admin"))).json()["items"]
    assert items[-1]["changes"]["address"] == {"old": "1 rue Publique", "new": "2 rue Publique"}


async def test_a_safe_houses_former_commune_stays_its_owners(
    client: httpx.AsyncClient, auth: Tokens, owner: Owner
) -> None:
    """Moving a safe house to another commune: admins read that it moved, never from where to where."""
    created = await client.post(
        "/v1/locations",
        headers=owner.headers,
        json={
            "commune_code": "15187",
            "point": {"type": "Point", "coordinates": [3.093, 45.007]},
            "address": "7 rue des Tilleuls",
            "visibility": "confidential",
            "front_door_phone": "+33199000005",
        },
    )
    assert created.status_code == 201, created.text
    url = f"/v1/locations/{created.json()['id']}"
    moved = await client.patch(
        url,
        headers={**owner.headers, "If-Match": '"1"'},
        json={"commune_code": "15014", "point": {"type": "Point", "coordinates": [2.444, 44.926]}},
    )
    assert moved.status_code == 200, moved.text
    theirs = (await client.get(f"{url}/history", headers=auth("admin"))).json()["items"]
    assert theirs[1]["changes"]["commune_code"] == {"redacted": True}
    assert "15187" not in str(theirs)
    mine = (await client.get(f"{url}/history", headers=owner.headers)).json()["items"]
    assert mine[1]["changes"]["commune_code"] == {"old": "15187", "new": "15014"}
