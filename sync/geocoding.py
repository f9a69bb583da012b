"""Locating partners' addresses with the IGN Géoplateforme geocoder (the successor of API Adresse).

Privacy: only a partner's *public* location address may ever be sent to this outside service. Never a
confidential location's address (a safe house: its address must not leave Maillage, not even to a
public-sector geocoder, whose access logs we do not control), and never a specialist's search place:
a search point is a child's whereabouts. The requests carry no credentials, no cookies (even when the
injected client holds some) and a plain `User-Agent: Maillage`, and they follow no redirect, so the
address reaches the configured service and nothing else. Error reasons never repeat the address.

Only a precise answer inside the expected commune is kept: a result in another commune is a wrong
place, and a `municipality` result only names the commune, whose point the caller already has. Either
way `locate` answers None and the caller falls back to the commune point.

The service allows 50 requests/s and answers 429 beyond. 429, 5xx and transport failures are retried
a few times, honouring `Retry-After` (seconds or HTTP-date), within a budget of waiting: a geocoding
that cannot finish soon is reported as `GeocodingUnavailable`, to be tried again later by the caller's
job, rather than holding a worker for minutes.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeGuard

import httpx

from geo.codes import commune_of

from .errors import SyncError

DEFAULT_BASE_URL = "https://data.geopf.fr/geocodage"
# Applied to every request, whatever the injected client's own defaults (the app's shared client waits
# longer, for webhooks): an address lookup that has not answered in seconds is better retried.
TIMEOUT = httpx.Timeout(5.0, connect=2.0)
USER_AGENT = "Maillage"
# Enough candidates to find the one in the right arrondissement when no citycode filter can be sent.
RESULT_LIMIT = 5
FIRST_BACKOFF_SECONDS = 0.5
# Types precise enough to place a location: at the door, on the street, at the lieu-dit.
PRECISE_TYPES = frozenset({"housenumber", "street", "locality"})
# Communes whose addresses the service files under their municipal arrondissements (75111, 69383…):
# filtering on the commune's own code would find none of them.
CITIES_WITH_ARRONDISSEMENTS = frozenset({"75056", "69123", "13055"})
# The service refuses shorter queries with a 400; such an address has nothing to locate anyway.
SHORTEST_QUERY = 3

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], datetime]


class GeocodingUnavailable(SyncError):
    """The geocoder could not give an answer now (down, rate-limited beyond our budget, refusing the
    request, or answering something we cannot read). Not "no match": that is None."""

    code = "geocoding_unavailable"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class GeocodeResult:
    lon: float
    lat: float
    score: float
    type: str
    label: str


@dataclass(frozen=True, slots=True)
class _Candidate:
    citycode: str
    result: GeocodeResult


def default_client() -> httpx.AsyncClient:
    """A client for the geocoder alone, when none is shared: short timeouts, no redirects."""
    return httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False, headers={"User-Agent": USER_AGENT})


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Geocoder:
    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        base_url: str = DEFAULT_BASE_URL,
        min_score: float = 0.5,
        max_attempts: int = 3,
        wait_budget: float = 10.0,
        sleep: Sleep = asyncio.sleep,
        now: Clock = _utcnow,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._client = client
        self._search_url = base_url.rstrip("/") + "/search"
        self._min_score = min_score
        self._max_attempts = max_attempts
        self._wait_budget = wait_budget
        self._sleep = sleep
        self._now = now

    async def locate(self, address: str, commune_code: str, postal_code: str | None = None) -> GeocodeResult | None:
        """The point of a public address in this commune (INSEE code), or None when the service finds
        nothing precise enough there. GeocodingUnavailable when it cannot answer now.

        The best-scored result in the commune decides: when it is a `municipality` or scores below
        the minimum, the answer is None rather than a weaker result ranked after it.
        """
        query = " ".join(address.split())
        if len(query) < SHORTEST_QUERY:
            return None
        params = {"q": query, "index": "address", "limit": str(RESULT_LIMIT)}
        if commune_code not in CITIES_WITH_ARRONDISSEMENTS:
            params["citycode"] = commune_code
        if postal_code:
            params["postcode"] = postal_code
        body = await self._search(params)
        candidates = [c for c in _candidates(body) if _in_commune(c.citycode, commune_code)]
        if not candidates:
            return None
        best = max(candidates, key=lambda c: c.result.score).result
        if best.type not in PRECISE_TYPES or best.score < self._min_score:
            return None
        return best

    async def _search(self, params: dict[str, str]) -> Any:
        waited = 0.0
        failures: list[str] = []
        for attempt in range(1, self._max_attempts + 1):
            request = self._client.build_request(
                "GET", self._search_url, params=params, headers={"User-Agent": USER_AGENT}, timeout=TIMEOUT
            )
            # The injected client may be shared: its cookies and default credentials are not for us.
            request.headers.pop("Cookie", None)
            request.headers.pop("Authorization", None)
            retry_after: float | None = None
            try:
                response = await self._client.send(request, auth=None, follow_redirects=False)
            except httpx.UnsupportedProtocol as exc:  # a misconfigured base URL: no retry will fix it
                raise GeocodingUnavailable("the geocoding service URL is not usable") from exc
            except httpx.TransportError as exc:  # connection refused or reset, timeouts
                failures.append(f"could not be reached ({type(exc).__name__})")
            except httpx.HTTPError as exc:
                raise GeocodingUnavailable(f"the geocoding service failed ({type(exc).__name__})") from exc
            else:
                status = response.status_code
                if status == 200:
                    try:
                        return response.json()
                    except ValueError as exc:
                        raise GeocodingUnavailable("the geocoding service answered something other than JSON") from exc
                if status != 429 and not 500 <= status <= 599:
                    raise GeocodingUnavailable(f"the geocoding service answered {status}")
                failures.append(f"answered {status}")
                retry_after = _retry_after(response.headers.get("Retry-After"), self._now)
            if attempt == self._max_attempts:
                break
            wait = retry_after if retry_after is not None else FIRST_BACKOFF_SECONDS * 2 ** (attempt - 1)
            left = self._wait_budget - waited
            if wait > left:
                # Waiting less than asked would only earn another 429; waiting more is not ours to spend.
                raise GeocodingUnavailable(
                    f"the geocoding service {failures[-1]} and a retry would wait {wait:g} s, "
                    f"more than the {max(left, 0):g} s left to wait"
                )
            await self._sleep(wait)
            waited += wait
        if len(failures) == 1:
            raise GeocodingUnavailable(f"the geocoding service {failures[0]}")
        if len(set(failures)) == 1:
            raise GeocodingUnavailable(f"the geocoding service {failures[0]} on each of {len(failures)} attempts")
        raise GeocodingUnavailable(f"the geocoding service {failures[-1]} on the last of {len(failures)} attempts")


def _retry_after(value: str | None, now: Clock) -> float | None:
    """Seconds to wait from a Retry-After header (RFC 9110 §10.2.3: delay-seconds or an HTTP-date);
    None when absent or unreadable, so the usual backoff applies."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000": UTC by RFC 5322, which an HTTP-date always is
        when = when.replace(tzinfo=UTC)
    return max((when - now()).total_seconds(), 0.0)


def _in_commune(citycode: str, commune_code: str) -> bool:
    # Paris, Lyon and Marseille addresses carry their arrondissement's code; they are in the city.
    return citycode == commune_code or (
        commune_code in CITIES_WITH_ARRONDISSEMENTS and commune_of(citycode) == commune_code
    )


def _candidates(body: Any) -> list[_Candidate]:
    """The features of a GeocodeJSON answer; GeocodingUnavailable when it does not have that shape."""
    if not isinstance(body, dict) or not isinstance(body.get("features"), list):
        raise GeocodingUnavailable("the geocoding service answered an unexpected document")
    return [_candidate(feature) for feature in body["features"]]


def _candidate(feature: Any) -> _Candidate:
    unexpected = GeocodingUnavailable("the geocoding service answered a feature of an unexpected shape")
    if not isinstance(feature, dict):
        raise unexpected
    geometry, properties = feature.get("geometry"), feature.get("properties")
    if not isinstance(geometry, dict) or not isinstance(properties, dict) or geometry.get("type") != "Point":
        raise unexpected
    coordinates = geometry.get("coordinates")
    if not isinstance(coordinates, list) or len(coordinates) < 2 or not all(map(_is_number, coordinates[:2])):
        raise unexpected
    lon, lat = float(coordinates[0]), float(coordinates[1])
    # PostGIS would silently wrap an out-of-range point: refuse it here.
    if not (math.isfinite(lon) and math.isfinite(lat) and -180 <= lon <= 180 and -90 <= lat <= 90):
        raise unexpected
    score, kind = properties.get("score"), properties.get("type")
    citycode, label = properties.get("citycode"), properties.get("label")
    if not (_is_number(score) and isinstance(kind, str) and isinstance(citycode, str) and isinstance(label, str)):
        raise unexpected
    return _Candidate(citycode, GeocodeResult(lon=lon, lat=lat, score=float(score), type=kind, label=label))


def _is_number(value: object) -> TypeGuard[int | float]:
    """A JSON number (not a boolean, which Python counts as an int), finite."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
