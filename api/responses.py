"""Responses whose JSON was built by PostgreSQL: passed through as bytes, never re-parsed."""

import json
from typing import Any

from fastapi import Response

GEOJSON = "application/geo+json"


class JSONText(Response):
    media_type = "application/json"


class GeoJSONText(Response):
    media_type = GEOJSON


def feature_collection(
    features: list[str], *, next_url: str | None, extra: dict[str, Any] | None = None
) -> GeoJSONText:
    """A FeatureCollection around features already serialised by SQL; `extra` adds foreign members."""
    links = [{"rel": "next", "href": next_url, "type": GEOJSON}] if next_url else []
    tail = "".join(f",{json.dumps(key)}:{json.dumps(value)}" for key, value in (extra or {}).items())
    return GeoJSONText(
        '{"type":"FeatureCollection","features":[' + ",".join(features) + '],"links":' + json.dumps(links) + tail + "}"
    )
