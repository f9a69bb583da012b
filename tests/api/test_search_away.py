"""Éloignement (`away_from` + `min_distance_km`, `outside`) and `match` ("why this one?") in search.

The world is test_search's: around Saint-Flour (Cantal 15, collectivité 15D), s1 at 1 km, a safe
house s3 3 km south (shown at Saint-Flour's point), s2 at 5 km, s4 at 25 km, s5 at 40 km covering
the Cantal, s6 national without a location.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from geographiclib.geodesic import Geodesic

from tests.api.test_search import URL, World, _ids, _near, _search
from tests.api.test_search import world as world  # noqa: F401  (the fixture)


def _geodesic_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    return float(Geodesic.WGS84.Inverse(a[1], a[0], b[1], b[0])["s12"]) / 1000


def _located_in(body: dict[str, Any], departement: str) -> list[str]:
    """Ids of the page's services located in a (mainland, two-digit) département."""
    return [
        f["id"]
        for f in body["features"]
        if f["properties"]["commune"] and f["geometry"] and f["properties"]["commune"]["code"][:2] == departement
    ]


def _ids_of(world: World, *keys: str) -> list[str]:
    return [str(world.services[key].id) for key in keys]


async def test_away_from_a_point_keeps_services_received_far_enough(
    client: httpx.AsyncClient, specialist: dict[str, str], world: World
) -> None:
    origin = f"{world.origin[0]},{world.origin[1]}"
    body = await _search(client, specialist, **_near(world, away_from=origin, min_distance_km=4))
    # s1 (1 km) and the safe house (judged at Saint-Flour's point: 0 km) are too close.
    assert _ids(body) == _ids_of(world, "s2", "s4")
    assert [f["properties"]["match"]["away_km"] for f in body["features"]] == [5, 25]


async def test_away_from_judges_a_safe_house_by_its_whole_commune(
    client: httpx.AsyncClient, specialist: dict[str, str], world: World
) -> None:
    """A safe house's door may be anywhere in its commune (all that may be known of it): it is kept only
    when every point of the commune is far enough. Standing on its doorstep, or anywhere in Saint-Flour,
    drops it whatever the distance asked; and nothing finer than the commune can be learnt."""
    shelter = str(world.services["s3"].id)
    doorstep = world.points["l3"]
    for min_km in (0.1, 2.5, 3.5):
        body = await _search(
            client, specialist, **_near(world, away_from=f"{doorstep[0]},{doorstep[1]}", min_distance_km=min_km)
        )
        assert shelter not in _ids(body), min_km
    # 40 km east of Saint-Flour's point: its territory's nearest edge is a few km closer than that.
    far = (world.origin[0] + 0.515, world.origin[1])
    centre_km = _geodesic_km(far, world.origin)
    assert 39 < centre_km < 41
    body = await _search(client, specialist, **_near(world, away_from=f"{far[0]},{far[1]}", min_distance_km=20))
    feature = next(f for f in body["features"] if f["id"] == shelter)
    assert centre_km - 10 < feature["properties"]["match"]["away_km"] < centre_km - 1
    # A public location is judged by its point: s1, 1 km north of the centre.
    s1 = next(f for f in body["features"] if f["id"] == str(world.services["s1"].id))
    assert abs(s1["properties"]["match"]["away_km"] - _geodesic_km(far, world.points["l1"])) < 1


async def test_away_from_a_commune_or_a_collectivite_measures_from_its_whole_territory(
    client: httpx.AsyncClient, specialist: dict[str, str], world: World
) -> None:
    # Saint-Flour's territory reaches a few km from its point: s2 (5 km) is within 10 km of its edge,
    # s4 (25 km) is not.
    body = await _search(client, specialist, **_near(world, away_from="15187", min_distance_km=10))
    assert _ids(body) == _ids_of(world, "s4")
    # The Cantal as a département: the same territory as its collectivité.
    by_departement = await _search(
        client, specialist, lat=world.origin[1], lon=world.origin[0], away_from="15", min_distance_km=1, limit=100
    )
    by_collectivite = await _search(
        client, specialist, lat=world.origin[1], lon=world.origin[0], away_from="15D", min_distance_km=1, limit=100
    )
    assert _ids(by_departement) == _ids(by_collectivite)
    # Away from the whole Cantal: every service located here lies in it; the national line (no
    # location, no place near danger) stays, and services located elsewhere that cover the place.
    everything = await _search(
        client, specialist, lat=world.origin[1], lon=world.origin[0], away_from="15D", min_distance_km=1, limit=100
    )
    kept = _ids(everything)
    assert str(world.services["s6"].id) in kept
    in_cantal = [key for key, location in world.locations.items() if location.commune_code.startswith("15")]
    assert len(in_cantal) >= 3
    assert not {str(world.services["s" + key[1:]].id) for key in in_cantal} & set(kept)
    assert all(f["properties"]["match"]["away_km"] in (None, *range(1, 2000)) for f in everything["features"])
    assert _located_in(everything, "15") == []


@pytest.mark.parametrize("codes", [["15"], ["15D"], ["15", "43"]])
async def test_outside_leaves_out_services_received_in_these_territories(
    client: httpx.AsyncClient, specialist: dict[str, str], world: World, codes: list[str]
) -> None:
    inside = await _search(client, specialist, lat=world.origin[1], lon=world.origin[0], limit=100)
    assert len([f for f in inside["features"] if f["geometry"] is not None]) >= 5
    body = await _search(client, specialist, lat=world.origin[1], lon=world.origin[0], outside=codes, limit=100)
    assert str(world.services["s6"].id) in _ids(body)
    departements = {code[:2] for code in codes}
    expected = {
        str(world.services["s" + key[1:]].id)
        for key, location in world.locations.items()
        if location.commune_code[:2] not in departements
    } | {str(world.services["s6"].id)}
    assert {str(service.id) for service in world.services.values()} & set(_ids(body)) == expected
    for code in departements:
        assert _located_in(body, code) == []


async def test_an_empty_page_says_away_from_or_outside_emptied_it(
    client: httpx.AsyncClient, specialist: dict[str, str], world: World
) -> None:
    body = await _search(
        client, specialist, **_near(world, specialism="legal-support", away_from="15D", min_distance_km=5)
    )
    assert body["features"] == []
    reason = body["empty_reason"]
    assert reason["code"] == "filtered_out"
    assert {"name": "away_from", "matching": 0} in reason["filters"]
    assert "away_from" in reason["detail"]
    outside = await _search(client, specialist, **_near(world, outside="15"))
    assert outside["features"] == []
    assert outside["empty_reason"]["filters"] == [{"name": "outside", "matching": 0}]


async def test_match_says_why_each_service_is_there(
    client: httpx.AsyncClient, specialist: dict[str, str], world: World
) -> None:
    body = await _search(
        client, specialist, lat=world.origin[1], lon=world.origin[0], specialism="legal-support", limit=100
    )
    match = {f["id"]: f["properties"]["match"] for f in body["features"]}
    s = {key: str(service.id) for key, service in world.services.items()}
    assert match[s["s1"]] == {
        "specialisms": ["legal-support"],
        "reach": "within_radius",
        "distance_band": "0-2 km",
        "open": "open_now",  # always open
        "capacity": None,
        "fresh": True,
        "away_km": None,
    }
    assert match[s["s2"]]["distance_band"] == "2-10 km"
    assert match[s["s2"]]["capacity"] == "full"
    assert match[s["s2"]]["open"] in ("open_now", "opens_later")  # office hours, whatever the time now
    assert match[s["s5"]]["reach"] == "covers_place"  # located 40 km away, its area covers the Cantal
    assert match[s["s5"]]["distance_band"] == "30-100 km"
    both = await _search(
        client,
        specialist,
        lat=world.origin[1],
        lon=world.origin[0],
        specialism=["legal-support", "psychotrauma-care"],
        limit=100,
    )
    assert {f["id"]: f["properties"]["match"]["specialisms"] for f in both["features"]}[s["s2"]] == [
        "legal-support",
        "psychotrauma-care",
    ]
    national = await _search(client, specialist, lat=world.origin[1], lon=world.origin[0], limit=100)
    assert {f["id"]: f["properties"]["match"] for f in national["features"]}[s["s6"]]["reach"] == "national"


async def test_match_in_a_box(client: httpx.AsyncClient, specialist: dict[str, str], world: World) -> None:
    lon, lat = world.points["l1"]
    body = await _search(client, specialist, bbox=f"{lon - 0.004},{lat - 0.004},{lon + 0.004},{lat + 0.004}")
    assert _ids(body) == _ids_of(world, "s1")
    match = body["features"][0]["properties"]["match"]
    assert (match["reach"], match["distance_band"], match["specialisms"]) == ("in_box", None, [])


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"away_from": "15187"}, "min_distance_km"),
        ({"min_distance_km": "10"}, "away_from"),
        ({"away_from": "nowhere", "min_distance_km": "10"}, "away_from"),
        ({"away_from": "99999", "min_distance_km": "10"}, "away_from"),
        ({"away_from": "99Z", "min_distance_km": "10"}, "away_from"),
        ({"away_from": "15031", "min_distance_km": "10"}, "away_from"),  # restored in 2025: no boundary
        ({"away_from": "975", "min_distance_km": "10"}, "away_from"),
        ({"away_from": "45.0,3.0,1", "min_distance_km": "10"}, "away_from"),
        ({"away_from": "200,45", "min_distance_km": "10"}, "away_from"),
        ({"away_from": "2,90.5", "min_distance_km": "10"}, "away_from"),
        ({"away_from": "15187", "min_distance_km": "0"}, "min_distance_km"),
        ({"away_from": "15187", "min_distance_km": "1001"}, "min_distance_km"),
        ({"away_from": "15187", "min_distance_km": "nan"}, "min_distance_km"),
        ({"outside": "ZZ"}, "outside"),
        ({"outside": "99D"}, "outside"),
        ({"outside": ["15", "15"]}, "outside"),
    ],
)
async def test_bad_away_or_outside_is_a_422_naming_it(
    client: httpx.AsyncClient, specialist: dict[str, str], params: dict[str, Any], name: str
) -> None:
    response = await client.get(URL, params={"lat": "45", "lon": "3", **params}, headers=specialist)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["name"] == name


async def test_corsica_is_a_departement_code(client: httpx.AsyncClient, specialist: dict[str, str]) -> None:
    """2A has a collectivité code's shape but names Corse-du-Sud; Corsica's collectivité is 20R."""
    for params in ({"outside": ["2A", "20R"]}, {"away_from": "2A", "min_distance_km": "50"}):
        response = await client.get(URL, params={"lat": "45", "lon": "3", **params}, headers=specialist)
        assert response.status_code == 200, response.text


async def test_a_commune_without_a_boundary_is_refused_with_a_way_out(
    client: httpx.AsyncClient, specialist: dict[str, str]
) -> None:
    response = await client.get(
        URL, params={"lat": "45", "lon": "3", "away_from": "15031", "min_distance_km": "5"}, headers=specialist
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"] == [
        {
            "in": "query",
            "name": "away_from",
            "message": "this commune has no boundary in the reference data: give lon,lat",
        }
    ]
