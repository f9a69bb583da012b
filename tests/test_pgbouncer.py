"""Behind PgBouncer in transaction mode (Debian 12's 1.18, started here): the API works, with its session
settings from the role's defaults and no server-side prepared statement."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import httpx
import psycopg
import pytest
from fastapi import FastAPI

from api.app import create_app
from api.cluster import Cluster
from api.db import make_engine
from api.jobs import expire_handoffs
from api.metrics import DatabaseCollector
from api.pooler import PgBouncer
from api.settings import Settings
from directory.access import Role
from tests import factories
from tests.database import create_test_database, plain


@pytest.fixture
def bouncer(cluster: Cluster) -> Iterator[PgBouncer]:
    name = create_test_database(cluster, suffix="_pgbouncer")
    try:
        with PgBouncer(cluster, name, pool_size=4) as running:
            yield running
    finally:
        cluster.drop_database(name)


@pytest.fixture
async def pooled(bouncer: PgBouncer, settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(
        settings.model_copy(
            update={
                "database_url": bouncer.app_url,
                "startup_options": False,
                "prepared_statements": False,
                "db_pool_size": 6,  # more connections than PgBouncer's pool: they share its 4
                "stats_queries_per_minute": 3,
                "public_base_url": "http://maillage.pooled",
            }
        )
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://maillage.pooled") as client:
            yield app, client


def test_pgbouncer_refuses_the_startup_options_and_the_role_defaults_apply(bouncer: PgBouncer) -> None:
    """Why `startup_options` can be turned off, and what applies instead."""
    with pytest.raises(psycopg.OperationalError, match="options"):
        psycopg.connect(plain(bouncer.app_url), options="-c jit=off").close()
    with psycopg.connect(plain(bouncer.app_url), autocommit=True) as conn:
        settings = {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in ("statement_timeout", "jit")}  # type: ignore[index]
        zone = conn.execute("SHOW timezone").fetchone()
    assert settings == {"statement_timeout": "5s", "jit": "off"}
    assert zone == ("UTC",)


async def test_the_api_works_behind_pgbouncer_in_transaction_mode(
    pooled: tuple[FastAPI, httpx.AsyncClient], bouncer: PgBouncer
) -> None:
    app, client = pooled

    def token(role: Role, **scope: object) -> dict[str, str]:
        return {"Authorization": "Bearer " + app.state.tokens.issue(subject=f"{role}-p", role=role, **scope)}  # type: ignore[arg-type]

    assert (await client.get("/readyz")).json()["status"] == "ready"
    # More than psycopg's prepare threshold (5) on every connection: a prepared statement would be
    # looked up on another server connection and fail.
    for _ in range(12):
        resolved = await client.get(
            "/v1/territories/resolve", params={"lat": 45.764, "lon": 4.8357}, headers=token(Role.specialist)
        )
        assert resolved.status_code == 200, resolved.text
        assert resolved.json()["commune"]["code"] == "69123"

    # Writes through sessions (transactions), with their triggers and versions.
    admin, specialist = token(Role.admin), token(Role.specialist)
    org = await client.post("/v1/organisations", headers=admin, json={"name": "Asso poolée", "kind": "association"})
    assert org.status_code == 201, org.text
    partner = token(Role.partner, organisation_id=org.json()["id"])
    service = await client.post("/v1/services", headers=partner, json={"name": "Accueil", "specialisms": ["outreach"]})
    assert service.status_code == 201, service.text
    case = await factories.case(client, specialist)
    handoff = await factories.handoff(client, specialist, case_id=case["id"], to_organisation_id=org.json()["id"])
    moved = await factories.move(client, partner, handoff["id"], "acknowledged")
    assert moved["status"] == "acknowledged"
    for _ in range(8):
        search = await client.get(
            "/v1/services/search", params={"lat": 48.9362, "lon": 2.3574, "radius_km": 20}, headers=specialist
        )
        assert search.status_code == 200, search.text

    # Rate limits hold through the pooler too (their lock lives in one transaction).
    analyst = token(Role.department, collectivite_code="93D")
    statuses = [
        (
            await client.get("/v1/stats/handoffs", params={"from": "2025-01", "to": "2025-03"}, headers=analyst)
        ).status_code
        for _ in range(4)
    ]
    assert statuses == [200, 200, 200, 429]

    # The worker's tasks and the metrics' reads, with the same settings, through the same pooler.
    overdue = await factories.handoff(client, specialist, case_id=case["id"], to_organisation_id=org.json()["id"])
    with psycopg.connect(plain(bouncer.cluster.url(bouncer.database)), autocommit=True) as owner:
        owner.execute("UPDATE handoff SET acknowledge_by = now() - interval '2 hours' WHERE id = %s", (overdue["id"],))
    engine = make_engine(
        bouncer.app_url, pool_size=2, statement_timeout_ms=60_000, startup_options=False, prepared_statements=False
    )
    try:
        for run in range(6):  # past psycopg's prepare threshold
            flagged, expired = await expire_handoffs(engine, grace=timedelta(hours=1))
            assert (flagged, expired) == ((1, 1) if run == 0 else (0, 0))
    finally:
        await engine.dispose()
    scraped = {metric.name: metric for metric in DatabaseCollector(bouncer.app_url, app.state.settings).collect()}
    assert scraped["maillage_metrics_database_up"].samples[0].value == 1
    assert "maillage_jobs" in scraped

    with psycopg.connect(plain(bouncer.app_url), autocommit=True) as conn:
        stored = conn.execute(
            "SELECT id::text, status FROM handoff WHERE id = ANY(%s::uuid[]) ORDER BY status",
            ([handoff["id"], overdue["id"]],),
        ).fetchall()
    assert stored == [(handoff["id"], "acknowledged"), (overdue["id"], "expired")]
