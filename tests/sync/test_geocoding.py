"""Geocoding: which answers place a location, and how the client behaves when the service struggles."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import FrozenInstanceError
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from sync.geocoding import Geocoder, GeocodeResult, GeocodingUnavailable, default_client

DATA = Path(__file__).parent / "data" / "geocoding"
STRASBOURG = "67482"
PARIS = "75056"

Reply = httpx.Response | Exception
MakeClient = Callable[..., httpx.AsyncClient]


def recorded(name: str, status: int = 200) -> httpx.Response:
    return httpx.Response(status, content=(DATA / name).read_bytes(), headers={"Content-Type": "application/json"})


class Service:
    """A stand-in for the geocoder: answers the given replies in turn (an exception is raised, as the
    transport would) and keeps the requests it received."""

    def __init__(self, replies: Iterable[Reply]) -> None:
        self.replies = list(replies)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
async def http() -> AsyncIterator[MakeClient]:
    """Clients over a mock transport (extra arguments go to the client), closed after the test."""
    clients: list[httpx.AsyncClient] = []

    def make(service: Service, **kwargs: Any) -> httpx.AsyncClient:
        client = httpx.AsyncClient(transport=httpx.MockTransport(service), **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


async def test_a_housenumber_in_the_commune_is_accepted(http: MakeClient, sleeps: Sleeps) -> None:
    service = Service([recorded("housenumber.json")])
    geocoder = Geocoder(http(service), sleep=sleeps)

    result = await geocoder.locate("14 rue des Tanneurs", STRASBOURG, "67000")

    assert result == GeocodeResult(
        lon=7.743112, lat=48.579845, score=0.9731, type="housenumber", label="14 Rue des Tanneurs 67000 Strasbourg"
    )
    [request] = service.requests
    assert (request.method, request.url.scheme, request.url.host, request.url.path) == (
        "GET",
        "https",
        "data.geopf.fr",
        "/geocodage/search",
    )
    assert dict(request.url.params) == {
        "q": "14 rue des Tanneurs",
        "index": "address",
        "limit": "5",
        "citycode": "67482",
        "postcode": "67000",
    }
    assert sleeps.calls == []


async def test_a_result_is_frozen(http: MakeClient) -> None:
    result = await Geocoder(http(Service([recorded("housenumber.json")]))).locate("14 rue des Tanneurs", STRASBOURG)
    assert result is not None
    with pytest.raises(FrozenInstanceError):
        result.lon = 0.0  # type: ignore[misc]


async def test_without_a_postal_code_none_is_sent(http: MakeClient) -> None:
    service = Service([recorded("housenumber.json")])
    await Geocoder(http(service)).locate("  14   rue des Tanneurs ", STRASBOURG)
    [request] = service.requests
    assert "postcode" not in request.url.params
    assert request.url.params["q"] == "14 rue des Tanneurs"


async def test_a_result_in_another_commune_is_refused(http: MakeClient) -> None:
    service = Service([recorded("other_commune.json")])
    assert await Geocoder(http(service)).locate("14 rue des Tanneurs", STRASBOURG) is None
    assert len(service.requests) == 1


async def test_a_low_score_is_refused(http: MakeClient) -> None:
    service = Service([recorded("low_score.json")])
    assert await Geocoder(http(service)).locate("impasse des tilleul", STRASBOURG) is None
    # The same answer passes with a lower bar: the refusal is the score's, not the shape's.
    lenient = Geocoder(http(Service([recorded("low_score.json")])), min_score=0.3)
    result = await lenient.locate("impasse des tilleul", STRASBOURG)
    assert result is not None
    assert (result.type, result.score) == ("street", 0.3127)


async def test_a_municipality_result_is_refused_even_with_a_street_ranked_after_it(http: MakeClient) -> None:
    service = Service([recorded("municipality.json")])
    assert await Geocoder(http(service)).locate("Mairie de Strasbourg", STRASBOURG) is None


async def test_no_feature_is_no_match(http: MakeClient) -> None:
    empty = httpx.Response(200, json={"type": "FeatureCollection", "features": []})
    assert await Geocoder(http(Service([empty]))).locate("1 chemin introuvable", STRASBOURG) is None


async def test_an_address_too_short_to_search_is_not_sent(http: MakeClient) -> None:
    service = Service([])
    assert await Geocoder(http(service)).locate(" a ", STRASBOURG) is None
    assert service.requests == []


async def test_paris_is_searched_by_postal_code_and_its_arrondissements_count(http: MakeClient) -> None:
    # The service files Paris addresses under arrondissement codes (75112): a citycode=75056 filter would
    # find none, so none is sent, and the Bagneux result ranked first is out of the commune.
    service = Service([recorded("paris_arrondissement.json")])
    result = await Geocoder(http(service)).locate("21 rue de Bercy", PARIS, "75012")
    assert result == GeocodeResult(
        lon=2.377208, lat=48.838491, score=0.8411, type="housenumber", label="21 Rue de Bercy 75012 Paris"
    )
    [request] = service.requests
    assert "citycode" not in request.url.params
    assert request.url.params["postcode"] == "75012"


async def test_an_arrondissement_code_is_sent_and_matched_as_it_is(http: MakeClient) -> None:
    service = Service([recorded("paris_arrondissement.json")])
    assert (await Geocoder(http(service)).locate("21 rue de Bercy", "75112")) is not None
    assert service.requests[0].url.params["citycode"] == "75112"
    # Another arrondissement of the same city is another place.
    other = Service([recorded("paris_arrondissement.json")])
    assert await Geocoder(http(other)).locate("21 rue de Bercy", "75104") is None


async def test_no_credentials_no_cookies_a_plain_user_agent(http: MakeClient) -> None:
    service = Service([recorded("housenumber.json")])
    shared = http(
        service,
        headers={"Authorization": "Bearer app-token", "User-Agent": "python-httpx/0.28.1"},
        cookies={"session": "abc"},
        auth=("user", "secret"),
    )
    await Geocoder(shared).locate("14 rue des Tanneurs", STRASBOURG)
    [request] = service.requests
    assert request.headers["User-Agent"] == "Maillage"
    assert "Authorization" not in request.headers
    assert "Cookie" not in request.headers


async def test_a_redirect_is_not_followed(http: MakeClient) -> None:
    moved = httpx.Response(302, headers={"Location": "https://elsewhere.example/search"})
    service = Service([moved, recorded("housenumber.json")])
    with pytest.raises(GeocodingUnavailable, match="answered 302"):
        await Geocoder(http(service, follow_redirects=True)).locate("14 rue des Tanneurs", STRASBOURG)
    assert [r.url.host for r in service.requests] == ["data.geopf.fr"]


async def test_a_429_with_retry_after_is_waited_out_then_retried(http: MakeClient, sleeps: Sleeps) -> None:
    limited = httpx.Response(429, headers={"Retry-After": "2"}, content=b"<html><h1>Erreur 429</h1></html>")
    service = Service([limited, recorded("housenumber.json")])

    result = await Geocoder(http(service), sleep=sleeps).locate("14 rue des Tanneurs", STRASBOURG)

    assert result is not None
    assert result.label == "14 Rue des Tanneurs 67000 Strasbourg"
    assert sleeps.calls == [2.0]
    assert len(service.requests) == 2
    assert service.requests[0].url == service.requests[1].url


async def test_retry_after_as_an_http_date(http: MakeClient, sleeps: Sleeps) -> None:
    limited = httpx.Response(429, headers={"Retry-After": "Tue, 03 Mar 2026 10:00:07 GMT"})
    service = Service([limited, recorded("housenumber.json")])
    geocoder = Geocoder(http(service), sleep=sleeps, now=lambda: datetime(2026, 3, 3, 10, 0, 4, tzinfo=UTC))
    assert await geocoder.locate("14 rue des Tanneurs", STRASBOURG) is not None
    assert sleeps.calls == [3.0]


async def test_a_503_three_times_is_unavailable_after_three_requests(http: MakeClient, sleeps: Sleeps) -> None:
    service = Service([httpx.Response(503) for _ in range(3)])
    with pytest.raises(GeocodingUnavailable) as raised:
        await Geocoder(http(service), sleep=sleeps).locate("14 rue des Tanneurs", STRASBOURG)
    assert len(service.requests) == 3
    assert sleeps.calls == [0.5, 1.0]  # exponential backoff, no wait after the last attempt
    assert raised.value.reason == "the geocoding service answered 503 on each of 3 attempts"
    assert raised.value.code == "geocoding_unavailable"
    assert "Tanneurs" not in raised.value.reason


async def test_a_retry_after_beyond_the_budget_gives_up_without_waiting(http: MakeClient, sleeps: Sleeps) -> None:
    service = Service([httpx.Response(429, headers={"Retry-After": "30"}), recorded("housenumber.json")])
    with pytest.raises(GeocodingUnavailable, match="would wait 30 s, more than the 10 s left"):
        await Geocoder(http(service), sleep=sleeps).locate("14 rue des Tanneurs", STRASBOURG)
    assert sleeps.calls == []
    assert len(service.requests) == 1


async def test_the_budget_counts_every_wait(http: MakeClient, sleeps: Sleeps) -> None:
    service = Service([httpx.Response(429, headers={"Retry-After": "6"})] * 2 + [recorded("housenumber.json")])
    with pytest.raises(GeocodingUnavailable, match="more than the 4 s left"):
        await Geocoder(http(service), sleep=sleeps).locate("14 rue des Tanneurs", STRASBOURG)
    assert sleeps.calls == [6.0]
    assert len(service.requests) == 2


@pytest.mark.parametrize("status", [400, 403, 404])
async def test_a_client_error_is_not_retried(http: MakeClient, sleeps: Sleeps, status: int) -> None:
    service = Service([httpx.Response(status, json={"code": status, "message": "q: must be 3 to 200 characters"})])
    with pytest.raises(GeocodingUnavailable, match=f"answered {status}$"):
        await Geocoder(http(service), sleep=sleeps).locate("14 rue des Tanneurs", STRASBOURG)
    assert len(service.requests) == 1
    assert sleeps.calls == []


async def test_a_transport_error_is_retried(http: MakeClient, sleeps: Sleeps) -> None:
    service = Service([httpx.ConnectError("connection refused"), recorded("housenumber.json")])
    result = await Geocoder(http(service), sleep=sleeps).locate("14 rue des Tanneurs", STRASBOURG)
    assert result is not None
    assert (result.lon, result.lat) == (7.743112, 48.579845)
    assert len(service.requests) == 2
    assert sleeps.calls == [0.5]


async def test_timeouts_every_time_are_unavailable(http: MakeClient, sleeps: Sleeps) -> None:
    service = Service([httpx.ReadTimeout("slow"), httpx.ConnectTimeout("slow"), httpx.ReadTimeout("slow")])
    with pytest.raises(GeocodingUnavailable) as raised:
        await Geocoder(http(service), sleep=sleeps).locate("14 rue des Tanneurs", STRASBOURG)
    assert raised.value.reason == "the geocoding service could not be reached (ReadTimeout) on the last of 3 attempts"
    assert len(service.requests) == 3


async def test_requests_carry_the_geocoder_timeouts(http: MakeClient) -> None:
    service = Service([recorded("housenumber.json")])
    await Geocoder(http(service, timeout=60.0)).locate("14 rue des Tanneurs", STRASBOURG)
    timeout = service.requests[0].extensions["timeout"]
    assert (timeout["connect"], timeout["read"]) == (2.0, 5.0)


async def test_the_default_client() -> None:
    client = default_client()
    try:
        assert (client.timeout.connect, client.timeout.read) == (2.0, 5.0)
        assert client.follow_redirects is False
        assert client.headers["User-Agent"] == "Maillage"
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    "body",
    [
        b"<html><body>Service indisponible</body></html>",
        b'{"type": "FeatureCollection", "features": {"0": {}}}',
        b'["not", "a", "collection"]',
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "geometry": {"type": "Point", "coordinates": [7.743112]},
                        "properties": {"label": "x", "score": 0.9, "type": "street", "citycode": "67482"},
                    }
                ],
            }
        ).encode(),
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "geometry": {"type": "Point", "coordinates": [7.743112, 48.579845]},
                        "properties": {"label": "x", "score": "0.9", "type": "street", "citycode": "67482"},
                    }
                ],
            }
        ).encode(),
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "geometry": {"type": "Point", "coordinates": [187.743112, 48.579845]},
                        "properties": {"label": "x", "score": 0.9, "type": "street", "citycode": "67482"},
                    }
                ],
            }
        ).encode(),
    ],
    ids=["html", "features-not-a-list", "not-an-object", "one-coordinate", "score-as-text", "longitude-out-of-range"],
)
async def test_a_malformed_answer_is_unavailable_and_not_retried(http: MakeClient, sleeps: Sleeps, body: bytes) -> None:
    service = Service([httpx.Response(200, content=body)])
    with pytest.raises(GeocodingUnavailable):
        await Geocoder(http(service), sleep=sleeps).locate("14 rue des Tanneurs", STRASBOURG)
    assert len(service.requests) == 1
    assert sleeps.calls == []
