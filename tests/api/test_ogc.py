"""OGC API – Features under /ogc (issue 16 §2): the documents, paging, the parameters' rules (400 for an
invalid or unknown one), and the safe houses: published at their commune's point with no address for
every caller, never found by a box around their real place, and never shaping a count or an order."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from psycopg import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from directory import collections
from directory.models import Organisation, ServiceStatus, Visibility
from tests import factories
from tests.api.test_output_schemas import _response_model, conforms
from tests.conftest import Tokens

LYON = "69123"
MARSEILLE = "13055"
SAFE_HOUSE = (4.7750, 45.7600)  # the real place, in the west of Lyon: never to be published
PUBLIC_PLACE = (4.8400, 45.7500)
ROLES = ("specialist", "partner", "department", "admin")


@dataclass
class World:
    owner: Organisation
    other: Organisation
    house: str  # the safe house's service
    public: str  # a service at a public address in Lyon
    nowhere: str  # a phone line: no location
    marseille: str  # another organisation's service, in Marseille
    commune_point: tuple[float, float]  # Lyon's point, where the safe house is shown


@pytest.fixture
async def world(session: AsyncSession, reader: AsyncConnection) -> World:
    owner = await factories.organisation(session, name="Asso Refuge")
    other = await factories.organisation(session, name="Asso Sud")
    house = await factories.location(
        session,
        owner,
        lon=SAFE_HOUSE[0],
        lat=SAFE_HOUSE[1],
        commune=LYON,
        name="Maison des Tilleuls",
        address="7 impasse Secrète",
        visibility=Visibility.confidential,
        front_door_phone="+33 1 99 00 00 01",
        front_door_email="accueil@refuge.fr",
    )
    public = await factories.location(
        session, owner, lon=PUBLIC_PLACE[0], lat=PUBLIC_PLACE[1], commune=LYON, name="Accueil", address="1 rue Publique"
    )
    south = await factories.location(session, other, lon=5.3698, lat=43.2965, commune=MARSEILLE, address="2 quai")
    services = {
        "house": await factories.service(
            session, owner, house, name="Mise à l'abri", specialisms=["emergency-shelter"], capacity="limited"
        ),
        "public": await factories.service(session, owner, public, name="Accueil de jour", channels=["in_person"]),
        "nowhere": await factories.service(session, owner, None, name="Ligne d'écoute", channels=["phone"]),
        "marseille": await factories.service(session, other, south, name="Accueil Sud"),
    }
    # Not listed: archived, suspended by Maillage.
    await factories.service(session, owner, public, name="Archivé", archived_at=_NOW)
    await factories.service(session, owner, public, name="Suspendu", status=ServiceStatus.suspended)
    row = await (
        await reader.execute("SELECT ST_X(point), ST_Y(point) FROM commune WHERE code = %s", (LYON,))
    ).fetchone()
    assert row is not None
    return World(
        owner=owner,
        other=other,
        house=str(services["house"].id),
        public=str(services["public"].id),
        nowhere=str(services["nowhere"].id),
        marseille=str(services["marseille"].id),
        commune_point=(row[0], row[1]),
    )


_NOW = datetime.now(UTC)


def _box(point: tuple[float, float], half: float = 0.005) -> str:
    return f"{point[0] - half},{point[1] - half},{point[0] + half},{point[1] + half}"


async def _items(
    client: httpx.AsyncClient, headers: dict[str, str], collection: str = "services", **params: Any
) -> Any:
    response = await client.get(f"/ogc/collections/{collection}/items", headers=headers, params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/geo+json"
    body = response.json()
    assert body["numberReturned"] == len(body["features"])
    return body


async def _viewers(client: httpx.AsyncClient, auth: Tokens, world: World) -> dict[str, dict[str, str]]:
    """Every kind of caller, the safe house's own organisation and a specialist placing a child there
    included (both see its real place in /v1)."""
    specialist = auth("specialist", subject="placing-specialist")
    case = await factories.case(client, specialist)
    handoff = await factories.handoff(
        client,
        specialist,
        case_id=case["id"],
        kind="shelter_request",
        to_organisation_id=str(world.owner.id),
        to_service_id=world.house,
    )
    owner = auth("partner", org=world.owner.id)
    await factories.move(client, owner, handoff["id"], "accepted")
    detail = (await client.get(f"/v1/services/{world.house}", headers=specialist)).json()
    assert detail["properties"]["location_precision"] == "exact"  # the premise: /v1 shows them the place
    return {
        "owner": owner,
        "placing specialist": specialist,
        "admin": auth("admin"),
        "department": auth("department"),
        "other partner": auth("partner", org=world.other.id),
    }


# --- the documents --------------------------------------------------------------------------------


async def test_landing_page_and_conformance(client: httpx.AsyncClient, auth: Tokens) -> None:
    headers = auth("department")
    for path in ("/ogc/", "/ogc"):
        response = await client.get(path, headers=headers)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        links = {link["rel"]: link for link in response.json()["links"]}
        assert links["service-desc"] == {
            "rel": "service-desc",
            "type": "application/vnd.oai.openapi+json;version=3.1",
            "href": "http://maillage.test/openapi.json",
            "title": "The API definition (OpenAPI 3.1)",
        }
        assert links["conformance"]["href"] == "http://maillage.test/ogc/conformance"
        assert links["data"]["href"] == "http://maillage.test/ogc/collections"
        assert links["self"]["href"] == "http://maillage.test/ogc/"
    response = await client.get("/ogc/conformance", headers=headers)
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "conformsTo": [
            "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
            "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
            "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables",
            "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables-query-parameters",
        ]
    }


async def test_collections_describe_themselves_alike_in_the_list_and_alone(
    client: httpx.AsyncClient, auth: Tokens
) -> None:
    headers = auth("partner")
    listed = (await client.get("/ogc/collections", headers=headers)).json()
    assert [c["id"] for c in listed["collections"]] == [
        "services",
        "regions",
        "departements",
        "collectivites",
        "communes",
    ]
    for collection in listed["collections"]:
        alone = await client.get(f"/ogc/collections/{collection['id']}", headers=headers)
        assert alone.status_code == 200
        assert alone.json() == collection
        (bbox,) = collection["extent"]["spatial"]["bbox"]
        # France, from Guadeloupe (61.8° W) to Mayotte and La Réunion (21.4° S) and Dunkirk (51.1° N).
        assert bbox[0] < -61.8
        assert bbox[1] < -21.3
        assert 55.8 < bbox[2] < 56
        assert 51 < bbox[3] < 51.2
        links = {link["rel"]: link for link in collection["links"]}
        assert links["items"]["type"] == "application/geo+json"
        assert links["items"]["href"] == f"http://maillage.test/ogc/collections/{collection['id']}/items"
        assert links["http://www.opengis.net/def/rel/ogc/1.0/queryables"]["type"] == "application/schema+json"


async def test_queryables_are_a_json_schema_of_the_query_parameters(client: httpx.AsyncClient, auth: Tokens) -> None:
    response = await client.get("/ogc/collections/services/queryables", headers=auth("admin"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/schema+json"
    document = response.json()
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert document["$id"] == "http://maillage.test/ogc/collections/services/queryables"
    assert document["type"] == "object"
    assert document["additionalProperties"] is False
    assert sorted(document["properties"]) == [
        "audience",
        "capacity",
        "channel",
        "commune_code",
        "departement_code",
        "language",
        "organisation_id",
        "specialism",
        "status",
    ]
    assert document["properties"]["status"]["enum"] == ["active", "temporarily_closed"]
    communes = (await client.get("/ogc/collections/communes/queryables", headers=auth("admin"))).json()
    assert sorted(communes["properties"]) == ["collectivite_code", "departement_code", "region_code"]
    regions = (await client.get("/ogc/collections/regions/queryables", headers=auth("admin"))).json()
    assert regions["properties"] == {}


# --- safe houses ------------------------------------------------------------------------------------


async def test_a_safe_house_is_at_its_commune_point_without_address_for_every_caller(
    client: httpx.AsyncClient, auth: Tokens, world: World
) -> None:
    viewers = await _viewers(client, auth, world)
    exact_latitude = f"{SAFE_HOUSE[1]:.4f}"
    for who, headers in viewers.items():
        body = await _items(client, headers, organisation_id=str(world.owner.id))
        assert [f["id"] for f in body["features"]] == sorted([world.house, world.public, world.nowhere]), who
        item = await client.get(f"/ogc/collections/services/items/{world.house}", headers=headers)
        assert item.status_code == 200
        assert item.headers["content-type"] == "application/geo+json"
        for feature in (next(f for f in body["features"] if f["id"] == world.house), item.json()):
            assert feature["geometry"] == {"type": "Point", "coordinates": pytest.approx(list(world.commune_point))}
            props = feature["properties"]
            assert props["location_precision"] == "commune", who
            assert props["address"] is None
            assert props["front_door_phone"] == "+33 1 99 00 00 01"
            assert props["front_door_email"] == "accueil@refuge.fr"
            assert (props["commune_code"], props["commune_name"], props["departement_code"]) == (LYON, "Lyon", "69")
        for document in (body, item.json()):
            dumped = json.dumps(document, ensure_ascii=False)
            for secret in (exact_latitude, "Secrète", "Tilleuls"):
                assert secret not in dumped, who
        public = next(f for f in body["features"] if f["id"] == world.public)
        assert public["geometry"]["coordinates"] == pytest.approx(list(PUBLIC_PLACE))
        assert public["properties"]["address"] == "1 rue Publique"
        assert public["properties"]["location_precision"] == "exact"
        assert public["properties"]["front_door_phone"] is None
        nowhere = next(f for f in body["features"] if f["id"] == world.nowhere)
        assert nowhere["geometry"] is None
        assert nowhere["properties"]["location_precision"] is None


async def test_a_box_around_the_real_place_never_finds_a_safe_house(
    client: httpx.AsyncClient, auth: Tokens, reader: AsyncConnection, world: World
) -> None:
    around_house, around_commune = _box(SAFE_HOUSE), _box(world.commune_point)
    premise = await (
        await reader.execute(
            """SELECT ST_Intersects(l.point, ST_MakeEnvelope(%(h0)s, %(h1)s, %(h2)s, %(h3)s, 4326)),
                      ST_Intersects(l.public_point, ST_MakeEnvelope(%(h0)s, %(h1)s, %(h2)s, %(h3)s, 4326)),
                      ST_Intersects(l.point, ST_MakeEnvelope(%(c0)s, %(c1)s, %(c2)s, %(c3)s, 4326))
                 FROM location l JOIN service s ON s.location_id = l.id WHERE s.id = %(id)s""",
            {
                **{f"h{i}": float(v) for i, v in enumerate(around_house.split(","))},
                **{f"c{i}": float(v) for i, v in enumerate(around_commune.split(","))},
                "id": world.house,
            },
        )
    ).fetchone()
    assert tuple(premise) == (True, False, False)  # the box holds the real place only; the other, not it
    viewers = await _viewers(client, auth, world)
    for who, headers in viewers.items():
        body = await _items(client, headers, bbox=around_house, organisation_id=str(world.owner.id))
        assert (body["features"], body["numberMatched"]) == ([], 0), who
        body = await _items(client, headers, bbox=around_commune, organisation_id=str(world.owner.id))
        assert [f["id"] for f in body["features"]] == [world.house], who
        assert body["numberMatched"] == 1


async def test_counts_and_order_never_depend_on_the_real_place(
    client: httpx.AsyncClient, auth: Tokens, session: AsyncSession, world: World
) -> None:
    viewers = await _viewers(client, auth, world)
    lyon = "4.70,45.70,4.95,45.82"

    async def answers() -> list[Any]:
        found = []
        for headers in viewers.values():
            for params in ({"bbox": lyon}, {"bbox": lyon, "limit": 1}, {"departement_code": "69"}):
                body = await _items(client, headers, **params)
                del body["timeStamp"]
                found.append(body)
        return found

    before = await answers()
    # The safe house moves within Lyon, to the other side of the city (still confidential).
    connection = await session.connection()
    await connection.exec_driver_sql(
        "UPDATE location SET point = ST_SetSRID(ST_MakePoint(4.8900, 45.7800), 4326) "
        "WHERE id = (SELECT location_id FROM service WHERE id = %(id)s)",
        {"id": uuid.UUID(world.house)},
    )
    assert await answers() == before


# --- paging -----------------------------------------------------------------------------------------


async def test_next_links_walk_every_page_once(client: httpx.AsyncClient, auth: Tokens, world: World) -> None:
    headers = auth("specialist")
    params = {"bbox": "4.70,43.20,5.50,45.82", "organisation_id": str(world.owner.id), "limit": 1}
    last = await client.get("/ogc/collections/services/items", headers=headers, params=params)
    first = last.json()
    expected = sorted([world.house, world.public])  # the phone line has no geometry: no box holds it
    seen, pages, body = [], 0, first
    while True:
        pages += 1
        assert body["numberMatched"] == 2
        assert body["numberReturned"] == 1
        seen += [f["id"] for f in body["features"]]
        links = {link["rel"]: link for link in body["links"]}
        assert links["self"]["type"] == "application/geo+json"
        assert links["collection"]["href"] == "http://maillage.test/ogc/collections/services"
        if "next" not in links:
            break
        assert links["next"]["href"].startswith("http://maillage.test/ogc/collections/services/items?")
        response = await client.get(links["next"]["href"], headers=headers)
        assert response.status_code == 200
        assert f'<{links["next"]["href"]}>; rel="next"; type="application/geo+json"' in last.headers["link"]
        last, body = response, response.json()
    assert (seen, pages) == (expected, 2)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["timeStamp"])


async def test_a_cursor_belongs_to_its_own_list(client: httpx.AsyncClient, auth: Tokens, world: World) -> None:
    headers = auth("admin")
    body = await _items(client, headers, organisation_id=str(world.owner.id), limit=1)
    cursor = re.search(r"cursor=([^&]+)", next(x for x in body["links"] if x["rel"] == "next")["href"])
    assert cursor is not None
    for params in (
        {"organisation_id": str(world.other.id), "cursor": cursor[1]},  # another list
        {"organisation_id": str(world.owner.id), "cursor": cursor[1][:-2] + "AA"},  # altered
    ):
        response = await client.get("/ogc/collections/services/items", headers=headers, params=params)
        assert response.status_code == 400
        assert response.json()["errors"][0]["name"] == "cursor"


# --- parameters ---------------------------------------------------------------------------------------


async def test_queryables_filter_the_items(client: httpx.AsyncClient, auth: Tokens, world: World) -> None:
    headers = auth("partner")
    owner = str(world.owner.id)

    async def ids(**params: Any) -> list[str]:
        return [f["id"] for f in (await _items(client, headers, **params))["features"]]

    assert await ids(organisation_id=owner, specialism="emergency-shelter") == [world.house]
    assert await ids(organisation_id=owner, channel="phone") == [world.nowhere]
    assert await ids(organisation_id=owner, capacity="limited") == [world.house]
    assert await ids(organisation_id=owner, status="temporarily_closed") == []
    assert world.marseille in await ids(departement_code="13", commune_code=MARSEILLE)
    assert world.house not in await ids(departement_code="13")
    assert await ids(organisation_id=str(uuid.uuid4())) == []


async def test_datetime_filters_on_the_last_verification_and_keeps_the_never_verified(
    client: httpx.AsyncClient, auth: Tokens, session: AsyncSession, world: World
) -> None:
    connection = await session.connection()
    await connection.exec_driver_sql(
        "UPDATE service SET last_verified_at = CASE WHEN id = %(a)s THEN '2025-03-01T12:00:00Z'::timestamptz END"
        " WHERE organisation_id = %(org)s",
        {"a": uuid.UUID(world.public), "org": world.owner.id},
    )
    headers = auth("department")

    async def ids(value: str) -> list[str]:
        body = await _items(client, headers, organisation_id=str(world.owner.id), datetime=value)
        return [f["id"] for f in body["features"]]

    everyone = await ids("../..")
    # A service never verified has no instant: it matches every interval (Part 1, fc-time-response).
    never = [i for i in everyone if i != world.public]
    assert len(never) == len(everyone) - 1 >= 1
    with_public = sorted([*never, world.public])
    assert await ids("2025-03-01T12:00:00Z") == with_public
    assert await ids("2025-03-01T13:00:00+01:00") == with_public  # the same instant
    assert await ids("2025-01-01T00:00:00Z/2025-06-01T00:00:00Z") == with_public
    assert await ids("2025-04-01T00:00:00Z/..") == never
    assert await ids("../2025-04-01T00:00:00Z") == with_public
    assert await ids("/2025-02-01T00:00:00Z") == never
    assert everyone == with_public
    territories = await _items(client, headers, "departements", datetime="2025-01-01T00:00:00Z", limit=200)
    assert territories["numberMatched"] == 101  # no temporal geometry: the parameter keeps them all


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"limit": "unlimited"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),  # above the maximum: refused, never cut
        ({"limit": "1.5"}, "limit"),
        ({"bbox": "4.9,45.7,4.8,45.8"}, "bbox"),  # across the antimeridian, or inverted
        ({"bbox": "4.8,45.8,4.9,45.7"}, "bbox"),
        ({"bbox": "4.8,45.7,4.9"}, "bbox"),
        ({"bbox": "4.8,45.7,4.9,45.8,1"}, "bbox"),
        ({"bbox": "181,45.7,182,45.8"}, "bbox"),
        ({"bbox": "4.8,-91,4.9,45.8"}, "bbox"),
        ({"bbox": "4.8,45.7,inf,45.8"}, "bbox"),
        ({"bbox": "4.8,45.7,0,4.9,45.8,-1"}, "bbox"),  # heights inverted
        ({"datetime": "2025-03-01"}, "datetime"),  # a date-time, with its time and offset
        ({"datetime": "2025-03-01T12:00:00"}, "datetime"),
        ({"datetime": "2025-02-30T12:00:00Z"}, "datetime"),
        ({"datetime": "2025-03-01T12:00:00Z/2025-01-01T00:00:00Z"}, "datetime"),
        ({"datetime": "2025-03-01T12:00:00Z/2025-04-01T00:00:00Z/.."}, "datetime"),
        ({"status": "suspended"}, "status"),
        ({"specialism": "no-such-need"}, "specialism"),
        ({"commune_code": "6912"}, "commune_code"),
        ({"organisation_id": "not-a-uuid"}, "organisation_id"),
        ({"ooga": "booga"}, "ooga"),  # unknown
        ({"region_code": "84"}, "region_code"),  # a communes queryable, not a services one
        ({"f": "json"}, "f"),
    ],
)
async def test_an_invalid_or_unknown_parameter_is_a_400_naming_it(
    client: httpx.AsyncClient, auth: Tokens, params: dict[str, str], name: str
) -> None:
    response = await client.get("/ogc/collections/services/items", headers=auth("specialist"), params=params)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "invalid_request"
    assert [(e["in"], e["name"]) for e in problem["errors"]] == [("query", name)]
    for value in params.values():
        if len(value) > 3:
            assert value not in response.text  # never echoed


async def test_parameters_are_given_once_and_unknown_names_are_not_echoed(
    client: httpx.AsyncClient, auth: Tokens
) -> None:
    headers = auth("admin")
    response = await client.get("/ogc/collections/communes/items?limit=1&limit=2", headers=headers)
    assert response.status_code == 400
    assert response.json()["errors"][0]["name"] == "limit"
    response = await client.get("/ogc/collections/communes/items?06%2012%2034%2056%2078=1", headers=headers)
    assert response.status_code == 400
    assert response.json()["errors"][0]["name"] == "a query parameter"
    assert "06 12" not in response.text
    for path in ("/ogc/", "/ogc/conformance", "/ogc/collections", "/ogc/collections/regions/items/84"):
        response = await client.get(path, headers=headers, params={"f": "json"})
        assert response.status_code == 400, path


async def test_box_forms_that_are_read(client: httpx.AsyncClient, auth: Tokens, world: World) -> None:
    headers = auth("partner")
    owner = str(world.owner.id)
    four = await _items(client, headers, bbox="4.70,45.70,4.95,45.82", organisation_id=owner)
    six = await _items(client, headers, bbox="4.70,45.70,-100,4.95,45.82,3000", organisation_id=owner)
    exponent = await _items(client, headers, bbox="4.7e0,4570e-2,4.95,45.82", organisation_id=owner)
    for body in (four, six, exponent):
        assert [f["id"] for f in body["features"]] == sorted([world.house, world.public])
    # A box larger than /v1's search cap (10°) is read: a GIS asks for its whole view, paged.
    france = await _items(client, headers, bbox="-5.5,41,10,51.5", organisation_id=owner)
    assert france["numberMatched"] == 2


async def test_unknown_features_and_collections_are_404(client: httpx.AsyncClient, auth: Tokens, world: World) -> None:
    headers = auth("specialist")
    for path in (
        f"/ogc/collections/services/items/{uuid.uuid4()}",
        "/ogc/collections/services/items/not-a-uuid",
        "/ogc/collections/communes/items/99999",
        "/ogc/collections/regions/items/99",
        "/ogc/collections/buildings",
        "/ogc/collections/buildings/items",
    ):
        response = await client.get(path, headers=headers)
        assert response.status_code == 404, path
        assert response.headers["content-type"] == "application/problem+json"


async def test_unlisted_services_are_not_published(
    client: httpx.AsyncClient, auth: Tokens, session: AsyncSession, world: World
) -> None:
    headers = auth("admin")
    body = await _items(client, headers, organisation_id=str(world.owner.id))
    assert {f["properties"]["name"] for f in body["features"]} == {"Mise à l'abri", "Accueil de jour", "Ligne d'écoute"}
    world.other.deactivated_at = _NOW
    session.add(world.other)
    await session.flush()
    assert (await _items(client, headers, organisation_id=str(world.other.id)))["numberMatched"] == 0
    response = await client.get(f"/ogc/collections/services/items/{world.marseille}", headers=headers)
    assert response.status_code == 404


async def test_every_ogc_operation_needs_a_token(client: httpx.AsyncClient) -> None:
    for path in ("/ogc/", "/ogc", "/ogc/conformance", "/ogc/collections", "/ogc/collections/services/items"):
        response = await client.get(path, params={"ooga": "booga"})  # 401 before any parameter is looked at
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"] == 'Bearer realm="maillage"'
        assert response.json()["code"] == "unauthenticated"


# --- territories ------------------------------------------------------------------------------------


async def test_territories(client: httpx.AsyncClient, auth: Tokens) -> None:
    headers = auth("department")
    communes = await _items(client, headers, "communes", departement_code="2A", limit=1000)
    assert communes["numberMatched"] == communes["numberReturned"] == 124
    assert all(f["id"].startswith("2A") for f in communes["features"])
    assert communes["features"][0]["geometry"]["type"] == "MultiPolygon"
    paris = (await client.get("/ogc/collections/communes/items/75056", headers=headers)).json()
    assert paris["properties"] == {
        "code": "75056",
        "name": "Paris",
        "departement_code": "75",
        "collectivite_code": "75C",
        "region_code": "11",
        "population": paris["properties"]["population"],
        "postal_codes": paris["properties"]["postal_codes"],
    }
    lyon = await client.get("/ogc/collections/collectivites/items/69M", headers=headers)
    assert lyon.json()["properties"]["departement_codes"] == ["69"]
    assert lyon.json()["properties"]["crip_name"] is not None
    corse = await _items(client, headers, "departements", region_code="94")
    assert [f["id"] for f in corse["features"]] == ["2A", "2B"]
    regions = await _items(client, headers, "regions", bbox=_box((4.8357, 45.7640)))
    assert [f["id"] for f in regions["features"]] == ["84"]
    assert regions["features"][0]["geometry"]["type"] == "MultiPolygon"
    assert regions["features"][0]["properties"]["departement_codes"][:3] == ["01", "03", "07"]
    every = await _items(client, headers, "regions")
    assert every["numberMatched"] == 18
    one = (await client.get("/ogc/collections/regions/items/84", headers=headers)).json()
    assert one["geometry"] == regions["features"][0]["geometry"]
    assert {link["rel"] for link in one["links"]} == {"self", "collection"}


async def test_every_document_has_exactly_its_documented_shape(
    app: FastAPI, client: httpx.AsyncClient, auth: Tokens, world: World
) -> None:
    headers = auth("partner", org=world.owner.id)
    urls = ["/ogc/", "/ogc/conformance", "/ogc/collections"]
    features = {
        "services": world.house,
        "regions": "94",
        "departements": "2A",
        "collectivites": "20R",
        "communes": "2A004",
    }
    for collection, feature in features.items():
        base = f"/ogc/collections/{collection}"
        urls += [base, f"{base}/items?limit=1000", f"{base}/items/{feature}", f"{base}/queryables"]
    urls.append(f"/ogc/collections/services/items?organisation_id={world.owner.id}")
    for url in urls:
        response = await client.get(url, headers=headers)
        assert response.status_code == 200, (url, response.text)
        conforms(_response_model(app, "GET", url.split("?")[0]), response.json(), url)


@pytest.mark.parametrize(
    ("collection", "index"),
    [
        ("services", "ix_location__public_point"),  # never l.point
        ("regions", "ix_departement__boundary"),
        ("departements", "ix_departement__boundary"),
        ("collectivites", "ix_collectivite__boundary"),
        ("communes", "ix_commune__boundary"),
    ],
)
async def test_a_box_is_read_on_its_spatial_index(reader: AsyncConnection, collection: str, index: str) -> None:
    # The test database is small enough for a sequential scan to win: say so, and the plan shows whether
    # the index can serve the box at all (DESIGN §6: every spatial predicate is index-backed).
    query = collections.Items(bbox=collections.BBox(4.80, 45.74, 4.87, 45.78), limit=10)
    count, page, params = collections.statements(collections.COLLECTIONS[collection], query)
    await reader.execute("SET LOCAL enable_seqscan = off")
    for statement in (count, page):
        plan = await (await reader.execute("EXPLAIN (FORMAT JSON) " + statement, params)).fetchone()
        assert plan is not None
        assert f'"Index Name": "{index}"' in json.dumps(plan[0]), collection


async def test_a_box_with_no_width_finds_what_stands_on_it(
    client: httpx.AsyncClient, auth: Tokens, world: World
) -> None:
    """A box drawn on a point (no width, no height) is that point: the services shown there, the safe
    house at its commune point included — and nothing at the safe house's real place."""
    lon, lat = world.commune_point
    body = await _items(client, auth("admin"), bbox=f"{lon},{lat},{lon},{lat}", organisation_id=str(world.owner.id))
    assert [f["id"] for f in body["features"]] == [world.house]
    body = await _items(client, auth("admin"), bbox=f"{SAFE_HOUSE[0]},{SAFE_HOUSE[1]},{SAFE_HOUSE[0]},{SAFE_HOUSE[1]}")
    assert body["features"] == []


async def test_ogc_answers_are_kept_by_no_cache(client: httpx.AsyncClient, auth: Tokens, world: World) -> None:
    for path in (
        "/ogc/",
        "/ogc/collections",
        "/ogc/collections/services/items",
        f"/ogc/collections/services/items/{world.house}",
    ):
        response = await client.get(path, headers=auth("partner", org=world.other.id))
        assert response.status_code == 200, path
        assert response.headers["cache-control"] == "no-store", path


async def test_number_matched_is_counted_up_to_a_cap_and_left_out_above(
    client: httpx.AsyncClient, auth: Tokens, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from directory import collections

    headers = auth("specialist")
    whole = await _items(client, headers, "departements", limit=1000)
    assert (whole["numberMatched"], whole["numberReturned"]) == (101, 101)  # one page: no count needed
    first = await _items(client, headers, "departements", limit=10)
    assert first["numberMatched"] == 101
    monkeypatch.setattr(collections, "MAX_COUNTED", 100)
    capped = await _items(client, headers, "departements", limit=10)
    assert "numberMatched" not in capped
    assert capped["numberReturned"] == 10
    following = await client.get(
        next(link["href"] for link in capped["links"] if link["rel"] == "next"), headers=headers
    )
    assert following.status_code == 200
    assert "numberMatched" not in following.json()


@pytest.mark.parametrize(("collection", "code"), [("communes", "13055"), ("regions", "93"), ("departements", "13")])
async def test_served_boundaries_are_valid_geometries(
    client: httpx.AsyncClient, auth: Tokens, collection: str, code: str
) -> None:
    """Rounded to 6 decimals alone, Marseille's boundary crosses itself; served, every boundary is a
    valid MultiPolygon (shapely reads what a GIS would)."""
    from shapely.geometry import shape
    from shapely.validation import explain_validity

    response = await client.get(f"/ogc/collections/{collection}/items/{code}", headers=auth("specialist"))
    assert response.status_code == 200, response.text
    geometry = response.json()["geometry"]
    assert geometry["type"] == "MultiPolygon"
    assert shape(geometry).is_valid, explain_validity(shape(geometry))
