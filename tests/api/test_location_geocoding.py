"""A partner's address without a point is placed by the geocoder (recorded answers through
httpx.MockTransport), else at its commune's point, and the answer says which. A safe house's address
and a specialist's search place never leave Maillage."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from psycopg import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from sync.geocoding import Geocoder
from tests import factories
from tests.api.test_listings import fingerprint

ADDRESS = "20 rue de la République"
# A recorded-style GeocodeJSON answer: a house number in Lyon 2e (69382), in the commune 69123.
FOUND = {
    "type": "FeatureCollection",
    "features": [
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [4.836061, 45.763126]},
            "properties": {
                "label": "20 Rue de la République 69002 Lyon",
                "score": 0.9412,
                "type": "housenumber",
                "citycode": "69382",
                "postcode": "69002",
                "city": "Lyon",
                "name": "20 Rue de la République",
            },
        }
    ],
}


class Recorder:
    def __init__(self, *responses: httpx.Response) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.responses.pop(0) if len(self.responses) > 1 else self.responses[0]


@pytest.fixture
def geocoder(app: FastAPI) -> Iterator[Any]:
    """Installs a geocoder answering from a Recorder; yields a function setting its answers."""
    previous = app.state.geocoder
    recorder: list[Recorder] = []

    async def no_wait(_: float) -> None:
        return None

    def install(*responses: httpx.Response) -> Recorder:
        recording = Recorder(*responses)
        recorder.append(recording)
        client = httpx.AsyncClient(transport=httpx.MockTransport(recording))
        app.state.geocoder = Geocoder(client, sleep=no_wait)
        return recording

    yield install
    app.state.geocoder = previous


@pytest.fixture
async def partner(session: AsyncSession, auth: Any) -> dict[str, str]:
    organisation = await factories.organisation(session, name="Asso géocodée")
    return auth("partner", org=organisation.id)


async def test_an_address_is_placed_by_the_geocoder_inside_its_commune(
    client: httpx.AsyncClient, partner: dict[str, str], geocoder: Any
) -> None:
    recording = geocoder(httpx.Response(200, json=FOUND))
    response = await client.post(
        "/v1/locations", headers=partner, json={"name": "Accueil", "address": ADDRESS, "commune_code": "69123"}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["point"] == {"type": "Point", "coordinates": [4.836061, 45.763126]}
    assert body["location_precision"] == "exact"
    assert body["geocoding"] == {"score": 0.9412, "type": "housenumber"}
    assert body["placement"]["method"] == "geocoded"
    assert "20 Rue de la République 69002 Lyon (housenumber, score 0.94)" in body["placement"]["detail"]
    (sent,) = recording.requests
    assert sent.url.host == "data.geopf.fr"
    assert sent.url.params["q"] == ADDRESS
    # Read back later, the placement note is gone; the geocoder's score stays.
    again = await client.get(f"/v1/locations/{body['id']}", headers=partner)
    assert "placement" not in again.json() or again.json()["placement"] is None
    assert again.json()["geocoding"] == {"score": 0.9412, "type": "housenumber"}


async def test_the_geocoder_down_leaves_the_location_at_its_commune_and_says_so(
    client: httpx.AsyncClient, partner: dict[str, str], geocoder: Any, reader: AsyncConnection
) -> None:
    recording = geocoder(httpx.Response(503))
    response = await client.post("/v1/locations", headers=partner, json={"address": ADDRESS, "commune_code": "69123"})
    assert response.status_code == 201, response.text
    body = response.json()
    lyon = await (await reader.execute("SELECT ST_X(point), ST_Y(point) FROM commune WHERE code = '69123'")).fetchone()
    assert body["point"]["coordinates"] == [round(lyon[0], 7), round(lyon[1], 7)]
    assert body["location_precision"] == "commune"
    assert body["geocoding"] is None
    assert body["placement"]["method"] == "commune"
    assert body["placement"]["detail"].startswith("the geocoder could not answer (")
    assert len(recording.requests) == 3  # retried, then given up


async def test_no_precise_match_falls_back_to_the_commune(
    client: httpx.AsyncClient, partner: dict[str, str], geocoder: Any
) -> None:
    elsewhere = {**FOUND["features"][0], "properties": {**FOUND["features"][0]["properties"], "citycode": "69266"}}
    geocoder(httpx.Response(200, json={"type": "FeatureCollection", "features": [elsewhere]}))
    response = await client.post("/v1/locations", headers=partner, json={"address": ADDRESS, "commune_code": "69123"})
    assert response.status_code == 201
    assert response.json()["location_precision"] == "commune"
    assert "no precise match" in response.json()["placement"]["detail"]


async def test_a_safe_house_address_is_never_sent(
    client: httpx.AsyncClient, partner: dict[str, str], geocoder: Any
) -> None:
    recording = geocoder(httpx.Response(200, json=FOUND))
    response = await client.post(
        "/v1/locations",
        headers=partner,
        json={
            "address": ADDRESS,
            "commune_code": "69123",
            "visibility": "confidential",
            "front_door_phone": "0478000000",
        },
    )
    assert response.status_code == 201, response.text
    assert recording.requests == []
    assert response.json()["location_precision"] == "commune"
    assert "never sent to an outside service" in response.json()["placement"]["detail"]


async def test_a_location_needs_a_point_or_an_address(
    client: httpx.AsyncClient, partner: dict[str, str], geocoder: Any, reader: AsyncConnection
) -> None:
    recording = geocoder(httpx.Response(200, json=FOUND))
    before = await fingerprint(reader)
    response = await client.post("/v1/locations", headers=partner, json={"commune_code": "69123"})
    assert response.status_code == 422
    assert response.json()["detail"] == "point: give the location's point, or its address to place it"
    assert recording.requests == []
    assert await fingerprint(reader) == before


async def test_a_search_place_never_reaches_the_geocoder(
    client: httpx.AsyncClient, specialist: dict[str, str], geocoder: Any
) -> None:
    recording = geocoder(httpx.Response(200, json=FOUND))
    for params in ({"commune": "69123"}, {"postal_code": "69002"}, {"lat": "45.76", "lon": "4.83"}):
        response = await client.get("/v1/services/search", params=params, headers=specialist)
        assert response.status_code == 200
    assert recording.requests == []


@pytest.mark.parametrize(
    ("extra", "pointer"),
    [
        ({"commune_code": "99999"}, "commune_code"),  # no such commune: refused before anything leaves
        ({"organisation_id": "6f1c2a4e-0000-4000-8000-000000000000"}, "organisation_id"),  # not the caller's
    ],
)
async def test_a_refused_creation_sends_nothing_out(
    client: httpx.AsyncClient,
    partner: dict[str, str],
    geocoder: Any,
    reader: AsyncConnection,
    extra: dict[str, str],
    pointer: str,
) -> None:
    recording = geocoder(httpx.Response(200, json=FOUND))
    before = await fingerprint(reader)
    body = {"address": ADDRESS, "commune_code": "69123", **extra}
    response = await client.post("/v1/locations", headers=partner, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["pointer"] == f"/{pointer}"
    assert recording.requests == []
    assert await fingerprint(reader) == before


def test_the_geocoder_is_reached_over_https_only() -> None:
    from api.settings import Settings

    with pytest.raises(ValueError, match="https only"):
        Settings(geocoding_url="http://data.geopf.fr/geocodage")


async def test_an_imported_location_stays_public_and_a_given_point_is_exact(
    client: httpx.AsyncClient, session: AsyncSession, auth: Any, reader: AsyncConnection, geocoder: Any
) -> None:
    """Open data is never a safe house (a 422 naming the field, not the database's refusal); and a
    point the partner gives replaces the geocoder's, marks included."""
    organisation = await factories.organisation(session, name="Reprise d'une fiche importée")
    headers = auth("partner", org=organisation.id)
    geocoder(httpx.Response(200, json=FOUND))
    created = await client.post("/v1/locations", headers=headers, json={"address": ADDRESS, "commune_code": "69123"})
    url = f"/v1/locations/{created.json()['id']}"
    moved = await client.patch(
        url,
        headers={**headers, "If-Match": created.headers["etag"]},
        json={"point": {"type": "Point", "coordinates": [4.84, 45.76]}},
    )
    assert moved.status_code == 200, moved.text
    assert (moved.json()["location_precision"], moved.json()["geocoding"]) == ("exact", None)

    await (await session.connection()).exec_driver_sql(
        f"UPDATE location SET source = 'data-inclusion', source_id = 'dora--x' WHERE id = '{created.json()['id']}'"
    )
    before = await fingerprint(reader)
    hidden = await client.patch(
        url,
        headers={**headers, "If-Match": moved.headers["etag"]},
        json={"visibility": "confidential", "front_door_phone": "0478000000"},
    )
    assert hidden.status_code == 422, hidden.text
    assert hidden.json()["errors"][0]["pointer"] == "/visibility"
    assert await fingerprint(reader) == before
