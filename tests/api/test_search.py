"""GET /v1/services/search: geography, filters, ordering, pagination, confidentiality, bad input.

The test world sits around Saint-Flour (Cantal), away from every seeded location; seeded services
that cover it (CRIP 15D, national members of the collective) only show with include_covering.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from geographiclib.geodesic import Geodesic
from psycopg import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from api.schemas import ServiceCollection
from directory.models import Location, Organisation, PointPrecision, Service, Visibility
from tests import factories

SAINT_FLOUR = "15187"
URL = "/v1/services/search"


@dataclass
class World:
    origin: tuple[float, float]  # lon, lat of Saint-Flour's point
    a: Organisation
    b: Organisation
    locations: dict[str, Location]
    points: dict[str, tuple[float, float]]
    services: dict[str, Service]


async def _project(
    reader: AsyncConnection, origin: tuple[float, float], metres: float, azimuth: float
) -> tuple[float, float, str]:
    """A point `metres` from origin towards `azimuth` (radians), and the commune it lies in."""
    row = await (
        await reader.execute(
            """SELECT ST_X(p::geometry), ST_Y(p::geometry),
                  (SELECT code FROM commune WHERE ST_Covers(boundary, p::geometry) ORDER BY code LIMIT 1)
             FROM (SELECT ST_Project(ST_SetSRID(ST_MakePoint(%s, %s), 4326)::geography, %s, %s) AS p) q""",
            (origin[0], origin[1], metres, azimuth),
        )
    ).fetchone()
    return row[0], row[1], row[2]


@pytest.fixture
async def world(session: AsyncSession, reader: AsyncConnection) -> World:
    row = await (
        await reader.execute("SELECT ST_X(point), ST_Y(point) FROM commune WHERE code = %s", (SAINT_FLOUR,))
    ).fetchone()
    origin = (row[0], row[1])
    a = await factories.organisation(session, name="Asso A", collectives=["ensemble-contre-la-traite"])
    b = await factories.organisation(session, name="Asso B")
    placements = {
        "l1": (1000, 0.0, "public"),
        "l2": (5000, 1.5708, "public"),
        "l3": (3000, 3.1416, "confidential"),
        "l4": (25000, -1.5708, "public"),
        "l5": (40000, 0.8, "public"),
    }
    locations, points = {}, {}
    for key, (metres, azimuth, visibility) in placements.items():
        lon, lat, commune = await _project(reader, origin, metres, azimuth)
        owner = a if key in ("l1", "l3") else b
        if visibility == "confidential":
            commune = SAINT_FLOUR  # the shelter is in Saint-Flour, 3 km south of its centre
        locations[key] = await factories.location(
            session,
            owner,
            lon=lon,
            lat=lat,
            commune=commune,
            visibility=Visibility(visibility),
            address=f"{key} rue du Test",
            front_door_phone="+33 1 99 00 00 01" if visibility == "confidential" else None,
        )
        points[key] = (lon, lat)
    s = {
        "s1": await factories.service(
            session,
            a,
            locations["l1"],
            name="Permanence juridique des mineurs",
            description="Accompagnement au dépôt de plainte",
            specialisms=["legal-support"],
            audiences=["minor"],
            age_min=12,
            age_max=17,
            languages=["fr", "en"],
            channels=["in_person"],
        ),
        "s2": await factories.service(
            session,
            b,
            locations["l2"],
            name="Consultation",
            specialisms=["psychotrauma-care", "legal-support"],
            audiences=["entourage"],
            languages=["fr"],
            capacity="full",
            schedule={
                "mode": "weekly",
                "weekly": {d: [["09:00", "17:00"]] for d in ("mon", "tue", "wed", "thu", "fri")},
            },
        ),
        "s3": await factories.service(
            session,
            a,
            locations["l3"],
            name="Mise à l'abri",
            specialisms=["emergency-shelter"],
            genders=["female"],
            age_min=13,
            age_max=18,
        ),
        "s4": await factories.service(session, b, locations["l4"], name="Santé", specialisms=["medical-sexual-health"]),
        "s5": await factories.service(session, b, locations["l5"], name="Départemental", specialisms=["legal-support"]),
        "s6": await factories.service(session, b, None, name="Ligne nationale", specialisms=["listening-line"]),
    }
    await factories.area(session, s["s5"], departements=["15"])
    await factories.area(session, s["s6"], national=True)
    return World(origin, a, b, locations, points, s)


async def _search(client: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    response = await client.get(URL, params=params, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/geo+json"
    body = response.json()
    ServiceCollection.model_validate(body)
    return body


def _ids(body: dict[str, Any]) -> list[str]:
    return [feature["id"] for feature in body["features"]]


def _geodesic(a: tuple[float, float], b: tuple[float, float]) -> float:
    return Geodesic.WGS84.Inverse(a[1], a[0], b[1], b[0])["s12"]


def _near(world: World, **extra: Any) -> dict[str, Any]:
    return {"lat": world.origin[1], "lon": world.origin[0], "include_covering": "false", **extra}


async def test_nearest_first_with_spheroid_distances(
    client: httpx.AsyncClient, specialist: dict[str, str], world: World
) -> None:
    body = await _search(client, specialist, **_near(world))
    s = world.services
    assert _ids(body) == [str(s["s3"].id), str(s["s1"].id), str(s["s2"].id), str(s["s4"].id)]
    distances = [f["properties"]["distance_m"] for f in body["features"]]
    assert distances == sorted(distances)
    for feature, key in zip(body["features"][1:], ("l1", "l2", "l4"), strict=True):
        expected = _geodesic(world.origin, world.points[key])
        assert abs(feature["properties"]["distance_m"] - expected) <= max(1.0, expected * 0.0005)
        assert feature["geometry"]["coordinates"] == pytest.approx(list(world.points[key]), abs=1e-6)
        assert feature["properties"]["location_precision"] == "exact"
    assert body["empty_reason"] is None
    assert body["links"] == []


async def test_radius_bounds_the_search(client: httpx.AsyncClient, specialist: dict[str, str], world: World) -> None:
    body = await _search(client, specialist, **_near(world, radius_km=4))
    assert _ids(body) == [str(world.services["s3"].id), str(world.services["s1"].id)]
    wide = await _search(client, specialist, **_near(world, radius_km=45))
    assert str(world.services["s5"].id) in _ids(wide)


async def test_covering_services_come_at_their_real_distance(
    client: httpx.AsyncClient, specialist: dict[str, str], world: World
) -> None:
    body = await _search(client, specialist, lat=world.origin[1], lon=world.origin[0], limit=100)
    features = {f["id"]: f["properties"] for f in body["features"]}
    s5, s6 = features[str(world.services["s5"].id)], features[str(world.services["s6"].id)]
    assert s5["covers"] is True
    assert abs(s5["distance_m"] - _geodesic(world.origin, world.points["l5"])) <= 20
    assert s6["covers"] is True
    assert s6["distance_m"] is None
    assert features[str(world.services["s1"].id)]["covers"] is False
    crip = [p for p in features.values() if p["organisation"]["kind"] == "crip"]
    assert [p["organisation"]["name"] for p in crip] == [
        "Cellule de recueil des informations préoccupantes — Département du Cantal"
    ]
    assert crip[0]["covers"] is True
    located = [p["distance_m"] for p in features.values() if p["distance_m"] is not None]
    assert [p["distance_m"] for p in body_order(body)][: len(located)] == sorted(located)
    assert all(p["distance_m"] is None for p in body_order(body)[len(located) :])


def body_order(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [f["properties"] for f in body["features"]]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"specialism": "legal-support"}, ["s1", "s2"]),
        ({"specialism": ["legal-support", "psychotrauma-care"], "match": "all"}, ["s2"]),
        ({"specialism": ["emergency-shelter", "psychotrauma-care"]}, ["s3", "s2"]),
        ({"audience": "minor"}, ["s1"]),
        ({"age": 12}, ["s1", "s2", "s4"]),
        ({"age": 18}, ["s3", "s2", "s4"]),
        ({"gender": "male"}, ["s1", "s2", "s4"]),
        ({"gender": "female"}, ["s3", "s1", "s2", "s4"]),
        ({"language": "en"}, ["s1"]),
        ({"channel": "in_person"}, ["s1"]),
        ({"available": "true"}, ["s3", "s1", "s4"]),
        ({"collective": "ensemble-contre-la-traite"}, ["s3", "s1"]),
        ({"q": "depot de PLAINTE"}, ["s1"]),
        ({"q": "juridique"}, ["s1"]),
        ({"open_at": "2026-12-06T23:00:00+01:00"}, ["s3", "s1", "s4"]),  # a Sunday night: s2 keeps office hours
        ({"open_at": "2026-12-07T10:00:00+01:00"}, ["s3", "s1", "s2", "s4"]),
    ],
)
async def test_filters(
    client: httpx.AsyncClient, specialist: dict[str, str], world: World, params: dict[str, Any], expected: list[str]
) -> None:
    body = await _search(client, specialist, **_near(world, **params))
    assert _ids(body) == [str(world.services[key].id) for key in expected]


async def test_open_now_uses_the_current_time(
    client: httpx.AsyncClient, specialist: dict[str, str], world: World, session: AsyncSession
) -> None:
    world.services["s4"].schedule = {"mode": "weekly", "weekly": {}}  # never open
    await session.flush()
    body = await _search(client, specialist, **_near(world, open_now="true"))
    assert str(world.services["s4"].id) not in _ids(body)
    assert str(world.services["s1"].id) in _ids(body)
    props = {f["id"]: f["properties"] for f in body["features"]}
    assert props[str(world.services["s1"].id)]["open_now"] is True


async def test_closed_suspended_archived_and_stale(
    client: httpx.AsyncClient, specialist: dict[str, str], world: World, session: AsyncSession
) -> None:
    s = world.services
    s["s1"].status = "temporarily_closed"
    s["s1"].closed_from = datetime.now(UTC) - timedelta(days=1)
    s["s1"].closed_until = datetime.now(UTC) + timedelta(days=3)
    s["s1"].closure_message = "Travaux"
    s["s2"].status = "suspended"
    s["s4"].archived_at = datetime.now(UTC)
    s["s3"].last_verified_at = datetime.now(UTC) - timedelta(days=181)
    await session.flush()
    body = await _search(client, specialist, **_near(world))
    props = {f["id"]: f["properties"] for f in body["features"]}
    assert set(props) == {str(s["s1"].id), str(s["s3"].id)}
    closed = props[str(s["s1"].id)]
    assert (closed["status"], closed["open_now"], closed["closure"]["message"]) == (
        "temporarily_closed",
        False,
        "Travaux",
    )
    assert closed["next_opening"] is not None
    assert props[str(s["s3"].id)]["stale"] is True
    assert closed["stale"] is False


async def test_fresh_before_stale_at_equal_distance(
    client: httpx.AsyncClient, specialist: dict[str, str], world: World, session: AsyncSession
) -> None:
    old = datetime.now(UTC) - timedelta(days=400)
    twins = [
        await factories.service(
            session,
            world.b,
            world.locations["l2"],
            name=f"Twin {i}",
            last_verified_at=old if i % 2 else datetime.now(UTC),
        )
        for i in range(4)
    ]
    body = await _search(client, specialist, **_near(world, radius_km=6))
    at_l2 = [f for f in body["features"] if f["id"] in {str(t.id) for t in twins}]
    assert [f["properties"]["stale"] for f in at_l2] == [False, False, True, True]


async def test_pages_have_no_duplicates_or_gaps(
    client: httpx.AsyncClient, specialist: dict[str, str], world: World, session: AsyncSession
) -> None:
    for i in range(40):
        await factories.service(
            session,
            world.b,
            world.locations["l2"] if i % 2 else world.locations["l4"],
            name=f"Extra {i}",
            last_verified_at=None if i % 3 else datetime.now(UTC),
        )
    everything = _ids(await _search(client, specialist, **_near(world, limit=100)))
    assert len(everything) == 44
    seen: list[str] = []
    params: dict[str, Any] | None = _near(world, limit=7)
    url: str | None = URL
    pages = 0
    while url:
        response = await client.get(url, params=params, headers=specialist)
        assert response.status_code == 200, (url, response.text)
        body = response.json()
        seen += _ids(body)
        url = next((link["href"] for link in body["links"] if link["rel"] == "next"), None)
        params = None  # the next link carries the whole query
        pages += 1
    assert pages == 7
    assert seen == everything


async def test_a_first_page_is_the_head_of_the_whole_ordering_for_every_viewer(
    client: httpx.AsyncClient,
    auth,  # type: ignore[no-untyped-def]
    world: World,
    session: AsyncSession,
    reader: AsyncConnection,
) -> None:
    """A first page only looks as far as its `limit` nearest services reach (directory/search.py): it
    must still be exactly the start of the unbounded ordering, whoever looks and however many it asks."""
    for i in range(6):
        await factories.service(session, world.b, world.locations["l1"], name=f"Near {i}")
    # A's safe house 800 m away whose commune point is 10 km off: its owner sorts it by its exact point.
    lon, lat, _ = await _project(reader, world.origin, 800, 0.4)
    _, _, far_commune = await _project(reader, world.origin, 10_000, 2.5)
    hidden = await factories.location(
        session,
        world.a,
        lon=lon,
        lat=lat,
        commune=far_commune,
        visibility=Visibility.confidential,
        front_door_phone="+33 1 99 00 00 02",
    )
    house = await factories.service(session, world.a, hidden, name="Foyer discret")
    viewers = {
        "owner": auth("partner", org=world.a.id),
        "stranger": auth("partner", org=world.b.id),
        "specialist": auth("specialist"),
        "admin": auth("admin"),
    }
    for name, headers in viewers.items():
        everything = _ids(await _search(client, headers, **_near(world, limit=100)))
        assert len(everything) == 11, name
        for limit in (1, 2, 3, 5, 8):
            page = _ids(await _search(client, headers, **_near(world, limit=limit)))
            assert page == everything[:limit], (name, limit)
    owner_first = _ids(await _search(client, viewers["owner"], **_near(world, limit=1)))
    assert owner_first == [str(house.id)]  # found through its owner's own branch, not the bound


async def test_a_cursor_only_works_for_its_own_query(
    client: httpx.AsyncClient, specialist: dict[str, str], world: World, session: AsyncSession
) -> None:
    for i in range(5):
        await factories.service(session, world.b, world.locations["l2"], name=f"More {i}")
    body = await _search(client, specialist, **_near(world, limit=2))
    cursor = httpx.URL(body["links"][0]["href"]).params["cursor"]
    response = await client.get(URL, params=_near(world, limit=2, radius_km=10, cursor=cursor), headers=specialist)
    assert response.status_code == 422
    assert response.json()["errors"][0]["name"] == "cursor"


class TestConfidentiality:
    """A safe house never shows its point, address or metre distance to a caller without the right."""

    async def test_strangers_see_the_commune_only(
        self,
        client: httpx.AsyncClient,
        auth,
        world: World,  # type: ignore[no-untyped-def]
        reader: AsyncConnection,
    ) -> None:
        commune_point = await (
            await reader.execute("SELECT ST_X(point), ST_Y(point) FROM commune WHERE code = %s", (SAINT_FLOUR,))
        ).fetchone()
        s3 = str(world.services["s3"].id)
        for headers in (auth("specialist"), auth("partner", org=world.b.id), auth("admin"), auth("department")):
            body = await _search(client, headers, **_near(world))
            shelter = next(f for f in body["features"] if f["id"] == s3)
            props = shelter["properties"]
            assert shelter["geometry"]["coordinates"] == pytest.approx(list(commune_point), abs=1e-6)
            assert props["location_precision"] == "commune"
            assert props["address"] is None
            assert props["front_door"] == {"phone": "+33 1 99 00 00 01", "email": None}, (headers, props)
            assert props["distance_m"] % 1000 == 0
            assert f"{world.points['l3'][1]:.5f}" not in json.dumps(body)  # the exact latitude, anywhere
            detail = (await client.get(f"/v1/services/{s3}", headers=headers)).json()
            assert detail["geometry"]["coordinates"] == pytest.approx(list(commune_point), abs=1e-6)
            assert detail["properties"]["address"] is None

    async def test_specialists_see_it_while_the_119_has_an_open_handoff_to_it(
        self,
        client: httpx.AsyncClient,
        auth,
        world: World,  # type: ignore[no-untyped-def]
    ) -> None:
        specialist = auth("specialist")
        s3 = str(world.services["s3"].id)

        async def seen() -> str:
            detail = (await client.get(f"/v1/services/{s3}", headers=specialist)).json()
            return detail["properties"]["location_precision"]

        assert await seen() == "commune"
        case = await client.post(
            "/v1/cases",
            headers=specialist,
            json={"age": 15, "residence_collectivite": "15D", "intake_channel": "phone", "caller": "professional"},
        )
        handoff = await client.post(
            "/v1/handoffs",
            headers={**specialist, "Idempotency-Key": "shelter"},
            json={
                "case_id": case.json()["id"],
                "kind": "shelter_request",
                "to_organisation_id": str(world.a.id),
                "to_service_id": s3,
                "beneficiary": "minor",
                "urgency": "immediate",
                "legal_basis": "child_protection_duty",
            },
        )
        assert handoff.status_code == 201, handoff.text
        assert await seen() == "commune"  # not before the safe house accepts the child
        accepted = await client.post(
            f"/v1/handoffs/{handoff.json()['id']}/transitions",
            headers=auth("partner", org=world.a.id),
            json={"to": "accepted"},
        )
        assert accepted.status_code == 200, accepted.text
        assert await seen() == "exact"
        body = await _search(client, specialist, **_near(world))
        shelter = next(f for f in body["features"] if f["id"] == s3)
        assert shelter["geometry"]["coordinates"] == pytest.approx(list(world.points["l3"]), abs=1e-6)
        cancelled = await client.post(
            f"/v1/handoffs/{handoff.json()['id']}/transitions", headers=specialist, json={"to": "cancelled"}
        )
        assert cancelled.status_code == 200
        assert await seen() == "commune"

    async def test_confidential_says_a_safe_house_whatever_its_precision_and_the_viewer_s_access(
        self,
        client: httpx.AsyncClient,
        auth,  # type: ignore[no-untyped-def]
        world: World,
        session: AsyncSession,
        reader: AsyncConnection,
    ) -> None:
        """`confidential` follows the location's visibility, not `location_precision`: a public place
        placed at its commune keeps its address and is not confidential, and a safe house a specialist
        sees exactly (a placement there under way) is still confidential — the console's cue never to
        pass its address on."""
        specialist = auth("specialist")
        # A public place imported without a geocoded point: it stands at its commune's point, with its address.
        commune_point = await (
            await reader.execute("SELECT ST_X(point), ST_Y(point) FROM commune WHERE code = %s", (SAINT_FLOUR,))
        ).fetchone()
        imported = await factories.location(
            session,
            world.b,
            lon=commune_point[0],
            lat=commune_point[1],
            commune=SAINT_FLOUR,
            address="3 place d'Armes",
            point_precision=PointPrecision.commune,
        )
        s7 = await factories.service(session, world.b, imported, name="Point d'accueil importé")
        ids = {key: str(world.services[key].id) for key in ("s1", "s3", "s6")} | {"s7": str(s7.id)}

        async def seen(headers: dict[str, str]) -> dict[str, dict[str, Any]]:
            """Each service's feature in a search, checked against the service's detail."""
            body = await _search(client, headers, **_near(world, include_covering="true", limit=100))
            features = {f["id"]: f for f in body["features"] if f["id"] in ids.values()}
            assert set(features) == set(ids.values())
            for service_id, feature in features.items():
                detail = (await client.get(f"/v1/services/{service_id}", headers=headers)).json()
                for key in ("confidential", "location_precision", "address", "front_door"):
                    assert detail["properties"][key] == feature["properties"][key], (service_id, key)
                assert detail["geometry"] == feature["geometry"]
            return {key: features[service_id] for key, service_id in ids.items()}

        def place(feature: dict[str, Any]) -> tuple[Any, ...]:
            props = feature["properties"]
            return props["confidential"], props["location_precision"], props["address"], props["front_door"]

        before = await seen(specialist)
        assert place(before["s1"]) == (False, "exact", "l1 rue du Test", None)  # a public place, exact
        assert place(before["s7"]) == (False, "commune", "3 place d'Armes", None)  # public, at its commune
        assert before["s7"]["geometry"]["coordinates"] == pytest.approx(list(commune_point), abs=1e-6)
        # The safe house, to a specialist with no placement there: its commune and front door only.
        assert place(before["s3"]) == (True, "commune", None, {"phone": "+33 1 99 00 00 01", "email": None})
        assert before["s3"]["geometry"]["coordinates"] == pytest.approx(list(commune_point), abs=1e-6)
        assert place(before["s6"]) == (None, None, None, None)  # a phone line: no location
        assert before["s6"]["geometry"] is None

        # The same specialist, once the safe house accepted the child it asked to place there.
        case = await factories.case(client, specialist, residence_collectivite="15D")
        handoff = await factories.handoff(
            client,
            specialist,
            case_id=case["id"],
            kind="shelter_request",
            to_organisation_id=str(world.a.id),
            to_service_id=ids["s3"],
        )
        await factories.move(client, auth("partner", org=world.a.id), handoff["id"], "accepted")
        placing = await seen(specialist)
        assert place(placing["s3"]) == (True, "exact", "l3 rue du Test", None)
        assert placing["s3"]["geometry"]["coordinates"] == pytest.approx(list(world.points["l3"]), abs=1e-6)
        # Another specialist, working no such case, still sees only the commune — and the same flag.
        other = await seen(auth("specialist", subject="someone-else"))
        assert place(other["s3"]) == (True, "commune", None, {"phone": "+33 1 99 00 00 01", "email": None})
        # Its owner sees it exactly, confidential too; the flags of the public places never change.
        owner = await seen(auth("partner", org=world.a.id))
        assert place(owner["s3"]) == (True, "exact", "l3 rue du Test", None)
        for view in (placing, other, owner):
            assert [view[key]["properties"]["confidential"] for key in ("s1", "s7", "s6")] == [False, False, None]

    async def test_the_owner_sees_its_own_safe_house(self, client: httpx.AsyncClient, auth, world: World) -> None:  # type: ignore[no-untyped-def]
        owner = auth("partner", org=world.a.id)
        body = await _search(client, owner, **_near(world))
        shelter = next(f for f in body["features"] if f["id"] == str(world.services["s3"].id))
        assert shelter["geometry"]["coordinates"] == pytest.approx(list(world.points["l3"]), abs=1e-6)
        assert shelter["properties"]["address"] == "l3 rue du Test"
        assert shelter["properties"]["location_precision"] == "exact"
        expected = _geodesic(world.origin, world.points["l3"])
        assert abs(shelter["properties"]["distance_m"] - expected) <= max(1.0, expected * 0.0005)

    async def test_no_combination_of_queries_narrows_it_down(
        self,
        client: httpx.AsyncClient,
        auth,  # type: ignore[no-untyped-def]
        world: World,
    ) -> None:
        stranger = auth("specialist")
        s3 = str(world.services["s3"].id)
        lon, lat = world.points["l3"]
        # A radius around the exact point that does not reach the commune's point finds nothing…
        tight = await _search(client, stranger, lat=lat, lon=lon, radius_km=0.5, include_covering="false")
        assert s3 not in _ids(tight)
        # …a tiny box around it neither…
        box = await _search(client, stranger, bbox=f"{lon - 0.001},{lat - 0.001},{lon + 0.001},{lat + 0.001}")
        assert s3 not in _ids(box)
        # …and distances from three origins only ever measure the commune's point, to the kilometre.
        for metres, azimuth in ((7000, 0.3), (9000, 2.0), (11000, 4.0)):
            olon, olat, _ = await _project_http_free(world, metres, azimuth)
            body = await _search(client, stranger, lat=olat, lon=olon, include_covering="false")
            shelter = next(f for f in body["features"] if f["id"] == s3)
            from_commune = _geodesic((olon, olat), world.origin)
            assert shelter["properties"]["distance_m"] == round(from_commune / 1000) * 1000

    async def test_the_bbox_finds_it_at_its_commune(self, client: httpx.AsyncClient, auth, world: World) -> None:  # type: ignore[no-untyped-def]
        lon, lat = world.origin
        body = await _search(client, auth("specialist"), bbox=f"{lon - 0.01},{lat - 0.01},{lon + 0.01},{lat + 0.01}")
        features = {f["id"]: f for f in body["features"]}
        assert str(world.services["s3"].id) in features
        assert features[str(world.services["s3"].id)]["properties"]["distance_m"] is None
        assert _ids(body) == sorted(_ids(body))


async def _project_http_free(world: World, metres: float, azimuth: float) -> tuple[float, float, None]:
    line = Geodesic.WGS84.Direct(world.origin[1], world.origin[0], azimuth * 180 / 3.141592653589793, metres)
    return line["lon2"], line["lat2"], None


async def test_origin_by_commune_and_postal_code(
    client: httpx.AsyncClient, specialist: dict[str, str], world: World
) -> None:
    by_point = _ids(await _search(client, specialist, **_near(world)))
    by_commune = _ids(await _search(client, specialist, commune=SAINT_FLOUR, include_covering="false"))
    by_postal = _ids(await _search(client, specialist, postal_code="15100", include_covering="false"))
    assert by_point == by_commune == by_postal


async def test_empty_results_say_why(client: httpx.AsyncClient, specialist: dict[str, str], world: World) -> None:
    lon, lat, _ = await _project_http_free(world, 15000, 0.0)
    nothing = await _search(client, specialist, lat=lat, lon=lon, radius_km=2, include_covering="false")
    assert nothing["features"] == []
    assert nothing["empty_reason"]["code"] == "nothing_in_range"
    filtered = await _search(client, specialist, **_near(world, language="ro", audience="minor"))
    reason = filtered["empty_reason"]
    assert reason["code"] == "filtered_out"
    assert reason["candidates"] == 4
    assert reason["filters"] == [{"name": "audience", "matching": 1}, {"name": "language", "matching": 0}]
    assert "language" in reason["detail"]


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"lat": "91", "lon": "2"}, "lat"),
        ({"lat": "45", "lon": "nan"}, "lon"),
        ({"lat": "45"}, "lon"),
        ({}, "lat"),
        ({"lat": "45", "lon": "3", "commune": "15187"}, "lat"),
        ({"lat": "45", "lon": "3", "radius_km": "201"}, "radius_km"),
        ({"lat": "45", "lon": "3", "radius_km": "0"}, "radius_km"),
        ({"bbox": "2,48,13,49"}, "bbox"),
        ({"bbox": "3,49,2,48"}, "bbox"),
        ({"bbox": "2,48,3"}, "bbox"),
        ({"bbox": "2,48,3,inf"}, "bbox"),
        ({"bbox": "a,b,c,d"}, "bbox"),
        ({"bbox": "179,48,180.5,49"}, "bbox"),
        ({"bbox": "2,89,3,90.01"}, "bbox"),
        ({"lat": "45", "lon": "3", "specialism": "sorcery"}, "specialism"),
        ({"commune": "99999"}, "commune"),
        ({"commune": "7505"}, "commune"),
        ({"postal_code": "00000"}, "postal_code"),
        ({"lat": "45", "lon": "3", "cursor": "garbage"}, "cursor"),
        ({"lat": "45", "lon": "3", "limit": "101"}, "limit"),
        ({"lat": "45", "lon": "3", "open_now": "true", "open_at": "2026-12-01T10:00:00+01:00"}, "open_at"),
        ({"lat": "45", "lon": "3", "open_at": "2026-12-01T10:00:00"}, "open_at"),
        ({"lat": "45", "lon": "3", "open_at": "tomorrow"}, "open_at"),
        ({"lat": "45", "lon": "3", "age": "-1"}, "age"),
        ({"lat": "45", "lon": "3", "audience": "adult"}, "audience"),
        ({"lat": "45", "lon": "3", "language": "FRA"}, "language"),
        ({"lat": "45", "lon": "3", "match": "most"}, "match"),
        ({"lat": "45", "lon": "3", "q": "a\x00b"}, "q"),
    ],
)
async def test_bad_input_is_a_422_naming_the_parameter(
    client: httpx.AsyncClient, specialist: dict[str, str], params: dict[str, str], name: str
) -> None:
    response = await client.get(URL, params=params, headers=specialist)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["name"] == name


async def test_unknown_service_is_404(client: httpx.AsyncClient, specialist: dict[str, str]) -> None:
    response = await client.get(f"/v1/services/{uuid.uuid4()}", headers=specialist)
    assert response.status_code == 404
    assert (await client.get("/v1/services/not-a-uuid", headers=specialist)).status_code == 422


async def test_service_detail_has_hours_and_areas(
    client: httpx.AsyncClient, specialist: dict[str, str], world: World
) -> None:
    body = (await client.get(f"/v1/services/{world.services['s5'].id}", headers=specialist)).json()
    props = body["properties"]
    assert props["schedule"] == {"mode": "always"}
    assert [(a["departements"], a["national"]) for a in props["areas"]] == [(["15"], False)]
    assert props["archived_at"] is None
    assert props["organisation"]["name"] == "Asso B"
