"""Responses whose JSON was built by PostgreSQL: passed through as bytes, never re-parsed; and content
negotiation for routes that offer more than one representation."""

import json
from collections.abc import Iterable, Sequence
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from .errors import NotAcceptable

GEOJSON = "application/geo+json"


class JSONText(JSONResponse):
    """JSON text passed through as is. A JSONResponse only so that FastAPI documents the route's
    `response_model` under this media type (it documents other response classes as a bare string)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        if content is None:
            return b""
        return content if isinstance(content, bytes) else str(content).encode(self.charset)


class GeoJSONText(JSONText):
    media_type = GEOJSON


def items_page(items: Iterable[str], links: list[dict[str, str]]) -> JSONText:
    """The one shape of every list: `{"items": [...], "links": [...]}`, its items JSON text from SQL."""
    return JSONText('{"items":[' + ",".join(items) + '],"links":' + json.dumps(links) + "}")


def feature_collection(
    features: list[str], *, next_url: str | None, extra: dict[str, Any] | None = None
) -> GeoJSONText:
    """A FeatureCollection around features already serialised by SQL; `extra` adds foreign members."""
    links = [{"rel": "next", "href": next_url, "type": GEOJSON}] if next_url else []
    tail = "".join(f",{json.dumps(key)}:{json.dumps(value)}" for key, value in (extra or {}).items())
    return GeoJSONText(
        '{"type":"FeatureCollection","features":[' + ",".join(features) + '],"links":' + json.dumps(links) + tail + "}"
    )


def _accept_ranges(header: str) -> list[tuple[str, str, float]]:
    """The media ranges of an `Accept` header as (type, subtype, q), in the caller's order; ranges that
    do not parse (no slash, a q that is not a number in [0, 1]) are left out."""
    ranges = []
    for item in header.split(","):
        media, *params = (part.strip() for part in item.split(";"))
        kind, slash, subtype = media.lower().partition("/")
        if not slash or not kind or not subtype or (kind == "*" and subtype != "*"):
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = -1.0
        if 0.0 <= q <= 1.0:
            ranges.append((kind, subtype, q))
    return ranges


def negotiate(request: Request, offered: Sequence[str]) -> str:
    """The media type of `offered` (the route's representations, its default first) to answer with,
    from the request's `Accept` (RFC 9110 §12.5.1). Each offered type takes the q of the most specific
    range that matches it (`text/csv` over `text/*` over `*/*`); q=0 means "not acceptable". The highest
    q wins; ties go to the more specific match, then to the range the caller listed first, then to the
    route's order. No `Accept` (or none that parses) means the default. Nothing acceptable raises
    `NotAcceptable` (406, naming the offered types). A route that negotiates sends `Vary: Accept` on
    both representations."""
    ranges = _accept_ranges(request.headers.get("accept", ""))
    if not ranges:
        return offered[0]
    best: tuple[float, int, int, int] | None = None
    chosen = None
    for rank, media_type in enumerate(offered):
        kind, _, subtype = media_type.lower().partition("/")
        match = None  # (specificity, position in Accept, q)
        for position, (range_kind, range_subtype, q) in enumerate(ranges):
            if range_kind == kind and range_subtype == subtype:
                specificity = 2
            elif range_kind == kind and range_subtype == "*":
                specificity = 1
            elif range_kind == "*":
                specificity = 0
            else:
                continue
            if match is None or specificity > match[0]:
                match = (specificity, position, q)
        if match is None or match[2] == 0:
            continue
        key = (match[2], match[0], -match[1], -rank)
        if best is None or key > best:
            best, chosen = key, media_type
    if chosen is None:
        raise NotAcceptable(offered)
    return chosen
