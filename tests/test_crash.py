"""A crash in the middle of a burst: the API process is SIGKILLed while creating handoffs, then restarted.
Every creation acknowledged with a 201 must be in the database with its event and audit rows, and
nothing may be half-written. Retrying the unanswered requests with their keys creates no duplicate."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from api.app import build_token_service
from api.cluster import Cluster
from api.settings import Settings
from directory.access import Role
from tests.database import create_test_database, plain
from tests.processes import Server

# On a loaded 2-core machine a burst can queue for seconds: the test proves durability, not speed, so
# requests wait as long as they need (bounded concurrency, no pool timeout) instead of failing.
_TIMEOUT = httpx.Timeout(60.0, pool=None)
_LIMITS = httpx.Limits(max_connections=12, max_keepalive_connections=12)


@pytest.fixture
def crash_db(cluster: Cluster) -> Iterator[tuple[str, str]]:
    name = create_test_database(cluster, suffix="_crash")
    yield cluster.app_url(name), cluster.url(name)
    cluster.drop_database(name)


async def test_acknowledged_creations_survive_a_sigkill(crash_db: tuple[str, str], tmp_path: Path) -> None:
    app_url, owner_url = crash_db
    server = Server(app_url, tmp_path)
    tokens = build_token_service(Settings(var_dir=tmp_path))
    specialist = {"Authorization": "Bearer " + tokens.issue(subject="specialiste", role=Role.specialist)}
    admin = {"Authorization": "Bearer " + tokens.issue(subject="admin", role=Role.admin)}
    server.start()
    try:
        async with httpx.AsyncClient(base_url=server.base, timeout=_TIMEOUT, limits=_LIMITS) as client:
            org = (
                await client.post(
                    "/v1/organisations", headers=admin, json={"name": "Asso crash", "kind": "association"}
                )
            ).json()
            case = (
                await client.post(
                    "/v1/cases",
                    headers=specialist,
                    json={"age": 16, "residence_collectivite": "13D", "intake_channel": "chat", "caller": "minor"},
                )
            ).json()
            body = {
                "case_id": case["id"],
                "kind": "orientation",
                "to_organisation_id": org["id"],
                "beneficiary": "minor",
                "urgency": "within_24h",
                "legal_basis": "consent",
            }
            acknowledged: dict[str, str] = {}
            keys = [f"burst-{i}" for i in range(300)]
            gate = asyncio.Semaphore(12)

            async def create(key: str) -> None:
                async with gate:
                    try:
                        response = await client.post(
                            "/v1/handoffs", headers={**specialist, "Idempotency-Key": key}, json=body
                        )
                    except httpx.TransportError:
                        return
                    if response.status_code == 201:
                        acknowledged[key] = response.json()["id"]

            async def killer() -> None:
                while len(acknowledged) < 40:
                    await asyncio.sleep(0.005)
                server.kill()

            await asyncio.gather(killer(), *(create(key) for key in keys))
        assert 40 <= len(acknowledged) < len(keys), "the kill must land in the middle of the burst"

        with psycopg.connect(plain(owner_url)) as conn:
            stored = conn.execute(
                """SELECT h.id::text,
                          (SELECT count(*) FROM handoff_event e WHERE e.handoff_id = h.id AND e.from_status IS NULL),
                          (SELECT count(*) FROM audit_event a WHERE a.object_id = h.id AND a.action = 'handoff.create'),
                          (SELECT count(*) FROM idempotency_key k WHERE k.response->>'body' LIKE '%%' || h.id || '%%')
                     FROM handoff h WHERE h.case_id = %s""",
                (case["id"],),
            ).fetchall()
        rows = {row[0]: row[1:] for row in stored}
        assert set(acknowledged.values()) <= set(rows)  # every 201 survived
        assert all(counts == (1, 1, 1) for counts in rows.values())  # nothing half-written

        server.start()  # the restart: retry what went unanswered, with the same keys
        async with httpx.AsyncClient(base_url=server.base, timeout=_TIMEOUT, limits=_LIMITS) as client:
            retry_gate = asyncio.Semaphore(12)

            async def retry(key: str) -> httpx.Response:
                async with retry_gate:
                    return await client.post("/v1/handoffs", headers={**specialist, "Idempotency-Key": key}, json=body)

            retried = await asyncio.gather(*(retry(k) for k in keys))
        assert {r.status_code for r in retried} == {201}
        assert all(retried[keys.index(k)].json()["id"] == handoff for k, handoff in acknowledged.items())
        with psycopg.connect(plain(owner_url)) as conn:
            total = conn.execute("SELECT count(*) FROM handoff WHERE case_id = %s", (case["id"],)).fetchone()
        assert total == (len(keys),)  # one handoff per key, however often it was sent
    finally:
        if server.process and server.process.poll() is None:
            server.process.terminate()
            server.process.wait(timeout=10)
