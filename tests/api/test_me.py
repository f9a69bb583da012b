"""GET /v1/me: who the caller is as the API sees them, per role — and nothing more of the token."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import httpx
from fastapi import FastAPI
from psycopg import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from api.schemas import Me
from directory.access import Role
from tests import factories

HOTLINE = "119 — Allô Enfance en Danger, cellule exploitation sexuelle des mineurs"


async def _me(client: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
    response = await client.get("/v1/me", headers=headers)
    assert response.headers["cache-control"] == "no-store"
    return response


async def test_a_specialist_acts_for_the_119(
    client: httpx.AsyncClient, specialist: dict[str, str], reader: AsyncConnection
) -> None:
    row = await (await reader.execute("SELECT id FROM organisation WHERE seed_key = 'hotline:119'")).fetchone()
    assert row is not None
    response = await _me(client, specialist)
    assert response.status_code == 200
    assert response.json() == {
        "role": "specialist",
        "organisation": {"id": str(row[0]), "name": HOTLINE, "active": True},
        "collectivite": None,
    }
    Me.model_validate(response.json())


async def test_a_partner_acts_for_its_organisation(client: httpx.AsyncClient, auth, session: AsyncSession) -> None:  # type: ignore[no-untyped-def]
    organisation = await factories.organisation(session, name="Association du Bout du Quai")
    response = await _me(client, auth("partner", org=organisation.id, subject="sys-quai"))
    assert response.status_code == 200
    assert response.json() == {
        "role": "partner",
        "organisation": {"id": str(organisation.id), "name": "Association du Bout du Quai", "active": True},
        "collectivite": None,
    }


async def test_a_partner_of_a_deactivated_organisation_is_told_so(
    client: httpx.AsyncClient,
    auth,  # type: ignore[no-untyped-def]
    session: AsyncSession,
) -> None:
    """Its token, issued before the deactivation, stays valid until it expires (15 minutes at most), as on
    every other read; no new one is issued (tests/api/test_clients.py)."""
    organisation = await factories.organisation(session, name="Association fermée")
    organisation.deactivated_at = datetime.now(UTC)
    await session.flush()
    response = await _me(client, auth("partner", org=organisation.id))
    assert response.status_code == 200
    assert response.json()["organisation"] == {
        "id": str(organisation.id),
        "name": "Association fermée",
        "active": False,
    }


async def test_a_token_naming_no_organisation_shows_it_unnamed_and_inactive(client: httpx.AsyncClient, auth) -> None:  # type: ignore[no-untyped-def]
    unknown = uuid.uuid4()
    response = await _me(client, auth("partner", org=unknown))
    assert response.status_code == 200
    assert response.json()["organisation"] == {"id": str(unknown), "name": None, "active": False}


async def test_a_department_reads_for_its_collectivite(client: httpx.AsyncClient, auth) -> None:  # type: ignore[no-untyped-def]
    for code, name in (("93D", "Département de la Seine-Saint-Denis"), ("69M", "Métropole de Lyon")):
        response = await _me(client, auth("department", collectivite=code))
        assert response.status_code == 200
        assert response.json() == {
            "role": "department",
            "organisation": None,
            "collectivite": {"code": code, "name": name},
        }
    unknown = await _me(client, auth("department", collectivite="99Z"))
    assert unknown.json()["collectivite"] == {"code": "99Z", "name": None}


async def test_an_admin_acts_for_no_organisation(client: httpx.AsyncClient, auth) -> None:  # type: ignore[no-untyped-def]
    response = await _me(client, auth("admin", subject="operator-1"))
    assert response.status_code == 200
    assert response.json() == {"role": "admin", "organisation": None, "collectivite": None}


async def test_nothing_else_of_the_token_comes_back(client: httpx.AsyncClient, auth) -> None:  # type: ignore[no-untyped-def]
    response = await _me(client, auth("partner", org=uuid.uuid4(), subject="a-very-particular-subject"))
    assert "a-very-particular-subject" not in response.text
    assert "maillage.local" not in response.text  # no issuer
    assert set(response.json()) == {"role", "organisation", "collectivite"}


async def test_me_needs_a_valid_token(client: httpx.AsyncClient, app: FastAPI) -> None:
    token = app.state.tokens.issue(subject="late", role=Role.admin, ttl=60, now=time.time() - 3600)
    expired = {"Authorization": f"Bearer {token}"}
    for headers in ({}, {"Authorization": "Bearer not-a-token"}, expired):
        response = await client.get("/v1/me", headers=headers)
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"].startswith('Bearer realm="maillage"')
        assert response.json()["code"] == "unauthenticated"
