"""Responses whose JSON was built by PostgreSQL: passed through as bytes, never re-parsed."""

import json

from fastapi import Response

GEOJSON = "application/geo+json"


class JSONText(Response):
    media_type = "application/json"


class GeoJSONText(Response):
    media_type = GEOJSON


def feature_collection(features: list[str], *, next_url: str | None) -> GeoJSONText:
    links = [{"rel": "next", "href": next_url, "type": GEOJSON}] if next_url else []
    return GeoJSONText(
        '{"type":"FeatureCollection","features":[' + ",".join(features) + '],"links":' + json.dumps(links) + "}"
    )
