"""API clients and the OAuth 2.0 client-credentials grant; revocation; rate limits."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime

import httpx
import jwt
import pytest
from fastapi import FastAPI
from psycopg import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from api.ratelimit import RateLimiter
from directory import clients
from directory.access import Role
from directory.models import Organisation
from tests import factories
from tests.api.test_listings import fingerprint

FORM = {"content-type": "application/x-www-form-urlencoded"}


def _basic(client_id: object, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode(), **FORM}


@pytest.fixture
async def partner_client(session: AsyncSession) -> clients.IssuedSecret:
    org = await factories.organisation(session, name="Asso cliente")
    return await clients.create(session, name="SI de l'asso", role=Role.partner, organisation_id=org.id)


async def _token(client: httpx.AsyncClient, issued: clients.IssuedSecret) -> httpx.Response:
    return await client.post(
        "/v1/auth/token", content="grant_type=client_credentials", headers=_basic(issued.client.id, issued.secret)
    )


async def test_client_credentials_grant(
    client: httpx.AsyncClient, app: FastAPI, partner_client: clients.IssuedSecret
) -> None:
    response = await _token(client, partner_client)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert (body["token_type"], body["expires_in"]) == ("Bearer", 900)
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert (claims["role"], claims["org"], claims["client_id"], claims["sub"]) == (
        "partner",
        str(partner_client.client.organisation_id),
        str(partner_client.client.id),
        str(partner_client.client.id),
    )
    principal = app.state.tokens.verify(body["access_token"])
    assert principal.client_id == partner_client.client.id


async def test_form_credentials_work_too(client: httpx.AsyncClient, partner_client: clients.IssuedSecret) -> None:
    response = await client.post(
        "/v1/auth/token",
        headers=FORM,
        content=(
            f"grant_type=client_credentials&client_id={partner_client.client.id}&client_secret={partner_client.secret}"
        ),
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("content", "headers", "status", "error"),
    [
        ("grant_type=password", None, 400, "unsupported_grant_type"),
        ("", None, 400, "invalid_request"),
        ('{"grant_type": "client_credentials"}', {"content-type": "application/json"}, 400, "invalid_request"),
        ("grant_type=client_credentials", {"Authorization": "Bearer abc", **FORM}, 401, "invalid_client"),
        ("grant_type=client_credentials", {"Authorization": "Basic !!!", **FORM}, 401, "invalid_client"),
        ("grant_type=client_credentials", FORM, 401, "invalid_client"),
        ("grant_type=client_credentials&client_id=not-a-uuid&client_secret=x", FORM, 401, "invalid_client"),
        # A NUL byte reaches no database (PostgreSQL text cannot hold one: it was a 500).
        ("grant_type=client_credentials&client_id=%00x&client_secret=x", FORM, 401, "invalid_client"),
    ],
)
async def test_malformed_token_requests(
    client: httpx.AsyncClient, content: str, headers: dict[str, str] | None, status: int, error: str
) -> None:
    response = await client.post("/v1/auth/token", content=content, headers=headers or FORM)
    assert response.status_code == status
    body = response.json()
    assert response.headers["content-type"] == "application/problem+json"
    assert (body["error"], body["code"]) == (error, error)


async def test_wrong_secret_and_unknown_client_answer_alike(
    client: httpx.AsyncClient, partner_client: clients.IssuedSecret
) -> None:
    wrong = await client.post(
        "/v1/auth/token", content="grant_type=client_credentials", headers=_basic(partner_client.client.id, "guess")
    )
    unknown = await client.post(
        "/v1/auth/token", content="grant_type=client_credentials", headers=_basic(uuid.uuid4(), partner_client.secret)
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert wrong.headers["www-authenticate"] == 'Basic realm="maillage"'


async def test_rotation_retires_the_old_secret(
    client: httpx.AsyncClient, session: AsyncSession, partner_client: clients.IssuedSecret
) -> None:
    rotated = await clients.rotate(session, partner_client.client.id)
    assert (await _token(client, partner_client)).status_code == 401
    assert (await _token(client, rotated)).status_code == 200


async def test_a_revoked_client_gets_no_token_and_can_no_longer_write(
    client: httpx.AsyncClient, session: AsyncSession, reader: AsyncConnection, partner_client: clients.IssuedSecret
) -> None:
    token = (await _token(client, partner_client)).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    body = {"name": "Accueil", "specialisms": ["legal-support"]}
    assert (await client.post("/v1/services", headers=headers, json=body)).status_code == 201
    await clients.revoke(session, partner_client.client.id)
    assert (await _token(client, partner_client)).status_code == 401
    before = await fingerprint(reader)
    refused = await client.post("/v1/services", headers=headers, json=body)
    assert refused.status_code == 401
    assert refused.json()["detail"] == "this API client has been revoked"
    assert await fingerprint(reader) == before


async def test_a_deactivated_organisation_gets_no_token(
    client: httpx.AsyncClient, session: AsyncSession, partner_client: clients.IssuedSecret
) -> None:
    organisation = await session.get(Organisation, partner_client.client.organisation_id)
    assert organisation is not None
    organisation.deactivated_at = datetime.now(UTC)
    await session.flush()
    assert (await _token(client, partner_client)).status_code == 401


async def test_admins_manage_clients_over_http(client: httpx.AsyncClient, auth, session: AsyncSession) -> None:  # type: ignore[no-untyped-def]
    org = await factories.organisation(session, name="Asso HTTP")
    admin = auth("admin")
    created = await client.post(
        "/v1/clients", headers=admin, json={"name": "SI", "role": "partner", "organisation_id": str(org.id)}
    )
    assert created.status_code == 201, created.text
    secret = created.json()["client_secret"]
    assert created.headers["location"] == f"http://maillage.test/v1/clients/{created.json()['client_id']}"
    read = await client.get(created.headers["location"], headers=admin)
    assert read.status_code == 200
    assert read.json()["client_id"] == created.json()["client_id"]
    assert "client_secret" not in read.json()
    assert (await client.get(created.headers["location"], headers=auth("specialist"))).status_code == 403
    assert (await client.get(f"/v1/clients/{uuid.uuid4()}", headers=admin)).status_code == 404
    listed = (await client.get("/v1/clients", headers=admin, params={"organisation_id": str(org.id)})).json()
    assert [c["client_id"] for c in listed] == [created.json()["client_id"]]
    assert "client_secret" not in listed[0]
    stored = await clients.list_(session, organisation_id=org.id)
    assert stored[0].secret_hash.startswith("$argon2")
    assert secret not in stored[0].secret_hash
    revoked = await client.post(f"/v1/clients/{created.json()['client_id']}/revoke", headers=admin)
    assert revoked.json()["revoked_at"] is not None
    rotated = await client.post(f"/v1/clients/{created.json()['client_id']}/rotate", headers=admin)
    assert rotated.status_code == 409
    assert rotated.json()["code"] == "conflict"
    bad = await client.post("/v1/clients", headers=admin, json={"name": "SI", "role": "partner"})
    assert bad.status_code == 422


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({"name": "SI", "role": "department", "collectivite_code": "0A"}, "/collectivite_code"),
        ({"name": "SI", "role": "department"}, "/department/collectivite_code"),
        ({"name": "SI", "role": "department", "collectivite_code": "75C", "organisation_id": None}, None),
        ({"name": "SI", "role": "admin", "collectivite_code": "75C"}, None),
        (
            {"name": "SI", "role": "partner", "organisation_id": "e3e70682-c209-1cac-a29f-6fbed82c07cd"},
            "/organisation_id",
        ),
        ({"name": "SI\u0007", "role": "admin"}, None),
    ],
)
async def test_a_client_gets_only_its_role_s_fields_and_real_references(
    client: httpx.AsyncClient,
    auth,  # type: ignore[no-untyped-def]
    session: AsyncSession,
    body: dict[str, object],
    pointer: str | None,
) -> None:
    """A field of another role is refused, not ignored; a code or organisation that does not exist is
    a 422 naming it (it was a 500 for an unknown collectivité); nothing is stored."""
    before = len(await clients.list_(session))
    response = await client.post("/v1/clients", headers=auth("admin"), json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    if pointer is not None:
        assert pointer in [error.get("pointer") for error in response.json()["errors"]]
    assert len(await clients.list_(session)) == before


async def test_write_rate_limit_is_per_subject(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth,  # type: ignore[no-untyped-def]
    session: AsyncSession,
    reader: AsyncConnection,
) -> None:
    app.state.write_limiter = RateLimiter(3, scope="write")
    try:
        org = await factories.organisation(session)
        svc = await factories.service(session, org)
        headers = auth("partner", org=org.id, subject="busy-client")
        statuses = [(await client.post(f"/v1/services/{svc.id}/verify", headers=headers)).status_code for _ in range(3)]
        assert statuses == [200, 200, 200]
        before = await fingerprint(reader)
        limited = await client.post(f"/v1/services/{svc.id}/verify", headers=headers)
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert limited.json()["code"] == "rate_limited"
        assert await fingerprint(reader) == before
        other = auth("partner", org=org.id, subject="another-client")
        assert (await client.post(f"/v1/services/{svc.id}/verify", headers=other)).status_code == 200
    finally:
        app.state.write_limiter = RateLimiter(app.state.settings.writes_per_minute, scope="write")


async def test_token_requests_are_rate_limited(
    app: FastAPI, client: httpx.AsyncClient, partner_client: clients.IssuedSecret
) -> None:
    app.state.token_limiter = RateLimiter(2, scope="token")
    try:
        assert [(await _token(client, partner_client)).status_code for _ in range(2)] == [200, 200]
        limited = await _token(client, partner_client)
        assert limited.status_code == 429
        assert "retry-after" in limited.headers
    finally:
        app.state.token_limiter = RateLimiter(app.state.settings.token_requests_per_minute, scope="token")
