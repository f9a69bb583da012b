"""Work that runs on its own: procrastinate jobs in PostgreSQL, run by `maillage worker`.

Why procrastinate (3.x): the queue lives in the database Maillage already runs and backs up, so there
is no broker to install, secure or lose; periodic tasks are deferred once per tick however many workers
run (a unique row per task and timestamp); a job's `lock` keeps two runs of one task apart; workers send
heartbeats, so a job whose worker died (SIGKILL, OOM, a lost machine) is found and retried; it speaks
psycopg 3 and asyncio, like the API; its schema is plain SQL that goes into our Alembic migrations.

Every task here is safe to run twice: each runs in one transaction, and the work itself is idempotent
(a handoff expires only while it is still unanswered, under its row lock). So "exactly once" is what
the database guarantees; the queue only has to guarantee "at least once, never two at a time".

What runs, and when (UTC; "every minute" is `tick_seconds`):

| task | schedule | what |
|---|---|---|
| `handoffs.expire` | every minute | flag overdue handoffs, expire those unanswered after the grace period |
| `webhooks.deliver` | every minute, and after each write that queues an event | deliver what is due |
| `listings.remind` | daily 06:00 | tell organisations which listings are due for re-verification |
| `retention.apply` | daily 01:30 | delete what retention says, as the schema owner |
| `hours.refresh` | daily 02:00 | extend the search's opening calendars |
| `coverage.refresh` | daily 02:30 | compute missing commune × specialism distances |
| `jobs.retry_stalled` | every minute | put back the jobs of workers whose heartbeat stopped |
| `jobs.housekeeping` | hourly | drop finished jobs after 7 days (failed ones after 30), old rate-limit events |
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import procrastinate
import psycopg
import structlog
from procrastinate.exceptions import ConnectorException, UniqueViolation
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from sync.webhooks import Resolver, SecretBox, system_resolver
from sync.worker import deliver_once

from .db import libpq_url, make_engine
from .settings import Settings

log = structlog.get_logger("maillage.jobs")
T = TypeVar("T")

DELIVER = "webhooks.deliver"


# --- the work itself (also what the CLI's one-off commands run) ------------------------------------


async def in_transaction(engine: AsyncEngine, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """`work` in one committed transaction of the application role: all of it or none of it."""
    async with AsyncSession(engine, expire_on_commit=False) as session:
        result = await work(session)
        await session.commit()
        return result


async def expire_handoffs(engine: AsyncEngine, *, grace: timedelta) -> tuple[int, int]:
    """Flag handoffs past their acknowledgement deadline and expire those still unanswered after
    `grace`, telling both sides; (newly overdue, expired)."""
    from directory import handoffs
    from sync import notify

    async def expire(session: AsyncSession) -> tuple[int, int]:
        overdue, expired = await handoffs.expire_overdue(session, now=datetime.now(UTC), grace=grace)
        for handoff in overdue:
            await notify.handoff_overdue(session, handoff)
        for handoff in expired:
            await notify.handoff_moved(session, handoff, by=None)
        return len(overdue), len(expired)

    return await in_transaction(engine, expire)


async def remind_listings(engine: AsyncEngine, *, within_days: int = 0) -> int:
    """Queue a `listing.verification_due` event for each organisation with listings due; how many."""
    from directory import history
    from sync import notify

    async def remind(session: AsyncSession) -> int:
        raw = await (await session.connection()).get_raw_connection()
        conn: psycopg.AsyncConnection = raw.driver_connection  # type: ignore[assignment]
        due = await history.organisations_with_due_listings(conn, now=datetime.now(UTC), within_days=within_days)
        for organisation_id, count in due:
            queued = await notify.verification_due(session, organisation_id, count)
            log.info(
                "listing.verification_due", organisation_id=str(organisation_id), listings=count, queued=bool(queued)
            )
        return len(due)

    return await in_transaction(engine, remind)


def apply_retention(owner_url: str, settings: Settings) -> Any:
    from directory import retention

    with psycopg.connect(libpq_url(owner_url)) as conn:
        return retention.apply(
            conn,
            now=datetime.now(UTC),
            case_years=settings.case_retention_years,
            audit_days=settings.audit_retention_days,
        )


def refresh_hours(owner_url: str, *, rebuild: bool = False) -> tuple[int, int]:
    from directory import hours

    with psycopg.connect(libpq_url(owner_url)) as conn:
        return hours.refresh(conn, rebuild=rebuild)


def refresh_coverage(owner_url: str, *, rebuild: bool = False) -> int:
    from directory import coverage

    with psycopg.connect(libpq_url(owner_url)) as conn:
        return coverage.refresh(conn, rebuild=rebuild)


def housekeeping(owner_url: str) -> int:
    """Drop rate-limit events no window reaches any more (limits are per minute); how many."""
    with psycopg.connect(libpq_url(owner_url)) as conn:
        return conn.execute("DELETE FROM rate_limit_event WHERE at < now() - interval '1 hour'").rowcount


# --- the tasks ----------------------------------------------------------------------------------


@dataclass
class Resources:
    """What a worker's tasks share: built once per worker process."""

    settings: Settings
    engine: AsyncEngine  # the application role, as the API: its grants, its triggers
    owner_url: str  # the schema owner: retention and the projections
    http: httpx.AsyncClient
    box: SecretBox
    resolve: Resolver


def _resources(context: procrastinate.JobContext) -> Resources:
    return context.additional_context["resources"]


async def _expire(context: procrastinate.JobContext, timestamp: int | None = None) -> None:
    res = _resources(context)
    overdue, expired = await expire_handoffs(res.engine, grace=timedelta(hours=res.settings.expire_after_overdue_hours))
    if overdue or expired:
        log.info("handoffs.expire", overdue=overdue, expired=expired)


async def _deliver(
    context: procrastinate.JobContext, timestamp: int | None = None, request_id: str | None = None
) -> None:
    res = _resources(context)
    report = await deliver_once(
        res.engine, res.http, res.box, resolve=res.resolve, allow_loopback=res.settings.webhooks_allow_loopback
    )
    if report.delivered or report.failed or report.dead:
        log.info("webhooks.deliver", delivered=report.delivered, failed=report.failed, dead=report.dead)


async def _remind(context: procrastinate.JobContext, timestamp: int | None = None) -> None:
    organisations = await remind_listings(_resources(context).engine)
    log.info("listings.remind", organisations=organisations)


async def _retention(context: procrastinate.JobContext, timestamp: int | None = None) -> None:
    res = _resources(context)
    report = await asyncio.to_thread(apply_retention, res.owner_url, res.settings)
    log.info("retention.apply", cases=report.cases, handoffs=report.handoffs, audit_rows=report.audit_rows)


async def _hours(context: procrastinate.JobContext, timestamp: int | None = None) -> None:
    built, dropped = await asyncio.to_thread(refresh_hours, _resources(context).owner_url)
    log.info("hours.refresh", built=built, dropped=dropped)


async def _coverage(context: procrastinate.JobContext, timestamp: int | None = None) -> None:
    computed = await asyncio.to_thread(refresh_coverage, _resources(context).owner_url)
    log.info("coverage.refresh", computed=computed)


async def _retry_stalled(context: procrastinate.JobContext, timestamp: int | None = None) -> None:
    """Jobs still `doing` under a worker whose heartbeat stopped go back to the queue (their transaction
    died with the worker's connection, so nothing of them was kept). One that a waiting run of the same
    task already replaces (a delivery nudged meanwhile: one waiting at most) is closed as failed
    instead: the waiting run does the same work."""
    manager = context.app.job_manager
    after = _resources(context).settings.worker_stalled_after_seconds
    for job in await manager.get_stalled_jobs(seconds_since_heartbeat=after):
        try:
            await manager.retry_job(job)
        except UniqueViolation:
            await manager.finish_job(job, status=procrastinate.jobs.Status.FAILED, delete_job=False)
            log.warning("job.stalled_superseded", stalled_job_id=job.id, stalled_task=job.task_name)
            continue
        except ConnectorException:  # another check got there first: it is no longer `doing`
            continue
        log.warning("job.stalled_retried", stalled_job_id=job.id, stalled_task=job.task_name)
    await manager.prune_stalled_workers(seconds_since_heartbeat=after)


async def _housekeeping(context: procrastinate.JobContext, timestamp: int | None = None) -> None:
    manager = context.app.job_manager
    await manager.delete_old_jobs(nb_hours=7 * 24)
    await manager.delete_old_jobs(nb_hours=30 * 24, include_failed=True, include_cancelled=True, include_aborted=True)
    events = await asyncio.to_thread(housekeeping, _resources(context).owner_url)
    log.info("jobs.housekeeping", rate_limit_events=events)


@dataclass(frozen=True)
class Schedule:
    name: str
    run: Callable[..., Awaitable[None]]
    cron: str


def schedules(settings: Settings) -> tuple[Schedule, ...]:
    """Every periodic task with its cron (UTC; a sixth field is seconds)."""
    tick = "* * * * *" if settings.tick_seconds == 60 else f"* * * * * */{settings.tick_seconds}"
    return (
        Schedule("handoffs.expire", _expire, tick),
        Schedule(DELIVER, _deliver, tick),
        Schedule("listings.remind", _remind, "0 6 * * *"),
        Schedule("retention.apply", _retention, "30 1 * * *"),
        Schedule("hours.refresh", _hours, "0 2 * * *"),
        Schedule("coverage.refresh", _coverage, "30 2 * * *"),
        Schedule("jobs.retry_stalled", _retry_stalled, tick),
        Schedule("jobs.housekeeping", _housekeeping, "17 * * * *"),
    )


def build_app(settings: Settings, connector: procrastinate.PsycopgConnector | None = None) -> procrastinate.App:
    """A procrastinate app with every task. Each task has its own lock: no two runs of it at a time,
    across workers; a tick waits for the run before it. Ticks are not retried when they fail: the next
    tick does the same work. (No queueing lock on ticks: a stalled run put back in the queue must not
    collide with the tick that waits behind it.) The stalled-job check has no lock: a check that died
    with its worker must not block the checks that would put it back."""
    app = procrastinate.App(connector=connector or procrastinate.PsycopgConnector())
    for schedule in schedules(settings):
        lock = None if schedule.run is _retry_stalled else schedule.name
        task = app.task(name=schedule.name, pass_context=True, lock=lock)(schedule.run)
        app.periodic(cron=schedule.cron)(task)
    return app


async def _log_context(call_next: Callable[[], Awaitable[Any]], context: procrastinate.JobContext, _: Any) -> Any:
    """Every log line of a job names it, and the request that queued it (a periodic job stands for its
    own request: the events it queues carry `job:<id>`, and so do their deliveries' log lines; no
    client's X-Request-Id can take that form)."""
    job = context.job
    request_id = job.task_kwargs.get("request_id") or f"job:{job.id}"
    with structlog.contextvars.bound_contextvars(job_id=job.id, task=job.task_name, request_id=request_id):
        return await call_next()


async def run_worker(settings: Settings, *, app_url: str, owner_url: str, concurrency: int, name: str | None) -> None:
    """Run jobs until SIGINT or SIGTERM (jobs under way are finished first). The queue is reached as the
    schema owner, directly (LISTEN/NOTIFY needs a session: never through a transaction pooler); the
    tasks' own work as the application role, like the API."""
    from .app import load_or_create_secret

    app = build_app(
        settings,
        procrastinate.PsycopgConnector(
            conninfo=libpq_url(owner_url),
            min_size=2,
            max_size=concurrency + 2,
            kwargs={"application_name": "maillage-worker"},
        ),
    )
    engine = make_engine(
        app_url,
        pool_size=concurrency,
        statement_timeout_ms=60_000,
        startup_options=settings.startup_options,  # DATABASE_URL may go through PgBouncer
        prepared_statements=settings.prepared_statements,
        application_name="maillage-worker",
    )
    async with httpx.AsyncClient(timeout=10.0, follow_redirects=False) as http:
        resources = Resources(
            settings=settings,
            engine=engine,
            owner_url=owner_url,
            http=http,
            box=SecretBox(load_or_create_secret(settings.secrets_path / "webhook-key")),
            resolve=system_resolver,
        )
        try:
            name = name or f"{socket.gethostname()}-{os.getpid()}"
            async with app.open_async():
                log.info("worker.started", name=name, concurrency=concurrency)
                await app.run_worker_async(
                    concurrency=concurrency,
                    name=name,
                    additional_context={"resources": resources},
                    update_heartbeat_interval=settings.worker_heartbeat_seconds,
                    stalled_worker_timeout=settings.worker_stalled_after_seconds,
                    worker_middleware=[_log_context],
                    shutdown_graceful_timeout=30,
                )
        finally:
            await engine.dispose()


# --- what the admins see -------------------------------------------------------------------------

_HEALTH = """
WITH queue AS (
    SELECT count(*) FILTER (WHERE status = 'todo') AS todo,
           count(*) FILTER (WHERE status = 'todo' AND coalesce(scheduled_at, '-infinity') <= clock_timestamp()) AS due,
           count(*) FILTER (WHERE status = 'doing') AS doing,
           count(*) FILTER (WHERE status = 'failed') AS failed
      FROM procrastinate_jobs
), oldest AS (
    SELECT min(coalesce(j.scheduled_at, e.at)) AS since
      FROM procrastinate_jobs j
      LEFT JOIN LATERAL (SELECT min(at) AS at FROM procrastinate_events WHERE job_id = j.id) e ON true
     WHERE j.status = 'todo' AND coalesce(j.scheduled_at, '-infinity') <= clock_timestamp()
), workers AS (
    SELECT count(*) FILTER (WHERE last_heartbeat > clock_timestamp() - %(stalled)s * interval '1 s') AS alive,
           max(last_heartbeat) AS last_heartbeat
      FROM procrastinate_workers
), tasks AS (
    SELECT j.task_name,
           max(e.at) FILTER (WHERE e.type = 'succeeded') AS last_success,
           max(e.at) FILTER (WHERE e.type = 'failed') AS last_failure
      FROM procrastinate_jobs j JOIN procrastinate_events e ON e.job_id = j.id
     GROUP BY j.task_name
)
SELECT jsonb_build_object(
    'queue', (SELECT to_jsonb(queue) FROM queue),
    'oldest_due_seconds', (SELECT round(extract(epoch FROM clock_timestamp() - since)::numeric, 1) FROM oldest),
    'workers', (SELECT jsonb_build_object('alive', alive, 'last_heartbeat', last_heartbeat) FROM workers),
    'tasks', (SELECT coalesce(jsonb_object_agg(task_name, jsonb_build_object(
                  'last_success', last_success, 'last_failure', last_failure)), '{}') FROM tasks)
)"""


async def health(conn: psycopg.AsyncConnection, settings: Settings) -> dict[str, Any]:
    """Queue depth, the oldest due job's wait, live workers, and each periodic task's last success."""
    row = await (await conn.execute(_HEALTH, {"stalled": settings.worker_stalled_after_seconds})).fetchone()
    assert row is not None
    return _report(row[0], settings)


def health_now(conn: psycopg.Connection[Any], settings: Settings) -> dict[str, Any]:
    """The same report on a synchronous connection (the metrics endpoint's thread)."""
    row = conn.execute(_HEALTH, {"stalled": settings.worker_stalled_after_seconds}).fetchone()
    assert row is not None
    return _report(row[0], settings)


def _report(report: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """Each task of the schedule, and only those: a row of another name in the queue adds nothing."""
    seen = report.pop("tasks")
    report["tasks"] = [
        {
            "task": schedule.name,
            "schedule": schedule.cron,
            "last_success": seen.get(schedule.name, {}).get("last_success"),
            "last_failure": seen.get(schedule.name, {}).get("last_failure"),
        }
        for schedule in schedules(settings)
    ]
    return report


async def worker_alive(conn: psycopg.AsyncConnection, settings: Settings) -> bool:
    row = await (
        await conn.execute(
            "SELECT EXISTS (SELECT FROM procrastinate_workers WHERE last_heartbeat > clock_timestamp() - %s"
            " * interval '1 s')",
            (settings.worker_stalled_after_seconds,),
        )
    ).fetchone()
    return bool(row and row[0])
