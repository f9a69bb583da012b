"""What the benchmark scripts share: a database of their own on the local cluster, a free port on
127.0.0.1, and percentiles computed the same way everywhere.

The scripts run as files (`python bench/search.py`), so this module is imported as `harness`.
"""

from __future__ import annotations

import socket

from api.cluster import Cluster
from api.migrations_runner import upgrade
from api.settings import Settings

# pgbench runs with the session settings the API's own connections use (api/db.py), JIT off included.
PGOPTIONS = "-c jit=off"


def bench_database(settings: Settings, name: str) -> str:
    """Start the local cluster, create database `name` if needed and migrate it; its plain libpq URL
    (as the cluster's superuser: benchmarks load data the API role may not write)."""
    cluster = Cluster(settings.var_dir)
    cluster.start()
    cluster.ensure_database(name)
    url = cluster.url(name)
    upgrade(url)
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile (no interpolation): a latency that was actually observed."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]
