"""Several server processes: a client's limit is one limit however its requests are spread, and the
metrics endpoint adds up every worker's figures, by route template only."""

from __future__ import annotations

import re
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
from tests.processes import Server, free_port

PERIOD = {"from": "2025-01", "to": "2025-03"}


@pytest.fixture
def serve_db(cluster: Cluster) -> Iterator[tuple[str, str]]:
    name = create_test_database(cluster, suffix="_serve")
    yield cluster.app_url(name), cluster.url(name)
    cluster.drop_database(name)


def _journal(owner_url: str) -> list[tuple[str, str]]:
    with psycopg.connect(plain(owner_url)) as conn:
        rows = conn.execute(
            "SELECT actor_subject, outcome FROM audit_event WHERE object_type = 'statistics' ORDER BY id"
        ).fetchall()
    return [(row[0], row[1]) for row in rows]


def test_two_servers_share_a_subjects_limit_and_count_every_worker(serve_db: tuple[str, str], tmp_path: Path) -> None:
    app_url, owner_url = serve_db
    limits = {"MAILLAGE_STATS_QUERIES_PER_MINUTE": "4"}
    metrics_port = free_port()
    one = Server(app_url, tmp_path, env=limits)
    two = Server(app_url, tmp_path, workers=2, env={**limits, "MAILLAGE_METRICS_PORT": str(metrics_port)})
    tokens = build_token_service(Settings(var_dir=tmp_path))

    def analyst(subject: str) -> dict[str, str]:
        return {
            "Authorization": "Bearer " + tokens.issue(subject=subject, role=Role.department, collectivite_code="93D")
        }

    one.launch()  # both start at once: a start is mostly imports and waiting
    two.launch()
    one.wait_ready()
    two.wait_ready()
    try:
        statuses = []
        for server in (one, two, one, two):
            response = httpx.get(f"{server.base}/v1/stats/handoffs", params=PERIOD, headers=analyst("a-93"), timeout=30)
            statuses.append(response.status_code)
        assert statuses == [200, 200, 200, 200]
        # The fifth of the minute is refused by either process, with the wait until the first leaves.
        refused = [
            httpx.get(f"{server.base}/v1/stats/handoffs", params=PERIOD, headers=analyst("a-93"), timeout=30)
            for server in (one, two)
        ]
        assert [r.status_code for r in refused] == [429, 429]
        assert all(r.json()["code"] == "rate_limited" for r in refused)
        assert all(1 <= int(r.headers["retry-after"]) <= 60 for r in refused)
        # Another analyst has a limit of their own.
        other = httpx.get(f"{one.base}/v1/stats/handoffs", params=PERIOD, headers=analyst("b-93"), timeout=30)
        assert other.status_code == 200

        # Spread over both of `two`'s workers (new connections land on either), a search with a query.
        specialist = {"Authorization": "Bearer " + tokens.issue(subject="s", role=Role.specialist)}
        for _ in range(6):
            search = httpx.get(
                f"{two.base}/v1/services/search",
                params={"lat": 48.9362, "lon": 2.3574, "radius_km": 10},
                headers=specialist,
                timeout=30,
            )
            assert search.status_code == 200, search.text
        exposition = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=30).text
    finally:
        one.stop()
        two.stop()

    assert _journal(owner_url) == [("a-93", "allowed")] * 4 + [("a-93", "rate_limited")] * 2 + [("b-93", "allowed")]

    def sample(name: str, **labels: str) -> float:
        wanted = ",".join(f'{key}="{value}"' for key, value in labels.items())
        pattern = re.compile(rf"^{re.escape(name)}(?:\{{([^}}]*)\}})? (\S+)$", re.MULTILINE)
        total = 0.0
        for found, value in pattern.findall(exposition):
            if not wanted or all(part in found.split(",") for part in wanted.split(",")):
                total += float(value)
        return total

    # `two` answered two allowed and one refused statistics query, and six searches, whichever worker did.
    assert sample("maillage_http_requests_total", route="/v1/stats/handoffs", status="200") == 2
    assert sample("maillage_http_requests_total", route="/v1/stats/handoffs", status="429") == 1
    assert sample("maillage_http_requests_total", route="/v1/services/search", status="200") == 6
    assert sample("maillage_http_request_duration_seconds_count", route="/v1/services/search") == 6
    assert sample("maillage_rate_limit_refusals_total", scope="statistics") == 1
    # Never a raw path or a query string: the place searched is a child's whereabouts.
    assert "48.9362" not in exposition
    assert "lat=" not in exposition
    assert sample("maillage_db_pool_connections", pool="reader", state="size") > 0
    # What the database knows, read at scrape time: no worker runs here, and nothing waits.
    assert sample("maillage_job_workers_alive") == 0
    assert sample("maillage_metrics_database_up") == 1
    assert "maillage_jobs_oldest_due_seconds 0.0" in exposition
