"""Resolution accuracy against an independent source: GeoNames places (see tests/data/README.md)."""

import csv

import httpx
import pytest

from tests.conftest import data_path

SPECIAL = {"69M", "69D", "20R", "6AE"}


def _places() -> list[dict[str, str]]:
    with open(data_path("geonames-places.csv"), encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


async def test_thousands_of_real_places_resolve_to_the_right_departement_and_collectivite(
    client: httpx.AsyncClient, specialist: dict[str, str]
) -> None:
    places = _places()
    assert len(places) > 9000
    results = []
    for start in range(0, len(places), 1000):
        batch = places[start : start + 1000]
        response = await client.post(
            "/v1/territories/resolve",
            headers=specialist,
            json={"points": [{"lat": float(p["lat"]), "lon": float(p["lon"])} for p in batch]},
        )
        assert response.status_code == 200, response.text
        results.extend(response.json()["results"])
    assert len(results) == len(places)

    departement_ok = [
        r is not None and r["departement"]["code"] == p["departement"] for p, r in zip(places, results, strict=True)
    ]
    special = [(p, r) for p, r in zip(places, results, strict=True) if p["collectivite"] in SPECIAL]
    special_ok = [r is not None and r["collectivite"]["code"] == p["collectivite"] for p, r in special]

    departement_rate = sum(departement_ok) / len(places)
    special_rate = sum(special_ok) / len(special)
    misses = [
        (p["name"], p["departement"], r and r["departement"]["code"])
        for p, r, ok in zip(places, results, departement_ok, strict=True)
        if not ok
    ]
    summary = (
        f"départements: {departement_rate:.4%} of {len(places)}; Lyon/Rhône, Corse, Alsace: "
        f"{special_rate:.4%} of {len(special)}; first misses: {misses[:10]}"
    )
    assert departement_rate >= 0.996, summary
    assert len(special) > 500
    assert special_rate >= 0.99, summary
    # Every collectivité answer carries the CRIP of that collectivité.
    assert all(r["crip"] is not None for r in results if r is not None)


@pytest.mark.parametrize(
    ("name", "lat", "lon", "collectivite"),
    [
        ("Villeurbanne (Métropole de Lyon)", 45.7719, 4.8902, "69M"),
        ("Villefranche-sur-Saône (Rhône)", 45.9898, 4.7185, "69D"),
        ("Bastia (Haute-Corse)", 42.6977, 9.4509, "20R"),
        ("Colmar (Haut-Rhin)", 48.0794, 7.3585, "6AE"),
        ("Mamoudzou", -12.7806, 45.2278, "976R"),
        ("Cayenne", 4.9372, -52.3260, "973R"),
    ],
)
async def test_competence_rules(
    client: httpx.AsyncClient, specialist: dict[str, str], name: str, lat: float, lon: float, collectivite: str
) -> None:
    response = await client.get("/v1/territories/resolve", params={"lat": lat, "lon": lon}, headers=specialist)
    assert response.status_code == 200, name
    assert response.json()["collectivite"]["code"] == collectivite
