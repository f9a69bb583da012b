"""Prometheus metrics, served on a port of their own (`metrics_port`, bound to `metrics_host`).

Not under the API's own address: request counts per route and queue figures reveal activity (how many
handoffs move, how many cases open), so they are for the operator's scraper only, on an internal
interface. `maillage serve` runs the endpoint in its supervising process; with `--workers N` every
worker writes its figures to files under one directory (prometheus_client's multiprocess mode, chosen
by PROMETHEUS_MULTIPROC_DIR, which must be set before this module is first imported), and the
endpoint adds them up.

Labels are bounded: a route's template (`/v1/handoffs/{handoff_id}`), never a raw path, never a query
string (a search's place is a child's whereabouts); unmatched requests share one label.

What lives in the database (the job queue, webhook deliveries) is read from it at scrape time, so the
figures are the same whichever process serves them and whether or not the worker is alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import psycopg
import structlog
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from .db import libpq_url
from .settings import Settings

log = structlog.get_logger("maillage.metrics")
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED = "unmatched"

REQUESTS = Counter(
    "maillage_http_requests_total",
    "HTTP requests answered, by route template and status.",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "maillage_http_request_duration_seconds",
    "Time to answer, by route template.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
RATE_LIMIT_REFUSALS = Counter("maillage_rate_limit_refusals_total", "Requests refused with 429, by limit.", ["scope"])
POOL = Gauge(
    "maillage_db_pool_connections",
    "Database connections of the API's pools: size, in use, requests waiting for one.",
    ["pool", "state"],
    multiprocess_mode="livesum",
)


# Any token is a method to the HTTP parser: a label per method would let anyone mint series.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def observe(method: str, route: str | None, status: int, seconds: float) -> None:
    method = method if method in METHODS else "OTHER"
    route = route or UNMATCHED
    REQUESTS.labels(method, route, str(status)).inc()
    LATENCY.labels(method, route).observe(seconds)


def record_pools(reader: Any, engine: Any) -> None:
    """The reader pool (psycopg) and the writer engine's pool (SQLAlchemy), as of now."""
    stats = reader.get_stats()
    POOL.labels("reader", "size").set(stats.get("pool_size", 0))
    POOL.labels("reader", "in_use").set(stats.get("pool_size", 0) - stats.get("pool_available", 0))
    POOL.labels("reader", "waiting").set(stats.get("requests_waiting", 0))
    pool = engine.pool
    POOL.labels("writer", "size").set(pool.size() + max(pool.overflow(), 0))
    POOL.labels("writer", "in_use").set(pool.checkedout())


async def sample_pools(reader: Any, engine: Any, *, every: float = 5.0) -> None:
    """Until cancelled: keep the pool gauges current (sampled, so requests pay nothing for them)."""
    while True:
        with contextlib.suppress(Exception):
            record_pools(reader, engine)
        await asyncio.sleep(every)


def process_exited() -> None:
    """A worker's live gauges stop counting once it is gone."""
    if os.environ.get(MULTIPROCESS_ENV):
        mark_process_dead(os.getpid())


_DELIVERIES = """
SELECT status, count(*) FILTER (WHERE attempts > 0 AND status = 'pending') AS failing, count(*)
  FROM webhook_delivery GROUP BY status"""


class DatabaseCollector(Collector):
    """Job queue and webhook figures, read from the database at each scrape (one short connection). The
    queue's are the admins' health report (api/jobs.py), so the two never disagree."""

    def __init__(self, url: str, settings: Settings) -> None:
        self.url = libpq_url(url)
        self.settings = settings
        # Behind PgBouncer the role's own statement timeout applies (it refuses `options`).
        self.options: dict[str, Any] = {"options": "-c statement_timeout=3000"} if settings.startup_options else {}

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("maillage_metrics_database_up", "Whether the database answered this scrape.")
        try:
            with psycopg.connect(self.url, connect_timeout=3, **self.options) as conn:
                families = list(self._families(conn))
        except psycopg.Error as exc:
            log.warning("metrics.database_unreachable", error=str(exc).splitlines()[0] if str(exc) else "")
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _families(self, conn: psycopg.Connection[Any]) -> Iterator[Metric]:
        from .jobs import health_now

        report = health_now(conn, self.settings)
        jobs = GaugeMetricFamily("maillage_jobs", "Jobs queued (todo) and running (doing).", labels=["status"])
        for status in ("todo", "doing"):
            jobs.add_metric([status], report["queue"][status])
        yield jobs
        yield GaugeMetricFamily(
            "maillage_jobs_failed", "Jobs that failed, kept 30 days.", value=report["queue"]["failed"]
        )
        yield GaugeMetricFamily(
            "maillage_jobs_oldest_due_seconds",
            "How long the oldest due job has waited (0 when none waits).",
            value=float(report["oldest_due_seconds"] or 0),
        )
        yield GaugeMetricFamily(
            "maillage_job_workers_alive", "Workers whose heartbeat is recent.", value=report["workers"]["alive"]
        )
        for outcome in ("success", "failure"):
            family = GaugeMetricFamily(
                f"maillage_job_last_{outcome}_timestamp_seconds",
                f"When each task last had a {outcome}.",
                labels=["task"],
            )
            for task in report["tasks"]:
                if task[f"last_{outcome}"]:
                    family.add_metric([task["task"]], datetime.fromisoformat(task[f"last_{outcome}"]).timestamp())
            yield family
        deliveries = GaugeMetricFamily(
            "maillage_webhook_deliveries", "Webhook deliveries by status (kept with their events).", labels=["status"]
        )
        failing = GaugeMetricFamily(
            "maillage_webhook_deliveries_failing", "Pending deliveries whose last attempt failed (retrying)."
        )
        retrying = 0
        for status, failing_count, count in conn.execute(_DELIVERIES):
            deliveries.add_metric([status], count)
            retrying += failing_count
        failing.add_metric([], retrying)
        yield deliveries
        yield failing


def serve_metrics(settings: Settings, *, database_url: str) -> None:
    """Start the endpoint in a thread of this process: every worker's figures, and the database's."""
    if os.environ.get(MULTIPROCESS_ENV):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    registry.register(DatabaseCollector(database_url, settings))
    start_http_server(settings.metrics_port, addr=settings.metrics_host, registry=registry)
    log.info("metrics.serving", address=f"{settings.metrics_host}:{settings.metrics_port}")
