"""Every geometry the API serves is valid (OGC simple features), as served: after its GeoJSON
rounding, not only as stored. Ten département boundaries were not (self-intersections, collapsed
rings) once rounded to 6 decimals."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from shapely.geometry import shape
from shapely.validation import explain_validity


async def _features(client: httpx.AsyncClient, headers: dict[str, str], url: str) -> list[dict[str, Any]]:
    features: list[dict[str, Any]] = []
    next_url: str | None = url
    while next_url:
        response = await client.get(next_url, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        features += body["features"]
        next_url = next((link["href"] for link in body.get("links", []) if link["rel"] == "next"), None)
    return features


@pytest.mark.parametrize("collection", ["departements", "collectivites"])
@pytest.mark.parametrize("detail", ["full", "simplified"])
async def test_every_served_boundary_is_valid(
    client: httpx.AsyncClient, specialist: dict[str, str], collection: str, detail: str
) -> None:
    features = await _features(client, specialist, f"/v1/{collection}?geometry={detail}&limit=100")
    assert len(features) == (101 if collection == "departements" else 100)
    invalid = {
        feature["properties"]["code"]: explain_validity(shape(feature["geometry"]))
        for feature in features
        if not shape(feature["geometry"]).is_valid
    }
    assert invalid == {}


async def test_one_served_boundary_is_valid_too(client: httpx.AsyncClient, specialist: dict[str, str]) -> None:
    for code in ("07", "13", "2B", "59"):  # among those that broke once rounded
        response = await client.get(f"/v1/departements/{code}?geometry=full", headers=specialist)
        assert response.status_code == 200
        assert shape(response.json()["geometry"]).is_valid, code


async def test_uncovered_communes_are_served_valid(
    client: httpx.AsyncClient,
    auth,  # type: ignore[no-untyped-def]
) -> None:
    response = await client.get(
        "/v1/stats/coverage",
        headers=auth("department", collectivite="93D"),
        params={"specialism": "emergency-shelter", "within_km": 1, "geometry": "true"},
    )
    assert response.status_code == 200, response.text
    geometries = [item["geometry"] for item in _walk(response.json()) if item.get("geometry")]
    assert geometries, "the test needs uncovered communes with their map"
    assert all(shape(geometry).is_valid for geometry in geometries)


def _walk(value: Any) -> list[dict[str, Any]]:
    """Every object in a JSON document that holds a `geometry`."""
    found: list[dict[str, Any]] = []
    if isinstance(value, dict):
        if "geometry" in value:
            found.append(value)
        for item in value.values():
            found += _walk(item)
    elif isinstance(value, list):
        for item in value:
            found += _walk(item)
    return found
