"""HTTP semantics across the API: a 405's `Allow` names every method of the path (RFC 9110 §15.5.6),
statistics negotiate CSV or JSON with q-values (RFC 9110 §12.5.1), and a JSON body that cannot be
decoded — malformed or not UTF-8 — gets one answer."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests import factories

ID = "00000000-0000-4000-8000-000000000000"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("POST", f"/v1/services/{ID}", "GET, PATCH, DELETE"),
        ("PUT", f"/v1/locations/{ID}", "GET, PATCH, DELETE"),
        ("DELETE", f"/v1/cases/{ID}", "GET, PATCH"),
        ("DELETE", "/v1/handoffs", "GET, POST"),
        ("POST", f"/v1/handoffs/{ID}/assignees", "GET, PUT"),
        ("PATCH", "/v1/territories/resolve", "GET, POST"),
        ("DELETE", "/v1/departements", "GET"),
        ("POST", "/healthz", "GET"),
        ("PUT", "/openapi.json", "GET, HEAD"),  # Starlette's own routes serve HEAD; FastAPI's do not
    ],
)
async def test_a_405_allows_every_method_of_the_path(
    client: httpx.AsyncClient, specialist: dict[str, str], method: str, path: str, allow: str
) -> None:
    response = await client.request(method, path, headers=specialist)
    assert response.status_code == 405, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "method_not_allowed"
    assert response.headers["allow"] == allow


JSON, CSV = "application/json", "text/csv"


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        (None, JSON),
        ("", JSON),
        ("*/*", JSON),
        ("application/json", JSON),
        ("text/csv", CSV),
        ("text/csv;q=0.5, application/json", JSON),
        ("application/json;q=0.4, text/csv;q=0.5", CSV),
        ("text/csv, application/json", CSV),  # equal q: the caller's first
        ("application/json, text/csv", JSON),
        ("text/*", CSV),
        ("text/*;q=0.9, */*;q=0.1", CSV),
        ("application/*", JSON),
        ("text/csv, */*", CSV),  # equal q: the more specific range
        ("*/*;q=0.8, text/csv;q=0.8", CSV),
        ("text/csv;q=0, */*", JSON),
        ("application/json;q=0, */*;q=0.1", CSV),
        ("TEXT/CSV; Q=1", CSV),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", JSON),  # a browser
        ("nonsense", JSON),  # no range parses: as if no Accept
        (CSV + ";q=2, application/json;q=0.1", JSON),  # an invalid q: that range is ignored
        ("text/html", None),
        ("application/json;q=0, text/csv;q=0", None),
        ("text/csv;q=0, application/json;q=0.0, */*;q=0", None),
        ("application/problem+json", None),
    ],
)
async def test_statistics_negotiate_csv_or_json(
    client: httpx.AsyncClient,
    auth,  # type: ignore[no-untyped-def]
    accept: str | None,
    chosen: str | None,
) -> None:
    headers = auth("department", collectivite="93D", subject=f"analyst-{uuid.uuid4()}")
    if accept is not None:
        headers["Accept"] = accept
    response = await client.get("/v1/stats/handoffs", params={"from": "2025-01", "to": "2025-03"}, headers=headers)
    assert response.headers["vary"] == "Accept"
    if chosen is None:
        assert response.status_code == 406, response.text
        assert response.headers["content-type"] == "application/problem+json"
        body = response.json()
        assert body["code"] == "not_acceptable"
        assert body["offered"] == [JSON, CSV]
        assert body["detail"] == "this resource is available as application/json, text/csv"
        return
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].split(";")[0] == chosen


@pytest.mark.parametrize(
    "content",
    [b'{"age": 15,,', b"\xe9t\xe9", b'{"age": 15, "note": "\xe9"}', b"\xff\xfe\xfa{\x80\x81}", b"\xc3"],
)
async def test_an_undecodable_body_is_one_422_whatever_the_reason(
    client: httpx.AsyncClient, specialist: dict[str, str], content: bytes
) -> None:
    """Malformed JSON and bytes that are not UTF-8 are the same fault: the body is not JSON text."""
    response = await client.post(
        "/v1/cases", content=content, headers={**specialist, "content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "invalid_request"
    assert body["detail"] == "/: the body is not valid JSON"
    assert body["errors"] == [{"in": "body", "pointer": "/", "message": "the body is not valid JSON"}]


@pytest.mark.parametrize("content", [b'{"age": 15,,', b"\xe9t\xe9"])
async def test_an_undecodable_body_without_a_token_is_still_a_401(client: httpx.AsyncClient, content: bytes) -> None:
    response = await client.post("/v1/cases", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 401
    assert response.json()["code"] == "unauthenticated"


async def test_a_well_formed_case_is_still_created(client: httpx.AsyncClient, specialist: dict[str, str]) -> None:
    created = await factories.case(client, specialist)
    assert created["id"]
