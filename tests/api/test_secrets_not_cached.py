"""Secrets are not cached: every response that carries a secret says `Cache-Control: no-store` (and
`Pragma: no-cache` for HTTP/1.0 caches; RFC 6749 §5.1 for the token endpoint)."""

from __future__ import annotations

import base64

import httpx
from fastapi import FastAPI
from sqlmodel.ext.asyncio.session import AsyncSession

from directory import clients
from directory.access import Role
from tests import factories


def _assert_not_cached(response: httpx.Response) -> None:
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"


async def test_client_creation_and_rotation(client: httpx.AsyncClient, auth, session: AsyncSession) -> None:  # type: ignore[no-untyped-def]
    org = await factories.organisation(session, name="Asso au secret")
    admin = auth("admin")
    created = await client.post(
        "/v1/clients", headers=admin, json={"name": "SI", "role": "partner", "organisation_id": str(org.id)}
    )
    assert created.status_code == 201, created.text
    assert created.json()["client_secret"]
    _assert_not_cached(created)
    rotated = await client.post(f"/v1/clients/{created.json()['client_id']}/rotate", headers=admin)
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["client_secret"]
    _assert_not_cached(rotated)
    listed = await client.get("/v1/clients", headers=admin)
    assert "client_secret" not in listed.text


async def test_the_token_endpoint(client: httpx.AsyncClient, session: AsyncSession) -> None:
    org = await factories.organisation(session, name="Asso cliente")
    issued = await clients.create(session, name="SI", role=Role.partner, organisation_id=org.id)
    basic = base64.b64encode(f"{issued.client.id}:{issued.secret}".encode()).decode()
    response = await client.post(
        "/v1/auth/token",
        content="grant_type=client_credentials",
        headers={"Authorization": f"Basic {basic}", "content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["access_token"]
    _assert_not_cached(response)


async def test_webhook_subscription_creation(
    client: httpx.AsyncClient,
    app: FastAPI,
    auth,  # type: ignore[no-untyped-def]
    session: AsyncSession,
) -> None:
    async def public_address(host: str, port: int) -> list[str]:
        return ["93.184.215.14"]

    org = await factories.organisation(session, name="Asso abonnée")
    system_resolver = app.state.resolver  # the app is shared by the session: put it back afterwards
    try:
        app.state.resolver = public_address
        response = await client.post(
            "/v1/webhook-subscriptions",
            headers=auth("partner", org=org.id),
            json={"url": "https://partner.example/hook", "event_types": ["handoff.created"]},
        )
    finally:
        app.state.resolver = system_resolver
    assert response.status_code == 201, response.text
    assert response.json()["secret"]
    _assert_not_cached(response)
