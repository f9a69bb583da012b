"""Authentication first (DESIGN §3): without a valid token, every /v1 operation answers 401 — before a
428, 400, 413 or 422, whatever the body, the query, the path or the preconditions — and refusals on
case data are still journalled."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest
from fastapi import FastAPI
from psycopg import AsyncConnection

from api.app import public_operations, route_policies
from api.settings import Settings
from tests import factories

# Path parameters that are not UUIDs, by route: valid codes (a wrong one must not matter either).
_CODES = {"/v1/departements/{code}": "93", "/v1/collectivites/{code}": "93D", "/v1/collectivites/{code}/crip": "93D"}


def _operations(app: FastAPI) -> list[tuple[str, str]]:
    return sorted(
        (method, path) for (method, path), roles in route_policies(app).items() if path.startswith("/v1") and roles
    )


def _url(path: str) -> str:
    return re.sub(r"\{[a-z_]+\}", lambda _: _CODES.get(path) or str(uuid.uuid4()), path)


def _assert_401(response: httpx.Response, *, token_presented: bool) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "unauthenticated"
    challenge = 'Bearer realm="maillage", error="invalid_token"' if token_presented else 'Bearer realm="maillage"'
    assert response.headers["www-authenticate"] == challenge


def test_every_v1_operation_but_the_token_endpoint_needs_a_token(base_app: FastAPI) -> None:
    operations = _operations(base_app)
    assert len(operations) > 50
    is_public = public_operations(base_app)
    assert [(m, p) for (m, p), roles in route_policies(base_app).items() if roles == frozenset()] == [
        ("POST", "/v1/auth/token")
    ]
    assert is_public("POST", "/v1/auth/token")
    assert not is_public("GET", "/v1/auth/token")
    assert not any(is_public(method, _url(path)) for method, path in operations)


# Bodies no route would accept: not JSON, not UTF-8, or large (just under and just over the cap).
_CAP = Settings().max_body_bytes
BODIES = {
    "none": None,
    "garbage": b'{"age": 12,,, "x": [',
    "not utf-8": b"\xff\xfe\xfa{\x80\x81}",
    "under the cap": b'{"note": "' + b"\xc3\xa9" * ((_CAP - 64) // 2) + b'"',
    "over the cap": b"[" + b"1," * _CAP + b"1]",
}
TOKENS = {
    "no token": None,
    "malformed token": "Bearer not.a.jwt",
    "wrong scheme": "Basic dXNlcjpwYXNz",
    "empty bearer": "Bearer ",
}


@pytest.mark.parametrize("token", sorted(TOKENS))
@pytest.mark.parametrize("body", sorted(BODIES))
async def test_every_operation_answers_401_before_anything_else(
    client: httpx.AsyncClient, app: FastAPI, body: str, token: str
) -> None:
    headers = {"content-type": "application/json"}
    if TOKENS[token] is not None:
        headers["authorization"] = TOKENS[token]
    # No If-Match, no Idempotency-Key; page parameters out of range and a forged cursor.
    params = {"limit": "0", "cursor": "forged.cursor", "lat": "999"}
    for method, path in _operations(app):
        response = await client.request(method, _url(path), params=params, headers=headers, content=BODIES[body])
        assert response.status_code == 401, f"{method} {path}: {response.status_code} {response.text[:200]}"
        _assert_401(response, token_presented=TOKENS[token] is not None)


async def test_path_parameters_that_do_not_parse_are_still_a_401(client: httpx.AsyncClient, app: FastAPI) -> None:
    for method, path in _operations(app):
        url = re.sub(r"\{[a-z_]+\}", "not-an-id", path)
        _assert_401(await client.request(method, url), token_presented=False)


async def test_the_refusal_is_still_journalled_on_case_data(client: httpx.AsyncClient, reader: AsyncConnection) -> None:
    case_id = uuid.uuid4()
    response = await client.patch(
        f"/v1/cases/{case_id}", content=b"\xff not json", headers={"content-type": "application/merge-patch+json"}
    )
    _assert_401(response, token_presented=False)
    rows = await (
        await reader.execute(
            "SELECT action, actor_subject, outcome, status_code FROM audit_event WHERE object_id = %s", (case_id,)
        )
    ).fetchall()
    assert rows == [("case.update", "anonymous", "denied", 401)]


async def test_an_authenticated_caller_still_gets_the_precondition_and_validation_errors(
    client: httpx.AsyncClient, specialist: dict[str, str]
) -> None:
    # Scope before preconditions: a case that is not there is a 404 whatever the headers say.
    nowhere = await client.patch(f"/v1/cases/{uuid.uuid4()}", headers=specialist, json={"age": 12})
    assert nowhere.status_code == 404
    case = await factories.case(client, specialist)
    missing_if_match = await client.patch(f"/v1/cases/{case['id']}", headers=specialist, json={"age": 12})
    assert missing_if_match.status_code == 428
    stale_and_invalid = await client.patch(
        f"/v1/cases/{case['id']}", headers={**specialist, "If-Match": '"99"'}, json={"age": "douze"}
    )
    assert stale_and_invalid.status_code == 422  # the body is parsed by the framework, before any row
    stale = await client.patch(
        f"/v1/cases/{case['id']}",
        headers={**specialist, "If-Match": '"99"'},
        json={"residence_collectivite": "99Z"},
    )
    assert stale.status_code == 412  # the precondition before the data-dependent validation
    garbage = await client.post("/v1/territories/resolve", headers=specialist, content=b"{,", params={})
    assert garbage.status_code == 422
    too_large = await client.post(
        "/v1/territories/resolve",
        headers={**specialist, "content-type": "application/json"},
        content=BODIES["over the cap"],
    )
    assert too_large.status_code == 413


async def test_the_token_endpoint_reads_its_form_without_a_bearer_token(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/auth/token",
        content="grant_type=password",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


async def test_a_valid_token_is_verified_once_and_used_by_the_policy(
    client: httpx.AsyncClient, app: FastAPI, specialist: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    verify = app.state.tokens.verify

    def counting(token: str):  # type: ignore[no-untyped-def]
        calls.append(token)
        return verify(token)

    monkeypatch.setattr(app.state.tokens, "verify", counting)
    response = await client.get("/v1/specialisms", headers=specialist)
    assert response.status_code == 200
    assert len(calls) == 1
