"""What the benchmark scripts share: a database of their own on the local cluster, a free port on
127.0.0.1, pgbench runs for the raw-SQL ceilings, and percentiles computed the same way everywhere.

The scripts run as files (`python bench/search.py`), so this module is imported as `harness`.
"""

from __future__ import annotations

import os
import re
import socket
import statistics
import subprocess
from pathlib import Path

import psycopg

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


def run_pgbench(
    plain_url: str,
    script: Path,
    *,
    seconds: int,
    workdir: Path,
    connections: int,
    warm_up_seconds: int = 3,
    variables: dict[str, str] | None = None,
) -> dict[str, float]:
    """Run `script` with pgbench (prepared statements, the API's session settings) after a warm-up;
    throughput, p50 and p99 from its per-transaction log, and the failed transactions."""
    info = psycopg.conninfo.conninfo_to_dict(plain_url)
    env = {**os.environ, "PGPASSWORD": str(info.get("password", "")), "PGOPTIONS": PGOPTIONS}
    base = [
        "pgbench",
        *("-h", str(info["host"]), "-p", str(info["port"]), "-U", str(info["user"])),
        *("-n", "-M", "prepared", "-c", str(connections), "-j", "2", "-f", str(script)),
        *(f"-D{key}={value}" for key, value in (variables or {}).items()),
    ]
    subprocess.run([*base, "-T", str(warm_up_seconds), str(info["dbname"])], check=True, capture_output=True, env=env)
    logs = workdir / f"pgbench-{script.stem}"
    logs.mkdir()
    output = subprocess.run(
        [*base, "-T", str(seconds), "-l", f"--log-prefix={logs}/tx", str(info["dbname"])],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=workdir,
    ).stdout
    latencies = [int(line.split()[2]) / 1000 for log in logs.iterdir() for line in log.read_text().splitlines()]
    tps = re.search(r"tps = ([\d.]+)", output)
    failed = re.search(r"number of failed transactions: (\d+)", output)
    return {
        "throughput": float(tps.group(1)) if tps else 0.0,
        "p50": statistics.median(latencies),
        "p99": percentile(latencies, 0.99),
        "failed": float(failed.group(1)) if failed else 0.0,
        "requests": float(len(latencies)),
    }
