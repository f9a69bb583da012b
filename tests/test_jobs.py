"""Work that runs on its own (api/jobs.py), with real `maillage worker` processes on a real database:
overdue handoffs expire and their webhooks leave with no cron; two workers never do one job twice;
a worker SIGKILLed in the middle of a job loses nothing and the expiry happens exactly once."""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from sqlmodel.ext.asyncio.session import AsyncSession

from api.app import create_app
from api.cluster import Cluster
from api.settings import Settings
from directory.access import Role
from sync import subscriptions
from tests.database import create_test_database, plain
from tests.processes import Worker, wait_for


class Receiver:
    """A partner's webhook endpoint on the loopback: what it was sent, by webhook-id."""

    def __init__(self) -> None:
        received: list[tuple[str, dict[str, Any]]] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["content-length"]))
                received.append((self.headers["webhook-id"], json.loads(body)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Setup:
    def __init__(self, app: FastAPI, client: httpx.AsyncClient, app_url: str, owner_url: str, var: Path) -> None:
        self.app, self.client, self.app_url, self.owner_url, self.var = app, client, app_url, owner_url, var

    def token(self, role: Role, **scope: Any) -> dict[str, str]:
        return {"Authorization": "Bearer " + self.app.state.tokens.issue(subject=f"{role}-1", role=role, **scope)}

    def sql(self, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
        with psycopg.connect(plain(self.owner_url), autocommit=True) as conn:
            cursor = conn.execute(statement, params)
            return cursor.fetchall() if cursor.description else []

    async def partner_with_webhook(self, url: str) -> str:
        org = await self.client.post(
            "/v1/organisations", headers=self.token(Role.admin), json={"name": "Asso relais", "kind": "association"}
        )
        assert org.status_code == 201, org.text
        # Through the module, not the API: the API takes https endpoints only, this one is plain loopback.
        async with AsyncSession(self.app.state.engine, expire_on_commit=False) as session:
            await subscriptions.create(
                session,
                organisation_id=uuid.UUID(org.json()["id"]),
                url=url,
                event_types=["handoff.created", "handoff.overdue", "handoff.transitioned"],
                created_by="test",
                box=self.app.state.secret_box,
                resolve=self.app.state.resolver,
                allow_loopback=True,
            )
            await session.commit()
        return str(org.json()["id"])

    async def overdue_handoffs(self, organisation_id: str, count: int, *, request_id: str) -> list[str]:
        """Handoffs to the organisation whose acknowledgement deadline passed two hours ago."""
        specialist = self.token(Role.specialist)
        case = await self.client.post(
            "/v1/cases",
            headers=specialist,
            json={"age": 15, "residence_collectivite": "93D", "intake_channel": "phone", "caller": "parent"},
        )
        assert case.status_code == 201, case.text
        ids = []
        for i in range(count):
            response = await self.client.post(
                "/v1/handoffs",
                headers={**specialist, "Idempotency-Key": f"{request_id}-{i}", "X-Request-Id": f"{request_id}-{i}"},
                json={
                    "case_id": case.json()["id"],
                    "kind": "orientation",
                    "to_organisation_id": organisation_id,
                    "beneficiary": "minor",
                    "urgency": "immediate",
                    "legal_basis": "child_protection_duty",
                },
            )
            assert response.status_code == 201, response.text
            ids.append(response.json()["id"])
        self.sql("UPDATE handoff SET acknowledge_by = now() - interval '2 hours' WHERE id = ANY(%s::uuid[])", (ids,))
        return ids

    def statuses(self, ids: list[str]) -> dict[str, str]:
        rows = self.sql("SELECT id::text, status FROM handoff WHERE id = ANY(%s::uuid[])", (ids,))
        return dict(rows)  # type: ignore[arg-type]

    def expiries(self, ids: list[str]) -> list[str]:
        """One row per recorded expiry: a handoff expired twice would appear twice."""
        return [
            row[0]
            for row in self.sql(
                "SELECT handoff_id::text FROM handoff_event"
                " WHERE handoff_id = ANY(%s::uuid[]) AND to_status = 'expired'",
                (ids,),
            )
        ]


@pytest.fixture
async def setup(cluster: Cluster, settings: Settings, tmp_path: Path) -> AsyncIterator[Setup]:
    name = create_test_database(cluster, suffix="_jobs")
    app_url, owner_url = cluster.app_url(name), cluster.url(name)
    var = tmp_path / "var"
    app = create_app(
        settings.model_copy(
            update={
                "database_url": app_url,
                "var_dir": var,
                "keys_dir": var / "keys",
                "public_base_url": "http://maillage.jobs",
                "expire_after_overdue_hours": 1,
                "tick_seconds": 1,  # as the workers run it: the health report shows their schedule
            }
        )
    )
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://maillage.jobs") as client:
                yield Setup(app, client, app_url, owner_url, var)
    finally:
        cluster.drop_database(name)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.close()


WORKER_ENV = {"MAILLAGE_WEBHOOKS_ALLOW_LOOPBACK": "true", "MAILLAGE_EXPIRE_AFTER_OVERDUE_HOURS": "1"}


def _log_lines(worker: Worker) -> list[dict[str, Any]]:
    lines = []
    for line in worker.output().splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue
    return lines


async def test_two_workers_expire_overdue_handoffs_once_and_deliver_their_webhooks(
    setup: Setup, receiver: Receiver
) -> None:
    partner = await setup.partner_with_webhook(receiver.url)
    ids = await setup.overdue_handoffs(partner, 4, request_id="two-workers")
    assert set(setup.statuses(ids).values()) == {"sent"}
    # Before any worker: the creations queued their delivery (and nothing else ran them).
    queued = setup.sql("SELECT task_name, args FROM procrastinate_jobs WHERE status = 'todo'")
    assert queued == [("webhooks.deliver", {"request_id": "two-workers-0"})]

    workers = [Worker(setup.app_url, setup.owner_url, setup.var, name=n, env=WORKER_ENV) for n in ("a", "b")]
    for worker in workers:
        worker.start()
    try:
        wait_for(lambda: set(setup.statuses(ids).values()) == {"expired"}, timeout=60, what="the expiry")
        # created + overdue + expired, once each per handoff, to the receiver's one subscription
        wait_for(lambda: len(receiver.received) >= 3 * len(ids), timeout=60, what="the deliveries")
        ready = (await setup.client.get("/readyz")).json()
        health = await setup.client.get("/v1/jobs/health", headers=setup.token(Role.admin))
    finally:
        for worker in workers:
            worker.stop()

    assert sorted(setup.expiries(ids)) == sorted(ids)
    webhook_ids = [webhook_id for webhook_id, _ in receiver.received]
    assert len(webhook_ids) == len(set(webhook_ids)) == 3 * len(ids)
    kinds = sorted((body["type"], body["data"].get("status")) for _, body in receiver.received)
    assert kinds == sorted(
        [("handoff.created", None)] * 4 + [("handoff.overdue", None)] * 4 + [("handoff.transitioned", "expired")] * 4
    )
    # No job was started twice, although both workers ran and each defers every periodic task.
    started = setup.sql(
        "SELECT job_id, count(*) FROM procrastinate_events WHERE type = 'started' GROUP BY job_id HAVING count(*) > 1"
    )
    assert started == []
    ran_by = setup.sql("SELECT count(DISTINCT task_name) FROM procrastinate_jobs WHERE status = 'succeeded'")
    assert ran_by[0][0] >= 3  # handoffs.expire, webhooks.deliver, jobs.retry_stalled at least
    ticks = setup.sql(
        "SELECT task_name, defer_timestamp, count(*) FROM procrastinate_periodic_defers"
        " GROUP BY 1, 2 HAVING count(*) > 1"
    )
    assert ticks == []

    assert ready["worker"] == "alive"
    assert health.status_code == 200, health.text
    report = health.json()
    assert report["workers"]["alive"] == 2
    expire = next(task for task in report["tasks"] if task["task"] == "handoffs.expire")
    assert expire["schedule"] == "* * * * * */1"
    assert expire["last_success"] is not None
    retention = next(task for task in report["tasks"] if task["task"] == "retention.apply")
    assert retention == {
        "task": "retention.apply",
        "schedule": "30 1 * * *",
        "last_success": None,
        "last_failure": None,
    }

    # The logs are JSON lines; a delivery's line names the request that caused its event: the creation's
    # own id for handoff.created, the expiry job's for the rest (a form no client's id can take).
    lines = [line for worker in workers for line in _log_lines(worker)]
    delivered = [line for line in lines if line.get("event") == "webhook.delivered"]
    assert len(delivered) == 3 * len(ids)
    assert {line["request_id"] for line in delivered} >= {f"two-workers-{i}" for i in range(len(ids))}
    assert all(re.fullmatch(r"two-workers-\d|job:\d+", line["request_id"]) for line in delivered)
    # Never a partner's webhook URL (it may hold its secret): httpx's request lines are kept out.
    assert all(receiver.url.split("/hook")[0] not in worker.output() for worker in workers)


async def test_a_worker_killed_mid_job_loses_nothing_and_the_expiry_happens_once(
    setup: Setup, receiver: Receiver
) -> None:
    partner = await setup.partner_with_webhook(receiver.url)
    (handoff,) = await setup.overdue_handoffs(partner, 1, request_id="killed-worker")
    (subscription,) = setup.sql("SELECT id FROM webhook_subscription WHERE organisation_id = %s", (partner,))

    # Hold the subscription's row: the expiry job, having flagged and expired the handoff in its
    # transaction, waits there to record the deliveries. That is the middle of the job.
    with psycopg.connect(plain(setup.owner_url)) as blocker:
        blocker.execute("SELECT 1 FROM webhook_subscription WHERE id = %s FOR UPDATE", subscription)
        first = Worker(setup.app_url, setup.owner_url, setup.var, name="first", env=WORKER_ENV)
        first.start()
        try:
            wait_for(
                lambda: setup.sql(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = 'maillage-worker'"
                    " AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO webhook_delivery%%'"
                ),
                timeout=60,
                what="the expiry job to wait for the subscription's lock",
            )
            (waiting,) = setup.sql(
                "SELECT pid FROM pg_stat_activity"
                " WHERE application_name = 'maillage-worker' AND wait_event_type = 'Lock'"
            )
            doing = setup.sql(
                "SELECT id FROM procrastinate_jobs WHERE task_name = 'handoffs.expire' AND status = 'doing'"
            )
            assert len(doing) == 1
            first.kill()
        finally:
            first.stop()
        blocker.rollback()
    # Its connection gone, the server rolls the job's transaction back: nothing of the run is kept.
    wait_for(
        lambda: not setup.sql("SELECT 1 FROM pg_stat_activity WHERE pid = %s", waiting), timeout=30, what="rollback"
    )
    assert setup.statuses([handoff]) == {handoff: "sent"}
    assert setup.expiries([handoff]) == []
    assert setup.sql("SELECT status FROM procrastinate_jobs WHERE id = %s", doing[0]) == [("doing",)]

    second = Worker(setup.app_url, setup.owner_url, setup.var, name="second", env=WORKER_ENV)
    second.start()
    try:
        wait_for(lambda: setup.statuses([handoff]) == {handoff: "expired"}, timeout=60, what="the expiry")
        wait_for(lambda: len(receiver.received) >= 3, timeout=60, what="the deliveries")
        wait_for(
            lambda: setup.sql("SELECT status FROM procrastinate_jobs WHERE id = %s", doing[0]) == [("succeeded",)],
            timeout=30,
            what="the stalled job to be run again",
        )
    finally:
        second.stop()

    assert setup.expiries([handoff]) == [handoff]
    overdue_flags = setup.sql("SELECT count(*) FROM handoff WHERE id = %s AND overdue_at IS NOT NULL", (handoff,))
    assert overdue_flags == [(1,)]
    outbox = setup.sql(
        "SELECT type, count(*) FROM outbox_event WHERE payload->>'handoff_id' = %s GROUP BY type ORDER BY type",
        (handoff,),
    )
    assert outbox == [("handoff.created", 1), ("handoff.overdue", 1), ("handoff.transitioned", 1)]
    assert len(receiver.received) == 3
    assert any(
        line.get("event") == "job.stalled_retried" and line.get("stalled_job_id") == doing[0][0]
        for line in _log_lines(second)
    )


def test_the_api_role_queues_a_delivery_and_nothing_else(database_url: str) -> None:
    """The API's role reads the queue and calls `queue_webhook_delivery`; it cannot queue a task of its
    choosing (a lock that blocks the expiry, a task the owner-run worker would run for it)."""
    with psycopg.connect(plain(database_url)) as conn:
        conn.execute("SELECT queue_webhook_delivery('req-000000001')")
        conn.execute("SELECT queue_webhook_delivery('req-000000002')")  # one waiting run is enough
        queued = conn.execute("SELECT task_name, lock, queueing_lock, args, status FROM procrastinate_jobs").fetchall()
        conn.rollback()
        assert queued == [("webhooks.deliver", "webhooks.deliver", None, {"request_id": "req-000000001"}, "todo")]
        for statement in (
            "INSERT INTO procrastinate_jobs (queue_name, task_name, lock) VALUES ('default', 'retention.apply', 'x')",
            "SELECT procrastinate_defer_jobs_v1(ARRAY[ROW('default', 'handoffs.expire', 9, 'handoffs.expire',"
            " NULL, '{}', 'infinity')::procrastinate_job_to_defer_v1])",
            "UPDATE procrastinate_jobs SET status = 'failed'",
            "SELECT * FROM procrastinate_periodic_defers",
            "SELECT * FROM rate_limit_event",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
            conn.rollback()
        assert conn.execute("SELECT count(*) FROM procrastinate_jobs").fetchone() == (0,)
