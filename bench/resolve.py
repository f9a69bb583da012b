"""Benchmark of single-point resolution: HTTP through the API beside the same lookup as raw SQL.

Prints figures, asserts nothing. Both sides run in the same run, on the same database and the same
machine, with 8 concurrent connections over the same random points (commune points jittered by up
to ~1 km, so a few fall at sea and take the 404 path, as real calls do):

- HTTP: `maillage serve` (one uvicorn worker, production settings) driven by wrk (one thread);
- raw SQL: pgbench running the resolution query of geo/territories.py, one statement per lookup.

Usage: .venv/bin/python bench/resolve.py [--seconds 15] [--points 20000]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psycopg
from harness import bench_database, free_port, run_pgbench

from api.cluster import apt_install
from api.settings import Settings
from directory.seeding import seed_crips, seed_hotline
from geo import territories
from geo.loading import load_territories

CONNECTIONS = 8
DATABASE = "maillage_bench"


def prepare(settings: Settings, count: int) -> tuple[str, list[tuple[float, float]]]:
    """A bench database of its own on the local cluster: migrated, loaded, plus a table of points."""
    plain = bench_database(settings, DATABASE)
    with psycopg.connect(plain) as conn:
        load_territories(conn)
        seed_hotline(conn)  # the specialist token below acts for the 119 unit's organisation
        seed_crips(conn)
        communes = conn.execute("SELECT ST_X(point), ST_Y(point) FROM commune WHERE point IS NOT NULL").fetchall()
        rng = random.Random(119)
        points = []
        for _ in range(count):
            lon, lat = rng.choice(communes)
            points.append((round(lon + rng.uniform(-0.012, 0.012), 6), round(lat + rng.uniform(-0.009, 0.009), 6)))
        conn.execute("DROP TABLE IF EXISTS bench_point")
        conn.execute("CREATE TABLE bench_point (id int PRIMARY KEY, lon float8 NOT NULL, lat float8 NOT NULL)")
        with conn.cursor().copy("COPY bench_point FROM STDIN") as copy:
            for i, (lon, lat) in enumerate(points, start=1):
                copy.write_row((i, lon, lat))
        conn.execute("ANALYZE bench_point")
        outside = conn.execute(
            f"""SELECT count(*) FROM bench_point q WHERE NOT EXISTS (
                    SELECT 1 FROM ({territories._COMMUNE_AT.format(lon="q.lon", lat="q.lat")}) hit)"""
        ).fetchone()
    print(f"{count} points, {outside[0] if outside else '?'} of them outside France (404)")
    return plain, points


def run_http(
    settings: Settings, url: str, points: list[tuple[float, float]], seconds: int, workdir: Path
) -> dict[str, float]:
    from api.app import build_token_service
    from directory.access import Role

    port = free_port()
    env = {**os.environ, "PORT": str(port), "MAILLAGE_LOG_JSON": "true", "DATABASE_URL": url}
    server = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "api.cli", "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            raise RuntimeError("the API did not become ready")
        token = build_token_service(settings).issue(subject="bench", role=Role.specialist)
        lua = workdir / "resolve.lua"
        table = ",".join(f"{{{lat},{lon}}}" for lon, lat in points)
        lua.write_text(
            f"""local points = {{{table}}}
local headers = {{["Authorization"] = "Bearer {token}"}}
math.randomseed(119)
request = function()
  local p = points[math.random(#points)]
  return wrk.format("GET", "/v1/territories/resolve?lat=" .. p[1] .. "&lon=" .. p[2], headers)
end
"""
        )
        wrk = ["wrk", "-t1", f"-c{CONNECTIONS}", "-s", str(lua), "--latency"]
        subprocess.run([*wrk, "-d3s", base], check=True, capture_output=True)  # warm-up
        output = subprocess.run([*wrk, f"-d{seconds}s", base], check=True, capture_output=True, text=True).stdout
    finally:
        server.terminate()
        server.wait(timeout=10)

    def latency(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
        if not match:
            raise RuntimeError(f"wrk output without {label}%:\n{output}")
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    total = re.search(r"(\d+) requests in", output)
    return {
        "throughput": float(rate.group(1)) if rate else 0.0,
        "p50": latency("50"),
        "p99": latency("99"),
        "non_2xx": float(errors.group(1)) if errors else 0.0,
        "requests": float(total.group(1)) if total else 0.0,
    }


def run_sql(plain_url: str, count: int, seconds: int, workdir: Path) -> dict[str, float]:
    resolution = territories._RESOLUTION_JSON
    commune_at = territories._COMMUNE_AT.format(lon="q.lon", lat="q.lat")
    script = workdir / "resolve.sql"
    script.write_text(
        f"\\set i random(1, {count})\n"
        + " ".join(
            f"""SELECT {resolution}::text FROM bench_point q, LATERAL ({commune_at}) hit
                {territories._RESOLUTION_JOINS} WHERE q.id = :i;""".split()
        )
        + "\n"
    )
    return run_pgbench(plain_url, script, seconds=seconds, workdir=workdir, connections=CONNECTIONS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--points", type=int, default=20000)
    args = parser.parse_args()
    if not shutil.which("wrk") or not shutil.which("pgbench"):
        apt_install("wrk", "postgresql-client")
    settings = Settings()
    plain, points = prepare(settings, args.points)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        os.chmod(workdir, 0o755)
        sql = run_sql(plain, len(points), args.seconds, workdir)
        http = run_http(
            settings, plain.replace("postgresql://", "postgresql+psycopg://", 1), points, args.seconds, workdir
        )
    print(
        f"\nresolve one point — {CONNECTIONS} concurrent connections, {args.seconds} s each, "
        f"database '{DATABASE}', {os.cpu_count()} CPUs shared by client, API and PostgreSQL"
    )
    print(f"{'':24}{'throughput':>14}{'p50':>10}{'p99':>10}{'requests':>11}")
    print(
        f"{'HTTP API (wrk)':24}{http['throughput']:>10,.0f} /s {http['p50']:>7.2f} ms{http['p99']:>7.2f} ms"
        f"{http['requests']:>11,.0f}"
    )
    print(
        f"{'raw SQL (pgbench)':24}{sql['throughput']:>10,.0f} /s {sql['p50']:>7.2f} ms{sql['p99']:>7.2f} ms"
        f"{sql['requests']:>11,.0f}"
    )
    print(
        f"HTTP / raw SQL throughput: {http['throughput'] / sql['throughput']:.1%}  "
        f"(target ≥ 25 %; HTTP p99 target < 25 ms); non-2xx HTTP answers (404 at sea): {http['non_2xx']:,.0f}"
    )


if __name__ == "__main__":
    main()
