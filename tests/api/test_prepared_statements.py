"""Searches run as server-side prepared statements by default, and never when the settings say a
pooler cannot carry them (PgBouncer < 1.21 in transaction mode)."""

from __future__ import annotations

import httpx
import pytest

from api.app import create_app
from api.cluster import Cluster
from api.settings import Settings
from directory.access import Role
from tests.database import create_test_database

SEARCH = "/v1/services/search?lat=45.764&lon=4.8357&specialism=emergency-shelter"


@pytest.mark.parametrize("prepared", [True, False])
async def test_searches_are_prepared_unless_the_settings_say_not(
    cluster: Cluster, settings: Settings, prepared: bool
) -> None:
    name = create_test_database(cluster, suffix="_prep")
    # One reader connection, so every search runs on the connection inspected below.
    app = create_app(
        settings.model_copy(
            update={"database_url": cluster.app_url(name), "db_pool_size": 1, "prepared_statements": prepared}
        )
    )
    try:
        async with app.router.lifespan_context(app):
            token = app.state.tokens.issue(subject="prep", role=Role.specialist)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://maillage.test") as client:
                for _ in range(7):  # psycopg prepares from the fifth run on a connection
                    response = await client.get(SEARCH, headers={"Authorization": f"Bearer {token}"})
                    assert response.status_code == 200, response.text
            async with app.state.reader.connection() as conn:
                assert conn.prepare_threshold == (5 if prepared else None)
                row = await (
                    await conn.execute(
                        "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE '%%bound AS%%'",
                        prepare=False,
                    )
                ).fetchone()
        assert row is not None
        assert (row[0] >= 1) is prepared, row
    finally:
        cluster.drop_database(name)
