"""Benchmark of service search over 1,000,000 services: HTTP through the API beside the same statements as
raw SQL, and beside tipg (a generic OGC API Features server) for the bbox listing.

Prints figures, asserts nothing. Everything runs in the same run, on the same database and the same
machine, with 8 concurrent connections over the same random origins (metropolitan commune points
jittered by up to ~1 km, each with a random specialism):

- the database `maillage_bench_search` of its own on the local cluster: migrated, reference data
  loaded as `maillage seed` does (no demo data), plus synthetic services (flagged demo, seed_key
  'bench:…') generated once in SQL and reused by later runs;
- two queries: the 20 nearest services with one specialism (default radius 30 km, services whose area
  covers the origin included), and a listing of 20 services in a 0.1° box;
- HTTP: `maillage serve` (one uvicorn worker, production settings) driven by wrk (one thread);
- raw SQL: pgbench running the very statement directory/search.py sends (captured from
  search.search for the query the route builds), one per transaction, its per-origin parameters read
  from the origin table, the others bound as pgbench variables (checked to answer the API statement's
  page at the first origin);
- tipg 1.6.1 (its own virtualenv under var/bench/, one uvicorn worker) serving the bbox listing of a
  view over the same tables, driven by the same wrk settings.

Usage: .venv/bin/python bench/search.py [--seconds 15] [--services 1000000] [--origins 5000] [--explain]
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
from harness import bench_database, free_port, run_pgbench
from psycopg.adapt import PyFormat, Transformer
from starlette.datastructures import QueryParams

from api.cluster import apt_install
from api.routes.services import search_query
from api.settings import REPO_ROOT, Settings
from directory import search
from directory.access import Principal, Role
from directory.areas import REFRESH, rebuild_params
from directory.seeding import HOTLINE_SEED_KEY, seed_collective, seed_crips, seed_hotline, seed_specialisms
from directory.taxonomy import SLUGS
from geo.calendars import load_public_holidays
from geo.loading import load_territories

CONNECTIONS = 8
WARM_UP_SECONDS = 3
DATABASE = "maillage_bench_search"
KEY = "bench:"  # seed_key prefix of every generated row
ORGANISATIONS = 10_000
BBOX_HALF_DEGREES = 0.05
LIMIT = 20
# The API's searches are made as a specialist, acting for the 119 unit as every specialist does (set in
# main() once the unit's organisation is seeded): the statement measured is the one they run.
VIEWER = Principal(subject="bench", role=Role.specialist)
# tipg and the same server stack as the API (requirements.lock), in a virtualenv of their own.
TIPG_PACKAGES = ("tipg==1.6.1", "uvicorn==0.54.0", "uvloop==0.23.0", "httptools==0.9.0")
TIPG_VIEW = "bench_tipg_service"
METROPOLITAN_COMMUNES = "SELECT {columns} FROM commune WHERE point IS NOT NULL AND departement_code NOT LIKE '97%'"
# Parameters of search.search that depend on the origin: pgbench reads them from row :i of bench_origin.
ORIGIN_PARAMETERS = ("lon", "lat", "specialisms", "min_lon", "min_lat", "max_lon", "max_lat")
OFFICE_HOURS = (
    '{"mode": "weekly", "weekly": {'
    + ", ".join(f'"{d}": [["09:00", "12:30"], ["13:30", "17:30"]]' for d in ("mon", "tue", "wed", "thu", "fri"))
    + "}}"
)


@dataclass(frozen=True)
class Origin:
    id: int
    lon: float
    lat: float
    specialism: str

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        return (
            round(self.lon - BBOX_HALF_DEGREES, 6),
            round(self.lat - BBOX_HALF_DEGREES, 6),
            round(self.lon + BBOX_HALF_DEGREES, 6),
            round(self.lat + BBOX_HALF_DEGREES, 6),
        )

    def knn_path(self) -> str:
        return f"/v1/services/search?lat={self.lat}&lon={self.lon}&specialism={self.specialism}&limit={LIMIT}"

    def bbox_path(self) -> str:
        return f"/v1/services/search?bbox={','.join(map(str, self.bbox))}&limit={LIMIT}"

    def tipg_path(self) -> str:
        return f"/collections/public.{TIPG_VIEW}/items?bbox={','.join(map(str, self.bbox))}&limit={LIMIT}"


# --- the bench database -------------------------------------------------------------------------


def prepare(settings: Settings, services: int) -> str:
    """The bench database, migrated and loaded like `maillage seed` (no demo data), plus `services`
    synthetic services, generated unless a previous run left exactly that many."""
    plain = bench_database(settings, DATABASE)
    with psycopg.connect(plain) as conn:
        load_territories(conn)
        load_public_holidays(conn)
        seed_specialisms(conn)
        row = conn.execute("SELECT count(*) FROM service WHERE seed_key LIKE %s", (f"{KEY}service:%",)).fetchone()
        existing = int(row[0]) if row else 0
        if existing not in (0, services):
            print(f"{existing:,} bench services in '{DATABASE}', {services:,} asked for: regenerating the directory")
            conn.execute("TRUNCATE service_area, service, location, organisation CASCADE")
            existing = 0
        seed_hotline(conn)  # specialists act for the 119 unit's organisation
        seed_crips(conn)
        seed_collective(conn, REPO_ROOT / "seeds")
        conn.commit()
        if existing:
            print(f"reusing {existing:,} bench services in '{DATABASE}' (generated by an earlier run)")
        else:
            generate(conn, services)
        conn.execute(
            f"""CREATE OR REPLACE VIEW {TIPG_VIEW} AS
                SELECT s.id, s.name, o.name AS organisation, o.kind AS organisation_kind, s.specialisms,
                       s.audiences, s.age_min, s.age_max, s.genders, s.languages, s.channels, s.phone, s.email,
                       s.website, s.status, s.capacity, s.last_verified_at, lc.code AS commune_code,
                       lc.name AS commune_name, l.public_point AS geom
                  FROM service s
                  JOIN organisation o ON o.id = s.organisation_id
                  JOIN location l ON l.id = s.location_id AND l.archived_at IS NULL
                  LEFT JOIN commune lc ON lc.code = l.commune_code
                 WHERE s.archived_at IS NULL AND s.status <> 'suspended' AND o.deactivated_at IS NULL"""
        )
    return plain


def generate(conn: psycopg.Connection, count: int) -> None:
    """`count` services in SQL (set-based, one transaction): organisations, locations at random
    metropolitan communes' points jittered by up to ~2 km (5 % confidential), 1-3 specialisms, mostly
    open 24/7 and recently verified; 1 % with their département as service area."""
    started = time.monotonic()
    slugs = "ARRAY[" + ", ".join(f"'{slug}'" for slug in sorted(SLUGS - {"crip"})) + "]"
    kinds = len(SLUGS) - 1
    conn.execute("SELECT setseed(0.119)")
    conn.execute(
        "CREATE TEMP TABLE bench_commune ON COMMIT DROP AS "
        + METROPOLITAN_COMMUNES.format(
            columns="(row_number() OVER (ORDER BY code))::int AS k, code, departement_code, point"
        )
    )
    conn.execute("ALTER TABLE bench_commune ADD PRIMARY KEY (k)")
    row = conn.execute("SELECT count(*) FROM bench_commune").fetchone()
    communes = int(row[0]) if row else 0
    conn.execute(
        f"""INSERT INTO organisation (id, name, kind, seat_commune_code, verification, demo, seed_key)
            SELECT gen_random_uuid(), '[Bench] Organisation ' || n,
                   (ARRAY['association', 'health', 'public_service'])[1 + mod(n, 3)],
                   c.code, 'unverified', true, '{KEY}organisation:' || n
              FROM generate_series(0, {ORGANISATIONS - 1}) n
              JOIN bench_commune c ON c.k = 1 + mod(n * 7919, {communes})"""
    )
    # ±0.025° of longitude and ±0.018° of latitude: up to ~2 km each way in metropolitan France.
    conn.execute(
        f"""CREATE TEMP TABLE bench_gen ON COMMIT DROP AS
            SELECT g.n, gen_random_uuid() AS location_id, gen_random_uuid() AS service_id,
                   o.id AS organisation_id, c.code AS commune_code, c.departement_code,
                   ST_SetSRID(ST_MakePoint(round((ST_X(c.point) + (random() - 0.5) * 0.05)::numeric, 6)::float8,
                                           round((ST_Y(c.point) + (random() - 0.5) * 0.036)::numeric, 6)::float8),
                              4326) AS point,
                   random() < 0.05 AS confidential
              FROM (SELECT n, 1 + floor(random() * {communes})::int AS k FROM generate_series(1, {count}) n) g
              JOIN bench_commune c ON c.k = g.k
              JOIN organisation o ON o.seed_key = '{KEY}organisation:' || mod(g.n, {ORGANISATIONS})"""
    )
    # The BEFORE INSERT row trigger sets public_point (INSERT … SELECT fires row triggers like COPY).
    conn.execute(
        f"""INSERT INTO location (id, organisation_id, address, commune_code, point, visibility, point_precision,
                                  front_door_phone, demo, seed_key)
            SELECT location_id, organisation_id, (1 + mod(n, 120)) || ' rue du Banc d''Essai', commune_code, point,
                   CASE WHEN confidential THEN 'confidential' ELSE 'public' END, 'exact',
                   CASE WHEN confidential THEN '+33 1 99 00 ' || to_char(mod(n, 100), 'FM00') || ' 00' END,
                   true, '{KEY}location:' || n
              FROM bench_gen"""
    )
    located = time.monotonic()
    conn.execute(
        f"""INSERT INTO service (id, organisation_id, location_id, name, description, specialisms, audiences,
                                 age_min, age_max, genders, languages, channels, phone, schedule, status,
                                 closed_from, closed_until, closure_message, capacity, capacity_places,
                                 capacity_as_of, last_verified_at, demo, seed_key)
            SELECT service_id, organisation_id, location_id,
                   '[Bench] ' || (ARRAY['Accueil de jour', 'Maison des adolescents', 'Équipe mobile',
                                        'Foyer d''urgence', 'Permanence juridique', 'Consultation psychotrauma'])
                                 [1 + mod(n, 6)] || ' ' || n,
                   CASE WHEN mod(n, 4) = 0 THEN 'Service synthétique du banc d''essai de la recherche.' END,
                   (ARRAY[slugs[1 + a], slugs[1 + mod(a + step, {kinds})], slugs[1 + mod(a + 2 * step, {kinds})]])
                       [1:how_many],
                   (ARRAY['{{minor}}', '{{minor,young_adult}}', '{{minor,entourage}}',
                          '{{minor,young_adult,entourage,professional}}'])[1 + mod(n, 4)]::varchar[],
                   CASE WHEN mod(n, 3) = 0 THEN 10 + mod(n, 5) END, CASE WHEN mod(n, 3) = 0 THEN 21 END,
                   CASE WHEN mod(n, 10) = 0 THEN '{{female}}' ELSE '{{}}' END::varchar[],
                   (ARRAY['{{fr}}', '{{fr,en}}', '{{fr,en,ar}}', '{{fr,ro}}'])[1 + mod(n, 4)]::varchar[],
                   (ARRAY['{{in_person}}', '{{in_person,phone}}', '{{phone,online}}', '{{in_person,outreach}}'])
                       [1 + mod(n / 4, 4)]::varchar[],
                   '+33 1 99 00 ' || to_char(mod(n, 100), 'FM00') || ' ' || to_char(mod(n / 100, 100), 'FM00'),
                   CASE WHEN r_schedule < 0.75 THEN '{{"mode": "always"}}'
                        WHEN r_schedule < 0.95 THEN '{OFFICE_HOURS}'
                        ELSE '{{"mode": "on_call"}}' END::jsonb,
                   CASE WHEN r_status < 0.01 THEN 'temporarily_closed' WHEN r_status < 0.015 THEN 'suspended'
                        ELSE 'active' END,
                   CASE WHEN r_status < 0.01 THEN now() - interval '2 days' END,
                   CASE WHEN r_status < 0.01 THEN now() + interval '10 days' END,
                   CASE WHEN r_status < 0.01 THEN 'Fermeture temporaire (banc d''essai).' END,
                   (ARRAY[NULL, NULL, 'available', 'limited', 'full', 'waitlist'])[1 + mod(n, 6)],
                   CASE WHEN mod(n, 6) >= 2 THEN mod(n, 12) END, CASE WHEN mod(n, 6) >= 2 THEN now() END,
                   CASE WHEN r_verified < 0.9 THEN now() - random() * interval '120 days'
                        ELSE now() - interval '200 days' - random() * interval '300 days' END,
                   true, '{KEY}service:' || n
              FROM (SELECT g.*, {slugs}::varchar[] AS slugs, floor(random() * {kinds})::int AS a,
                           1 + floor(random() * ({kinds} - 1))::int AS step, 1 + floor(random() * 3)::int AS how_many,
                           random() AS r_schedule, random() AS r_status, random() AS r_verified
                      FROM bench_gen g) x"""
    )
    listed = time.monotonic()
    conn.execute(
        """INSERT INTO service_area (id, service_id, departements)
           SELECT gen_random_uuid(), service_id, ARRAY[departement_code] FROM bench_gen WHERE mod(n, 100) = 0"""
    )
    area_ids = [row[0] for row in conn.execute("SELECT service_id FROM bench_gen WHERE mod(n, 100) = 0")]
    for statement in REFRESH:
        conn.execute(statement, rebuild_params(area_ids))
    conn.commit()
    refreshed = time.monotonic()
    with psycopg.connect(conn.info.dsn, password=conn.info.password, autocommit=True) as maintenance:
        maintenance.execute("VACUUM (ANALYZE) organisation, location, service, service_area")
    done = time.monotonic()
    row = conn.execute(
        "SELECT count(*) FILTER (WHERE visibility = 'confidential') FROM location WHERE seed_key LIKE %s",
        (f"{KEY}location:%",),
    ).fetchone()
    print(
        f"generated {ORGANISATIONS:,} organisations, {count:,} locations ({row[0] if row else '?':,} confidential) "
        f"and {count:,} services, {len(area_ids):,} with a service area, in {done - started:.0f} s: "
        f"locations {located - started:.0f} s, services {listed - located:.0f} s, "
        f"areas and coverage {refreshed - listed:.0f} s, VACUUM ANALYZE {done - refreshed:.0f} s"
    )


def make_origins(plain_url: str, count: int) -> list[Origin]:
    """Random metropolitan commune points jittered by up to ~1 km, each with a random specialism, also
    written to the table bench_origin that the pgbench scripts read."""
    with psycopg.connect(plain_url) as conn:
        communes = conn.execute(METROPOLITAN_COMMUNES.format(columns="ST_X(point), ST_Y(point)") + " ORDER BY code")
        points = communes.fetchall()
        rng = random.Random(119)
        slugs = sorted(SLUGS - {"crip"})
        origins = []
        for i in range(1, count + 1):
            lon, lat = rng.choice(points)
            origins.append(
                Origin(
                    i,
                    round(lon + rng.uniform(-0.012, 0.012), 6),
                    round(lat + rng.uniform(-0.009, 0.009), 6),
                    rng.choice(slugs),
                )
            )
        conn.execute("DROP TABLE IF EXISTS bench_origin")
        conn.execute(
            """CREATE TABLE bench_origin (id int PRIMARY KEY, lon float8 NOT NULL, lat float8 NOT NULL,
                   specialisms varchar(64)[] NOT NULL, min_lon float8 NOT NULL, min_lat float8 NOT NULL,
                   max_lon float8 NOT NULL, max_lat float8 NOT NULL)"""
        )
        with conn.cursor().copy("COPY bench_origin FROM STDIN") as copy:
            for o in origins:
                copy.write_row((o.id, o.lon, o.lat, [o.specialism], *o.bbox))
        conn.execute("ANALYZE bench_origin")
    return origins


# --- the statements the API runs ----------------------------------------------------------------


class _Recorder:
    """Stands in for the reader connection: keeps what search.search executes, answers one row."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def execute(self, statement: str, params: dict[str, Any], *, prepare: bool | None = None) -> _Recorder:
        self.calls.append((statement, params))
        return self

    async def fetchall(self) -> list[tuple[Any, ...]]:
        return [("{}", None)]  # (feature, exact safe house)


def api_query(params: dict[str, str]) -> search.Query:
    """The search.Query the route builds for these query parameters (its own defaults included)."""
    request = SimpleNamespace(
        query_params=QueryParams(params),
        app=SimpleNamespace(state=SimpleNamespace(cursors=SimpleNamespace(decode=lambda scope, cursor: None))),
    )
    arguments: dict[str, Any] = {
        name: float(value) if name in ("lat", "lon") else [value] if name == "specialism" else value
        for name, value in params.items()
    }
    arguments["limit"] = int(arguments.get("limit", LIMIT))
    defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(search_query).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }
    return asyncio.run(search_query(request, None, VIEWER, **{**defaults, **arguments}))  # type: ignore[arg-type]


def api_statement(query: search.Query) -> tuple[str, dict[str, Any]]:
    """The statement and parameters search.search sends for `query`, exactly."""
    recorder = _Recorder()
    asyncio.run(search.search(recorder, query, now=datetime.now(UTC)))  # type: ignore[arg-type]
    if len(recorder.calls) != 1:
        raise RuntimeError(f"search.search ran {len(recorder.calls)} statements, expected 1")
    return recorder.calls[0]


def knn_params(origin: Origin) -> dict[str, str]:
    return {"lat": str(origin.lat), "lon": str(origin.lon), "specialism": origin.specialism, "limit": str(LIMIT)}


def bbox_params(origin: Origin) -> dict[str, str]:
    return {"bbox": ",".join(map(str, origin.bbox)), "limit": str(LIMIT)}


def pgbench_script(statement: str, params: dict[str, Any], origins: int) -> tuple[str, dict[str, str]]:
    """The API's statement for pgbench, its text unchanged but for the placeholders: per-origin values
    read from row :i of bench_origin, the others bound as pgbench variables (-D) with the type psycopg
    binds them with; None as NULL (pgbench cannot bind a NULL)."""
    if re.search(r"(?<![:\w]):\w", statement):
        raise RuntimeError("the statement has a ':name' that pgbench would take for a variable")
    transformer = Transformer()
    variables: dict[str, str] = {}

    def placeholder(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in ORIGIN_PARAMETERS:
            return f"(SELECT {name} FROM bench_origin WHERE id = :i)"
        value = params[name]
        if value is None:
            return "NULL"
        if value == "":
            return "''"  # pgbench substitutes an empty variable with nothing at all
        dumper = transformer.get_dumper(value, PyFormat.AUTO)
        dumper = dumper.upgrade(value, PyFormat.AUTO)
        info = psycopg.postgres.types.get(dumper.oid)
        variables[name] = value.isoformat() if isinstance(value, datetime) else str(value)
        return f":{name}::{info.name}" if info else f":{name}"

    text = re.sub(r"%\((\w+)\)s", placeholder, statement).replace("%%", "%")
    return f"\\set i random(1, {origins})\n{text.strip()};\n", variables


def same_answer(plain_url: str, script: str, variables: dict[str, str], statement: str, params: dict[str, Any]) -> str:
    """Run the pgbench statement through psycopg at origin 1: it must answer what the API's statement does."""
    raw = script.split("\n", 1)[1].strip().removesuffix(";").replace("%", "%%")
    raw = re.sub(r"(?<![:\w]):(\w+)", r"%(\1)s", raw)
    with psycopg.connect(plain_url, autocommit=True) as conn:
        api_rows = conn.execute(statement, params).fetchall()
        raw_rows = conn.execute(raw, {"i": 1, **variables}).fetchall()
    verdict = "the same" if api_rows == raw_rows else "NOT the same"
    return f"{verdict} {len(raw_rows)} rows as the API's statement at origin 1"


# --- measuring ----------------------------------------------------------------------------------


def wait_ready(url: str, process: subprocess.Popen[bytes], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode} before it was ready")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not become ready within {timeout:.0f} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def run_wrk(
    base: str, paths: list[str], seconds: int, workdir: Path, name: str, headers: dict[str, str]
) -> dict[str, float]:
    lua = workdir / f"{name}.lua"
    table = ",".join(f'"{path}"' for path in paths)
    header_table = ",".join(f'["{key}"] = "{value}"' for key, value in headers.items())
    lua.write_text(
        f"""local paths = {{{table}}}
local headers = {{{header_table}}}
math.randomseed(119)
request = function()
  return wrk.format("GET", paths[math.random(#paths)], headers)
end
"""
    )
    wrk = ["wrk", "-t1", f"-c{CONNECTIONS}", "-s", str(lua), "--latency"]
    subprocess.run([*wrk, f"-d{WARM_UP_SECONDS}s", base], check=True, capture_output=True)
    output = subprocess.run([*wrk, f"-d{seconds}s", base], check=True, capture_output=True, text=True).stdout

    def latency(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
        if not match:
            raise RuntimeError(f"wrk output without {label}%:\n{output}")
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    total = re.search(r"(\d+) requests in", output)
    return {
        "throughput": float(rate.group(1)) if rate else 0.0,
        "p50": latency("50"),
        "p99": latency("99"),
        "non_2xx": float(errors.group(1)) if errors else 0.0,
        "socket_errors": float(sum(int(n) for n in socket_errors.groups())) if socket_errors else 0.0,
        "requests": float(total.group(1)) if total else 0.0,
    }


def sample(base: str, paths: list[str], headers: dict[str, str], feature_count: Any) -> str:
    """Mean features and bytes per page over a few requests: both sides must do comparable work."""
    features, sizes = [], []
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        for path in paths:
            response = client.get(path)
            response.raise_for_status()
            features.append(feature_count(response.json()))
            sizes.append(len(response.content))
    return f"{statistics.mean(features):.1f} features, {statistics.mean(sizes) / 1024:.1f} KiB per page"


def run_http(
    settings: Settings, url: str, origins: list[Origin], seconds: int, workdir: Path
) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    from api.app import build_token_service

    port = free_port()
    env = {**os.environ, "PORT": str(port), "MAILLAGE_LOG_JSON": "true", "DATABASE_URL": url}
    server = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "api.cli", "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    results, notes = {}, {}
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(f"{base}/readyz", server, "the API")
        for name, path in (("knn", Origin.knn_path), ("bbox", Origin.bbox_path)):
            # A token per run: they live at most 15 minutes.
            token = build_token_service(settings).issue(subject="bench", role=Role.specialist)
            headers = {"Authorization": f"Bearer {token}"}
            paths = [path(o) for o in origins]
            notes[name] = sample(base, paths[:50], headers, lambda page: len(page["features"]))
            results[name] = run_wrk(base, paths, seconds, workdir, f"http-{name}", headers)
    finally:
        stop(server)
    return results, notes


def run_sql(
    plain_url: str, script: str, variables: dict[str, str], seconds: int, workdir: Path, name: str
) -> dict[str, float]:
    path = workdir / f"{name}.sql"
    path.write_text(script)
    figures = run_pgbench(
        plain_url,
        path,
        seconds=seconds,
        workdir=workdir,
        connections=CONNECTIONS,
        warm_up_seconds=WARM_UP_SECONDS,
        variables=variables,
    )
    return {**figures, "non_2xx": figures["failed"]}


def tipg_python(settings: Settings) -> Path:
    """A virtualenv with tipg under var/bench/, never the project's .venv; created on first use."""
    venv = settings.var_dir / "bench" / "tipg-venv"
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    if marker.exists() and marker.read_text() == " ".join(TIPG_PACKAGES):
        return python
    print(f"installing {' '.join(TIPG_PACKAGES)} into {venv}")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, capture_output=True)
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *TIPG_PACKAGES],
        capture_output=True,
        text=True,
    )
    if install.returncode != 0:
        raise RuntimeError(f"pip install failed: {install.stderr.strip().splitlines()[-1:]}")
    marker.write_text(" ".join(TIPG_PACKAGES))
    return python


def run_tipg(
    settings: Settings, plain_url: str, origins: list[Origin], seconds: int, workdir: Path
) -> tuple[dict[str, float], str]:
    python = tipg_python(settings)
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TIPG_")},
        "DATABASE_URL": plain_url,
        "TIPG_DB_SCHEMAS": '["public"]',
        "TIPG_DB_TABLES": f'["public.{TIPG_VIEW}"]',
        # Extents are catalogue metadata computed at start-up (a full scan of a view): not what we measure.
        "TIPG_DB_SPATIAL_EXTENT": "false",
        "TIPG_DB_DATETIME_EXTENT": "false",
    }
    command = [
        str(python),
        "-m",
        "uvicorn",
        "tipg.main:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    log = workdir / "tipg.log"
    with open(log, "wb") as output:
        server = subprocess.Popen(command, env=env, cwd=workdir, stdout=output, stderr=subprocess.STDOUT)  # noqa: S603
    try:
        base = f"http://127.0.0.1:{port}"
        try:
            wait_ready(f"{base}/collections/public.{TIPG_VIEW}", server, "tipg")
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}; its log: {log.read_text(errors='replace')[-2000:]}") from exc
        paths = [o.tipg_path() for o in origins]
        note = sample(base, paths[:50], {}, lambda page: len(page["features"]))
        return run_wrk(base, paths, seconds, workdir, "tipg-bbox", {}), note
    finally:
        stop(server)


def explain(plain_url: str, statements: dict[str, tuple[str, dict[str, Any]]]) -> None:
    with psycopg.connect(plain_url, autocommit=True) as conn:
        for label, (statement, params) in statements.items():
            plan = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, params).fetchall()
            print(f"\nEXPLAIN (ANALYZE, BUFFERS) — {label}")
            print("\n".join(row[0] for row in plan))


# --- report -------------------------------------------------------------------------------------


def line(label: str, figures: dict[str, float] | None, reason: str = "") -> str:
    if figures is None:
        return f"  {label:22}  not measured: {reason}"
    return (
        f"  {label:22}{figures['throughput']:>10,.0f} /s {figures['p50']:>7.2f} ms{figures['p99']:>8.2f} ms"
        f"{figures['requests']:>11,.0f}{figures['non_2xx']:>10,.0f}"
    )


def verdict(value: float, target: float, *, below: bool = False) -> str:
    return "met" if (value < target if below else value >= target) else "NOT met"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=15, help="duration of each measured run")
    parser.add_argument("--services", type=int, default=1_000_000, help="synthetic services in the bench database")
    parser.add_argument("--origins", type=int, default=5000, help="random origins the clients pick from")
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE of both statements")
    args = parser.parse_args()
    if not shutil.which("wrk") or not shutil.which("pgbench"):
        apt_install("wrk", "postgresql-client")
    settings = Settings()
    plain = prepare(settings, args.services)
    global VIEWER
    with psycopg.connect(plain) as conn:
        hotline = conn.execute("SELECT id FROM organisation WHERE seed_key = %s", (HOTLINE_SEED_KEY,)).fetchone()
    assert hotline is not None
    VIEWER = Principal(subject="bench", role=Role.specialist, organisation_id=hotline[0], issuer=settings.token_issuer)
    origins = make_origins(plain, args.origins)
    statements = {
        "knn": api_statement(api_query(knn_params(origins[0]))),
        "bbox": api_statement(api_query(bbox_params(origins[0]))),
    }
    if args.explain:
        explain(plain, {f"{name}, origin 1 {origins[0]}": value for name, value in statements.items()})
    sql: dict[str, dict[str, float]] = {}
    tipg: dict[str, float] | None = None
    tipg_note = ""
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        os.chmod(workdir, 0o755)
        checks = {}
        for name, (statement, params) in statements.items():
            script, variables = pgbench_script(statement, params, len(origins))
            checks[name] = same_answer(plain, script, variables, statement, params)
            sql[name] = run_sql(plain, script, variables, args.seconds, workdir, name)
        http: dict[str, dict[str, float]] = {}
        notes: dict[str, str] = {}
        http_error = ""
        try:
            http, notes = run_http(
                settings, plain.replace("postgresql://", "postgresql+psycopg://", 1), origins, args.seconds, workdir
            )
        except Exception as exc:  # noqa: BLE001 - the other figures are still worth printing
            http_error = f"the API could not be run: {exc!r}"
            print(http_error)
        try:
            tipg, tipg_note = run_tipg(settings, plain, origins, args.seconds, workdir)
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            tipg_note = f"tipg could not be installed or run: {exc}"
            print(tipg_note)

    print(
        f"\nservice search — {args.services:,} services, {CONNECTIONS} concurrent connections, {args.seconds} s "
        f"each, database '{DATABASE}', {os.cpu_count()} CPUs shared by clients, servers and PostgreSQL"
    )
    # open_now and next_opening cost more for services with weekly hours when they are closed.
    print(f"measured around {datetime.now(ZoneInfo('Europe/Paris')):%A %Y-%m-%d %H:%M} Europe/Paris time")
    print(f"  {'':22}{'throughput':>13}{'p50':>11}{'p99':>11}{'requests':>11}{'non-2xx':>10}")
    titles = {
        "knn": "20 nearest with one specialism (radius 30 km, covering areas included)",
        "bbox": f"bbox listing of 20 ({2 * BBOX_HALF_DEGREES:g}° box)",
    }
    for name, title in titles.items():
        print(title)
        print(line("HTTP API (wrk)", http.get(name), http_error))
        print(line("raw SQL (pgbench)", sql[name]))
        if name == "bbox":
            print(line("tipg 1.6.1 (wrk)", tipg, tipg_note))
        print(f"  raw SQL statement checked: {checks[name]}")
        samples = [f"API {notes[name]}"] if name in notes else []
        samples += [f"tipg {tipg_note}"] if name == "bbox" and tipg is not None else []
        if samples:
            print("  pages sampled at 50 origins: " + "; ".join(samples))
        for label, figures in (("HTTP API", http.get(name)), ("tipg", tipg if name == "bbox" else None)):
            if figures and figures["socket_errors"]:
                print(f"  {label}: {figures['socket_errors']:,.0f} wrk socket errors (connect, read, write, timeout)")
        if name not in http:
            continue
        ratio = http[name]["throughput"] / sql[name]["throughput"]
        targets = [
            f"HTTP / raw SQL throughput {ratio:.1%} (target ≥ 25 %: {verdict(ratio, 0.25)})",
            f"HTTP p99 {http[name]['p99']:.1f} ms (target < 50 ms: {verdict(http[name]['p99'], 50, below=True)})",
        ]
        if name == "bbox" and tipg is not None:
            versus = http[name]["throughput"] / tipg["throughput"]
            targets.append(f"HTTP / tipg throughput {versus:.1f}× (target ≥ 4×: {verdict(versus, 4)})")
        print("  " + "; ".join(targets))


if __name__ == "__main__":
    main()
