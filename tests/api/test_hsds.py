"""Open Referral HSDS 3.0: every endpoint and the dump validate against the official schemas, only
listed services are published, and a safe house is never published more precisely than its commune —
whoever asks, its owner and the specialist placing a child there included."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from dateutil.rrule import rrulestr
from psycopg import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from directory.models import OrganisationKind
from sync import hsds
from tests import factories, hsds_schemas

SAINT_DENIS = "93066"
SAINT_FLOUR = "15187"
HOUSE = (3.0930, 45.0070)
HOUSE_ADDRESS = "7 rue des Tilleuls"
HOUSE_NAME = "Maison des Tilleuls"
OFFICE_ADDRESS = "12 rue Gabriel Péri 93200 Saint-Denis"
SOON, LATER = date.today() + timedelta(days=10), date.today() + timedelta(days=12)
WEEKLY = {
    "mode": "weekly",
    "weekly": {
        "mon": [["09:00", "12:00"], ["14:00", "17:00"]],
        "tue": [["09:00", "12:00"]],
        "sat": [["22:00", "02:00"]],
    },
    "closed_on_public_holidays": True,
    "exceptions": [
        {"date": "2020-01-06", "hours": []},  # past: not published
        {"date": SOON.isoformat(), "hours": [["09:00", "12:00"]]},
        {"date": LATER.isoformat(), "hours": []},
    ],
}
ENDPOINTS = ("services", "service_at_locations", "organizations", "taxonomies", "taxonomy_terms")


@dataclass
class World:
    org: uuid.UUID
    office_service: str
    house_service: str
    phone_line: str
    office_location: str
    house_location: str
    hidden: list[str]  # service ids that must never be published
    gone_org: uuid.UUID
    owner: dict[str, str]


@pytest.fixture
async def world(session: AsyncSession, auth) -> World:  # type: ignore[no-untyped-def]
    org = await factories.organisation(
        session, name="Association Tilleuls", siren="123456789", phone="+33 1 23 45 67 89", email="contact@tilleuls.fr"
    )
    office = await factories.location(
        session, org, lon=2.3574, lat=48.9362, commune=SAINT_DENIS, name="Bureau", address=OFFICE_ADDRESS
    )
    house = await factories.location(
        session,
        org,
        lon=HOUSE[0],
        lat=HOUSE[1],
        commune=SAINT_FLOUR,
        name=HOUSE_NAME,
        address=HOUSE_ADDRESS,
        visibility="confidential",
        front_door_phone="+33 1 99 00 00 01",
        front_door_email="accueil@tilleuls.fr",
    )
    office_service = await factories.service(
        session,
        org,
        office,
        name="Accompagnement juridique",
        specialisms=["legal-support", "psychotrauma-care"],
        audiences=["minor", "entourage"],
        age_min=12,
        age_max=21,
        genders=["female"],
        languages=["fr", "ro"],
        channels=["in_person", "phone"],
        phone="+33 1 23 45 67 00",
        website="https://tilleuls.fr/juridique",
        schedule=WEEKLY,
    )
    await factories.area(session, office_service, departements=["93", "94"])
    house_service = await factories.service(
        session,
        org,
        house,
        name="Mise à l'abri",
        specialisms=["emergency-shelter"],
        status="temporarily_closed",
        closed_from=datetime(2026, 12, 1, 9, tzinfo=UTC),
        closure_message="Travaux.",
    )
    await factories.area(session, house_service, radius_km=30)
    phone_line = await factories.service(
        session, org, name="Ligne d'écoute", specialisms=["listening-line"], schedule={"mode": "on_call"}
    )
    archived = await factories.service(session, org, office, archived_at=datetime.now(UTC))
    suspended = await factories.service(session, org, office, status="suspended")
    gone = await factories.organisation(session, deactivated_at=datetime.now(UTC), kind=OrganisationKind.health)
    gone_service = await factories.service(session, gone)
    return World(
        org=org.id,
        office_service=str(office_service.id),
        house_service=str(house_service.id),
        phone_line=str(phone_line.id),
        office_location=str(office.id),
        house_location=str(house.id),
        hidden=[str(archived.id), str(suspended.id), str(gone_service.id)],
        gone_org=gone.id,
        owner=auth("partner", org=org.id),
    )


async def _get(client: httpx.AsyncClient, headers: dict[str, str], path: str, **params: Any) -> Any:
    response = await client.get(f"/v1/hsds{path}", headers=headers, params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()


async def _all(client: httpx.AsyncClient, headers: dict[str, str], endpoint: str, **params: Any) -> list[Any]:
    """Every item of a list, page by page, each page checked against the official schemas."""
    items: list[Any] = []
    page = 1
    while True:
        body = await _get(client, headers, f"/{endpoint}", page=page, per_page=100, **params)
        hsds_schemas.check_page(endpoint, body)
        items += body["contents"]
        if body["last_page"]:
            return items
        page += 1


async def _commune_point(reader: AsyncConnection, code: str) -> tuple[float, float]:
    row = await (
        await reader.execute("SELECT ST_X(point), ST_Y(point) FROM commune WHERE code = %s", (code,))
    ).fetchone()
    assert row is not None
    return float(row[0]), float(row[1])


# --- every endpoint, against the official schemas ------------------------------------------------------


async def test_every_endpoint_answers_valid_hsds(
    client: httpx.AsyncClient, world: World, specialist: dict[str, str]
) -> None:
    about = await _get(client, specialist, "")
    assert about == {"version": "3.0", "openapi_url": "http://maillage.test/openapi.json"}
    for endpoint in ENDPOINTS:
        items = await _all(client, specialist, endpoint)
        assert items, endpoint
        one = await _get(client, specialist, f"/{endpoint}/{items[0]['id']}")
        hsds_schemas.check(hsds_schemas.TABLE[endpoint], one)
    for service_id in (world.office_service, world.house_service, world.phone_line):
        service = await _get(client, specialist, f"/services/{service_id}")
        hsds_schemas.check("schema/service.json", service)
        hsds_schemas.check("compiled/service_with_definitions.json", service)
    organization = await _get(client, specialist, f"/organizations/{world.org}")
    hsds_schemas.check("schema/organization.json", organization)
    places = {place["name"]: place["id"] for place in organization["locations"]}
    assert places.keys() == {"Bureau", "Lieu d'accueil confidentiel — Saint-Flour (15187)"}
    assert places["Bureau"] == world.office_location
    assert places["Lieu d'accueil confidentiel — Saint-Flour (15187)"] != world.house_location


async def test_a_service_says_what_the_listing_says(
    client: httpx.AsyncClient, world: World, specialist: dict[str, str]
) -> None:
    service = await _get(client, specialist, f"/services/{world.office_service}")
    assert service["name"] == "Accompagnement juridique"
    assert service["status"] == "active"
    assert service["organization_id"] == str(world.org)
    assert service["url"] == "https://tilleuls.fr/juridique"
    assert [phone["number"] for phone in service["phones"]] == ["+33 1 23 45 67 00"]
    assert (service["minimum_age"], service["maximum_age"]) == (12, 21)
    assert service["eligibility_description"] == (
        "Publics : mineur·es, entourage (parents, proches). Âge : de 12 à 21 ans. Accueille : filles et femmes."
    )
    assert sorted(language["code"] for language in service["languages"]) == ["fr", "ro"]
    assert [area["name"] for area in service["service_areas"]] == ["Départements 93, 94"]
    terms = {(a["link_type"], a["taxonomy_term"]["code"]) for a in service["attributes"]}
    assert terms == {
        ("specialism", "legal-support"),
        ("specialism", "psychotrauma-care"),
        (
            "closest_thematique",
            "difficultes-administratives-ou-juridiques--prendre-en-compte-une-problematique-judiciaire",
        ),
        ("closest_thematique", "sante--sante-mentale"),
        ("audience", "minor"),
        ("audience", "entourage"),
        ("channel", "in_person"),
        ("channel", "phone"),
    }
    [at] = service["service_at_locations"]
    assert at["location_id"] == world.office_location
    [address] = at["location"]["addresses"]
    assert address["address_1"] == OFFICE_ADDRESS
    assert (address["city"], address["postal_code"], address["country"]) == ("Saint-Denis", "93200", "FR")
    assert address["state_province"] == "Seine-Saint-Denis"
    assert (at["location"]["longitude"], at["location"]["latitude"]) == pytest.approx((2.3574, 48.9362), abs=1e-6)


async def test_schedules_are_rfc_5545_weekly_rules_with_their_utc_offset(
    client: httpx.AsyncClient, world: World, specialist: dict[str, str]
) -> None:
    service = await _get(client, specialist, f"/services/{world.office_service}")
    paris = ZoneInfo("Europe/Paris")
    weekly = [
        s
        for s in service["schedules"]
        if s.get("description") not in ("Horaires exceptionnels.", "Fermé exceptionnellement.")
    ]
    stretches = sorted({(s["valid_from"], s["valid_to"]) for s in weekly})
    # Contiguous stretches of one offset each, from the one holding today to one holding a year later.
    assert date.fromisoformat(stretches[0][0]) <= date.today() <= date.fromisoformat(stretches[0][1])
    assert date.fromisoformat(stretches[-1][1]) >= date.today() + timedelta(days=365)
    for (_, last), (first, _) in zip(stretches, stretches[1:], strict=False):
        assert date.fromisoformat(first) == date.fromisoformat(last) + timedelta(days=1)
    for first, _ in stretches:
        offset = datetime.combine(date.fromisoformat(first), time(12), paris).utcoffset()
        suffix = "+01:00" if offset == timedelta(hours=1) else "+02:00"
        rules = sorted((s["byday"], s["opens_at"], s["closes_at"]) for s in weekly if s["valid_from"] == first)
        assert rules == sorted(
            [
                ("MO,TU", f"09:00{suffix}", f"12:00{suffix}"),
                ("MO", f"14:00{suffix}", f"17:00{suffix}"),
                ("SA", f"22:00{suffix}", f"02:00{suffix}"),
            ]
        )
    for schedule in weekly:
        rule = rrulestr(
            f"FREQ={schedule['freq']};WKST={schedule['wkst']};BYDAY={schedule['byday']}",
            dtstart=datetime(2026, 12, 7, 9, tzinfo=UTC),  # a Monday
        )
        first_day = rule.after(datetime(2026, 12, 7, tzinfo=UTC), inc=True)
        assert first_day is not None
        assert first_day.strftime("%a")[:2].upper() == schedule["byday"].split(",")[0]
        assert "Europe/Paris" in schedule["notes"]
    dated = sorted(
        (s["valid_from"], s.get("opens_at"), s["description"]) for s in service["schedules"] if s not in weekly
    )
    soon_offset = "+01:00" if datetime.combine(SOON, time(12), paris).utcoffset() == timedelta(hours=1) else "+02:00"
    assert dated == [
        (SOON.isoformat(), f"09:00{soon_offset}", "Horaires exceptionnels."),
        (LATER.isoformat(), None, "Fermé exceptionnellement."),
    ]
    overnight = next(s for s in weekly if s.get("byday") == "SA")
    assert overnight["description"] == "Se termine le lendemain."
    line = await _get(client, specialist, f"/services/{world.phone_line}")
    assert {(s["byday"], s["opens_at"][:5], s["closes_at"][:5]) for s in line["schedules"]} == {
        ("MO,TU,WE,TH,FR,SA,SU", "00:00", "23:59")
    }
    assert line["service_at_locations"] == []


def test_overseas_hours_have_one_offset_and_mainland_hours_follow_daylight_saving() -> None:
    assert hsds.periods("Indian/Reunion", date(2026, 12, 3)) == [(None, None, timedelta(hours=4))]
    assert hsds.periods("America/Cayenne", date(2026, 6, 1)) == [(None, None, timedelta(hours=-3))]
    # EU rule: summer time from the last Sunday of March to the last Sunday of October.
    assert hsds.periods("Europe/Paris", date(2026, 12, 3)) == [
        (date(2026, 10, 25), date(2027, 3, 27), timedelta(hours=1)),
        (date(2027, 3, 28), date(2027, 10, 30), timedelta(hours=2)),
        (date(2027, 10, 31), date(2028, 3, 25), timedelta(hours=1)),
    ]


async def test_a_temporary_closure_is_hsds_temporarily_closed_with_its_alert(
    client: httpx.AsyncClient, world: World, specialist: dict[str, str], session: AsyncSession
) -> None:
    service = await _get(client, specialist, f"/services/{world.house_service}")
    assert service["status"] == "temporarily closed"
    assert service["alert"] == "Fermé temporairement (heure locale). Travaux."
    # A closure to come leaves the service active, and says when; one that has ended says nothing.
    org = await factories.organisation(session)
    starts = datetime(2031, 3, 1, 8, tzinfo=UTC)
    planned = await factories.service(
        session, org, status="temporarily_closed", closed_from=starts, closed_until=starts + timedelta(days=3)
    )
    ended = await factories.service(
        session,
        org,
        status="temporarily_closed",
        closed_from=datetime(2020, 1, 1, tzinfo=UTC),
        closed_until=datetime(2020, 2, 1, tzinfo=UTC),
    )
    answer = await _get(client, specialist, f"/services/{planned.id}")
    assert (answer["status"], answer["alert"]) == (
        "active",
        "Fermeture temporaire à partir du 2031-03-01 à 09:00 jusqu'au 2031-03-04 à 09:00 (heure locale).",
    )
    answer = await _get(client, specialist, f"/services/{ended.id}")
    assert answer["status"] == "active"
    assert "alert" not in answer


# --- only what is listed --------------------------------------------------------------------------------


async def test_only_listed_services_of_active_organisations_are_published(
    client: httpx.AsyncClient, world: World, specialist: dict[str, str]
) -> None:
    published = {item["id"] for item in await _all(client, specialist, "services", organization_id=str(world.org))}
    assert published == {world.office_service, world.house_service, world.phone_line}
    for hidden in world.hidden:
        response = await client.get(f"/v1/hsds/services/{hidden}", headers=specialist)
        assert response.status_code == 404, response.text
        assert response.headers["content-type"] == "application/problem+json"
        response = await client.get(f"/v1/hsds/service_at_locations/{hidden}", headers=specialist)
        assert response.status_code == 404, response.text
    everything = json.dumps(await _all(client, specialist, "services"))
    assert not any(hidden in everything for hidden in world.hidden)
    response = await client.get(f"/v1/hsds/organizations/{world.gone_org}", headers=specialist)
    assert response.status_code == 404
    organizations = {item["id"] for item in await _all(client, specialist, "organizations")}
    assert str(world.org) in organizations
    assert str(world.gone_org) not in organizations
    places = {item["id"] for item in await _all(client, specialist, "service_at_locations")}
    assert {world.office_service, world.house_service} <= places
    assert world.phone_line not in places


async def test_pages_are_numbered_and_complete(
    client: httpx.AsyncClient, world: World, specialist: dict[str, str], reader: AsyncConnection
) -> None:
    ids = sorted([world.office_service, world.house_service, world.phone_line])
    pages = [
        await _get(client, specialist, "/services", organization_id=str(world.org), page=n, per_page=2)
        for n in (1, 2, 3)
    ]
    for body in pages:
        hsds_schemas.check_page("services", body)
    assert [item["id"] for body in pages for item in body["contents"]] == ids
    assert [(b["page_number"], b["size"], b["first_page"], b["last_page"], b["empty"]) for b in pages] == [
        (1, 2, True, False, False),
        (2, 1, False, True, False),
        (3, 0, False, True, False),
    ]
    assert {(b["total_items"], b["total_pages"]) for b in pages} == {(3, 2)}
    row = await (await reader.execute("SELECT count(*) FROM organisation WHERE deactivated_at IS NULL")).fetchone()
    assert row is not None
    first = await _get(client, specialist, "/organizations", per_page=7)
    assert (first["total_items"], first["total_pages"]) == (row[0], -(-row[0] // 7))


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"page": 0}, "page"),
        ({"per_page": 101}, "per_page"),
        ({"per_page": 0}, "per_page"),
        ({"taxonomy_term_id": "not-a-uuid"}, "taxonomy_term_id"),
        ({"taxonomy_term_id": str(uuid.uuid4())}, "taxonomy_term_id"),
        ({"taxonomy_id": str(uuid.uuid4())}, "taxonomy_id"),
        ({"modified_after": "2026-12-01T00:00:00Z"}, "modified_after"),  # not implemented: refused, not ignored
        ({"full": "true"}, "full"),
        ({"page": ["1", "2"]}, "page"),  # which one was meant? refused, not chosen
        ({"proximity": "1000"}, "proximity"),
        ({"search": "x"}, "search"),
    ],
)
async def test_a_bad_parameter_is_a_422_naming_it(
    client: httpx.AsyncClient, specialist: dict[str, str], params: dict[str, Any], name: str
) -> None:
    response = await client.get("/v1/hsds/services", headers=specialist, params=params)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["name"] == name


async def test_filters_by_taxonomy_term_taxonomy_text_and_time(
    client: httpx.AsyncClient, world: World, specialist: dict[str, str]
) -> None:
    terms = await _all(client, specialist, "taxonomy_terms")
    by_code = {(t["taxonomy_detail"]["name"], t["code"]): t for t in terms}
    shelter = by_code[("Maillage — spécialités", "emergency-shelter")]
    mental_health = by_code[("data·inclusion — thématiques", "sante--sante-mentale")]
    phone = by_code[("Maillage — modes d'accès", "phone")]

    async def ids(**params: Any) -> set[str]:
        return {s["id"] for s in await _all(client, specialist, "services", organization_id=str(world.org), **params)}

    assert await ids(taxonomy_term_id=shelter["id"]) == {world.house_service}
    assert await ids(taxonomy_term_id=mental_health["id"]) == {world.office_service}
    assert await ids(taxonomy_id=phone["taxonomy_id"]) == {world.office_service}
    assert await ids(search="juridique") == {world.office_service}
    channel_terms = await _all(client, specialist, "taxonomy_terms", taxonomy_id=phone["taxonomy_id"])
    assert sorted(t["code"] for t in channel_terms) == ["in_person", "online", "outreach", "phone"]


async def test_specialism_terms_are_those_of_the_published_taxonomy(
    client: httpx.AsyncClient, specialist: dict[str, str]
) -> None:
    published = (await client.get("/v1/specialisms", headers=specialist)).json()
    taxonomies = await _all(client, specialist, "taxonomies")
    [ours] = [t for t in taxonomies if t.get("uri") == "http://maillage.test/v1/specialisms"]
    assert ours["version"] == published["version"]
    terms = await _all(client, specialist, "taxonomy_terms", taxonomy_id=ours["id"])
    assert [(t["code"], t["name"]) for t in terms] == [(s["slug"], s["label_fr"]) for s in published["items"]]
    again = await _all(client, specialist, "taxonomy_terms", taxonomy_id=ours["id"])
    assert [t["id"] for t in again] == [t["id"] for t in terms]  # stable ids


# --- a safe house is its commune ----------------------------------------------------------------------


def _assert_commune_only(text: str, place: dict[str, Any], commune_point: tuple[float, float]) -> None:
    assert HOUSE_ADDRESS not in text
    assert HOUSE_NAME not in text
    assert f"{HOUSE[0]:.4f}" not in text
    assert f"{HOUSE[1]:.4f}" not in text
    assert (place["longitude"], place["latitude"]) == pytest.approx(commune_point, abs=1e-6)
    assert "addresses" not in place or place["addresses"] == []
    assert place["external_identifier"] == SAINT_FLOUR
    assert [phone["number"] for phone in place["phones"]] == ["+33 1 99 00 00 01"]
    assert [contact["email"] for contact in place["contacts"]] == ["accueil@tilleuls.fr"]


async def test_a_safe_house_is_published_at_its_commune_for_everyone(
    client: httpx.AsyncClient,
    world: World,
    auth,  # type: ignore[no-untyped-def]
    reader: AsyncConnection,
) -> None:
    # The specialist placing a child there sees the address in the API; the export never carries it.
    sender = auth("specialist", subject="specialiste-1")
    case = await factories.case(client, sender)
    handoff = await factories.handoff(
        client,
        sender,
        case_id=case["id"],
        kind="shelter_request",
        to_organisation_id=str(world.org),
        to_service_id=world.house_service,
    )
    await factories.move(client, world.owner, handoff["id"], "accepted")
    detail = (await client.get(f"/v1/services/{world.house_service}", headers=sender)).json()
    assert detail["properties"]["address"] == HOUSE_ADDRESS  # the API's own rule is unchanged
    commune_point = await _commune_point(reader, SAINT_FLOUR)
    for headers in (world.owner, sender, auth("admin"), auth("department", collectivite="15D")):
        service_response = await client.get(f"/v1/hsds/services/{world.house_service}", headers=headers)
        assert service_response.status_code == 200, service_response.text
        [at] = service_response.json()["service_at_locations"]
        _assert_commune_only(service_response.text, at["location"], commune_point)
        assert at["location"]["name"] == "Lieu d'accueil confidentiel — Saint-Flour (15187)"
        at_response = await client.get(f"/v1/hsds/service_at_locations/{world.house_service}", headers=headers)
        _assert_commune_only(at_response.text, at_response.json()["location"], commune_point)
        org_response = await client.get(f"/v1/hsds/organizations/{world.org}", headers=headers)
        [house] = [p for p in org_response.json()["locations"] if p["id"] != world.office_location]
        _assert_commune_only(org_response.text, house, commune_point)
        # Its area is named without its centre.
        assert [a["name"] for a in service_response.json()["service_areas"]] == ["30 km autour du lieu d'accueil"]


async def test_the_hsds_api_needs_a_token(client: httpx.AsyncClient, world: World) -> None:
    for path in ("", "/services", f"/services/{world.office_service}", "/taxonomies"):
        response = await client.get(f"/v1/hsds{path}")
        assert response.status_code == 401, path
        assert response.headers["content-type"] == "application/problem+json"
        assert "Accompagnement" not in response.text


# --- the dump --------------------------------------------------------------------------------------


async def test_the_dump_validates_and_publishes_the_same_as_the_api(
    client: httpx.AsyncClient, world: World, specialist: dict[str, str], reader: AsyncConnection, tmp_path: Path
) -> None:
    (tmp_path / "services.ndjson").write_text("stale\n")
    counts = await hsds.export(reader, tmp_path, base_url="https://maillage.example")
    files = sorted(path.name for path in tmp_path.iterdir())
    assert files == ["hsds.json", *sorted(f"{name}.ndjson" for name in ENDPOINTS)]
    dumped: dict[str, list[dict[str, Any]]] = {}
    for name in ENDPOINTS:
        lines = (tmp_path / f"{name}.ndjson").read_text().splitlines()
        dumped[name] = [json.loads(line) for line in lines]
        assert counts[name] == len(lines)
        for item in dumped[name]:
            hsds_schemas.check(hsds_schemas.TABLE[name], item)
            hsds_schemas.check(hsds_schemas.LIST[name], item)
    for name in ENDPOINTS:
        through_api = await _all(client, specialist, name)
        assert [item["id"] for item in dumped[name]] == [item["id"] for item in through_api], name
    by_id = {item["id"]: item for item in dumped["services"]}
    assert by_id[world.office_service] == json.loads(
        json.dumps(await _get(client, specialist, f"/services/{world.office_service}")).replace(
            "http://maillage.test", "https://maillage.example"
        )
    )
    commune_point = await _commune_point(reader, SAINT_FLOUR)
    text = "".join((tmp_path / f"{name}.ndjson").read_text() for name in ENDPOINTS)
    [house] = by_id[world.house_service]["service_at_locations"]
    _assert_commune_only(text, house["location"], commune_point)
    about = json.loads((tmp_path / "hsds.json").read_text())
    assert about["version"] == "3.0"
    assert about["files"] == {f"{name}.ndjson": counts[name] for name in ENDPOINTS}


def test_missing_schemas_fail_rather_than_skip(tmp_path: Path) -> None:
    with pytest.raises(pytest.fail.Exception, match="HSDS 3.0 schemas are missing"):
        hsds_schemas.root(tmp_path)


async def test_a_safe_house_is_named_by_what_is_published_of_it(
    client: httpx.AsyncClient, world: World, specialist: dict[str, str], session: AsyncSession
) -> None:
    """Never by its own id, which would let anyone count a commune's houses or see one move: two
    houses of one organisation in one commune behind one front door are one published place, and
    moving a service between them changes nothing in what is published."""
    org = await factories.organisation(session)
    houses = [
        await factories.location(
            session,
            org,
            lon=HOUSE[0] + d,
            lat=HOUSE[1],
            commune=SAINT_FLOUR,
            visibility="confidential",
            front_door_phone="+33 1 99 00 00 02",
        )
        for d in (0.0, 0.002)
    ]
    first = await factories.service(session, org, houses[0], name="Foyer")
    second = await factories.service(session, org, houses[1], name="Foyer bis")
    one = await _get(client, specialist, f"/services/{first.id}")
    other = await _get(client, specialist, f"/services/{second.id}")
    place_ids = {one["service_at_locations"][0]["location_id"], other["service_at_locations"][0]["location_id"]}
    assert len(place_ids) == 1
    assert place_ids.isdisjoint({str(h.id) for h in houses})
    organization = await _get(client, specialist, f"/organizations/{org.id}")
    assert [p["id"] for p in organization["locations"]] == list(place_ids)
    text = json.dumps([one, other, organization])
    assert not any(str(h.id) in text for h in houses)
    first.location_id = houses[1].id
    session.add(first)
    await session.flush()
    assert await _get(client, specialist, f"/services/{first.id}") == one
