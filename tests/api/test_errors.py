"""Every error is RFC 9457 problem+json with a stable code; no input produces a 500."""

import httpx
import pytest
from fastapi import FastAPI
from psycopg import AsyncConnection

from api.db import get_reader


def _assert_problem(response: httpx.Response, status: int, code: str) -> dict:  # type: ignore[type-arg]
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == f"/problems/{code}"
    assert {"type", "title", "status", "detail", "code"} <= set(body)
    return body


async def test_unknown_route_is_a_404_problem(client: httpx.AsyncClient) -> None:
    _assert_problem(await client.get("/v1/nothing-here"), 404, "not_found")


async def test_wrong_method_is_a_405_problem_with_allow(client: httpx.AsyncClient, specialist: dict) -> None:  # type: ignore[type-arg]
    response = await client.delete("/v1/departements", headers=specialist)
    _assert_problem(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "GET"


async def test_body_over_the_cap_is_413_before_reading(client: httpx.AsyncClient, specialist: dict) -> None:  # type: ignore[type-arg]
    content = b'{"points": [' + b'{"lat": 45.0, "lon": 2.0},' * 20000 + b'{"lat": 45.0, "lon": 2.0}]}'
    response = await client.post(
        "/v1/territories/resolve", content=content, headers={**specialist, "content-type": "application/json"}
    )
    _assert_problem(response, 413, "payload_too_large")


async def test_chunked_body_over_the_cap_is_413(client: httpx.AsyncClient, specialist: dict) -> None:  # type: ignore[type-arg]
    async def chunks():  # type: ignore[no-untyped-def]
        yield b'{"points": ['
        for _ in range(20000):
            yield b'{"lat": 45.0, "lon": 2.0},'
        yield b'{"lat": 45.0, "lon": 2.0}]}'

    response = await client.post(
        "/v1/territories/resolve", content=chunks(), headers={**specialist, "content-type": "application/json"}
    )
    _assert_problem(response, 413, "payload_too_large")


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not json",
        b'{"points": [',
        b"\xff\xfe",
        b'{"points": [{"lat": 1e400, "lon": 2}]}',
        b'{"points": [{"lat": 45, "lon": 2, "\\ud800": 1}]}',
        b"[1, 2]",
        b'"points"',
        b"{" * 10000,
    ],
)
async def test_malformed_json_is_422_never_500(client: httpx.AsyncClient, specialist: dict, content: bytes) -> None:  # type: ignore[type-arg]
    response = await client.post(
        "/v1/territories/resolve", content=content, headers={**specialist, "content-type": "application/json"}
    )
    _assert_problem(response, 422, "invalid_request")


async def test_validation_problems_never_echo_the_input(client: httpx.AsyncClient, specialist: dict) -> None:  # type: ignore[type-arg]
    response = await client.get(
        "/v1/territories/resolve", params={"lat": "48.8566123", "lon": "999.123456"}, headers=specialist
    )
    body = _assert_problem(response, 422, "invalid_request")
    assert "999.123456" not in response.text
    assert "48.8566123" not in response.text
    assert body["errors"] == [{"in": "query", "name": "lon", "message": "Input should be less than or equal to 180"}]


@pytest.mark.parametrize("query", ["q=%00%00", "q=%ff%fe", "q=%ED%A0%80abc", "q=" + "%e9" * 3])
async def test_odd_bytes_in_the_query_string_never_500(client: httpx.AsyncClient, specialist: dict, query: str) -> None:  # type: ignore[type-arg]
    response = await client.get(f"/v1/communes?{query}", headers=specialist)
    assert response.status_code in (200, 422)
    if response.status_code == 422:
        _assert_problem(response, 422, "invalid_request")


async def test_path_traversal_and_huge_ids_are_not_500(client: httpx.AsyncClient, specialist: dict) -> None:  # type: ignore[type-arg]
    for path in ["/v1/departements/..%2f..%2fetc", "/v1/collectivites/" + "9" * 10000, "/v1/departements/%00"]:
        response = await client.get(path, headers=specialist)
        assert response.status_code in (404, 422)
        assert response.headers["content-type"] == "application/problem+json"


async def test_a_database_outage_is_503_with_retry_after(
    app: FastAPI, client: httpx.AsyncClient, specialist: dict
) -> None:  # type: ignore[type-arg]
    from psycopg_pool import PoolTimeout

    async def unavailable():  # type: ignore[no-untyped-def]
        raise PoolTimeout("no connection")
        yield  # pragma: no cover

    app.dependency_overrides[get_reader] = unavailable
    response = await client.get("/v1/territories/resolve", params={"lat": 45, "lon": 2}, headers=specialist)
    body = _assert_problem(response, 503, "unavailable")
    assert response.headers["retry-after"] == "2"
    assert "PoolTimeout" not in body["detail"]


async def test_a_statement_timeout_is_503_not_500(
    client: httpx.AsyncClient, specialist: dict, reader: AsyncConnection
) -> None:  # type: ignore[type-arg]
    await reader.execute(
        "CREATE OR REPLACE FUNCTION pg_temp.slow() RETURNS void LANGUAGE sql AS 'SELECT pg_sleep(0.05)'"
    )
    await reader.execute("SET LOCAL statement_timeout = '1ms'")  # after: on a loaded machine 1 ms is little
    response = await client.post(
        "/v1/territories/resolve", json={"points": [{"lat": 45, "lon": 2}] * 1000}, headers=specialist
    )
    _assert_problem(response, 503, "unavailable")


async def test_every_response_carries_a_request_id(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert len(response.headers["x-request-id"]) == 32
    echoed = await client.get("/healthz", headers={"X-Request-ID": "abc-123-def-456"})
    assert echoed.headers["x-request-id"] == "abc-123-def-456"
    refused = await client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
    assert refused.headers["x-request-id"] != "bad id\twith spaces"


async def test_an_unknown_member_whose_name_is_free_text_is_not_echoed(
    client: httpx.AsyncClient,
    specialist: dict,  # type: ignore[type-arg]
) -> None:
    """A key is the caller's text too: a name, a phone number or a birth date typed as a member name
    never comes back; a member that looks like a field name is still named, to help the caller."""
    case = await client.post(
        "/v1/cases",
        headers=specialist,
        json={"age": 15, "residence_collectivite": "93D", "intake_channel": "phone", "caller": "parent"},
    )
    assert case.status_code == 201, case.text
    url = f"/v1/cases/{case.json()['id']}/events"
    leaky = await client.post(
        url, headers=specialist, json={"kind": "note", "note": "x", "Léa née le 03/04/2010 tel 0612345678": 1}
    )
    body = _assert_problem(leaky, 422, "invalid_request")
    for fragment in ("0612345678", "03/04/2010", "03~104", "Léa", "L\\u00e9a"):
        assert fragment not in leaky.text
    assert body["errors"][0]["pointer"] == "/"
    named = await client.post(url, headers=specialist, json={"kind": "note", "note": "x", "status": "closed"})
    assert _assert_problem(named, 422, "invalid_request")["errors"][0]["pointer"] == "/status"


async def test_v1_answers_are_never_cached(client: httpx.AsyncClient, specialist: dict) -> None:  # type: ignore[type-arg]
    for url in ("/v1/services/search?commune=93008", "/v1/departements", "/v1/nothing-here"):
        response = await client.get(url, headers=specialist)
        assert response.headers["cache-control"] == "no-store", url
    assert "cache-control" not in (await client.get("/healthz")).headers


async def test_refused_values_are_not_echoed(client: httpx.AsyncClient, specialist: dict) -> None:  # type: ignore[type-arg]
    search = await client.get(
        "/v1/services/search", headers=specialist, params={"commune": "15187", "specialism": "0612345678"}
    )
    assert _assert_problem(search, 422, "invalid_request")["errors"][0]["name"] == "specialism"
    case = await client.post(
        "/v1/cases",
        headers=specialist,
        json={
            "age": 15,
            "residence_collectivite": "93D",
            "intake_channel": "phone",
            "caller": "parent",
            "needs": ["jeanne.dupont@example.org"],
        },
    )
    assert _assert_problem(case, 422, "invalid_request")["errors"][0]["pointer"] == "/needs/0"
    path = await client.get("/v1/cases/zz-secret-name", headers=specialist)
    for response, secret in ((search, "0612345678"), (case, "jeanne"), (path, "`z`")):
        assert secret not in response.text
