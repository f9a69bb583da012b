"""Benchmark of `maillage import data-inclusion` on a synthetic 100,000-service extract: throughput and
peak memory of the import, beside the ceiling of a bare load of the same rows, measured in the same run.

Prints figures, asserts nothing, and ends with one line of JSON. Everything runs on the same machine
and the same local cluster:

- databases of its own: clones of the test template (`maillage_test_template`, migrated and loaded with
  the reference data as `maillage seed` does) when it is current, else freshly migrated and seeded;
  dropped at the end. The template is only read: it is never rebuilt here (pytest may be using it);
- the extract: `structures.json` and `services.json` (data·inclusion schema v1, JSON arrays written
  item by item from generators, seeded RNG), 20,000 structures and 100,000 services at real commune
  codes and points read from the database. About 90 % of the services have a thématique the import
  keeps (directory.taxonomy.DATA_INCLUSION_IMPORT), 10 % none (left out), and about 1 % are bad rows
  of several kinds (schema errors, unknown codes, a missing structure, no place), plus 0.2 % of bad
  structures. zone_eligibilite varies among the commune's département, communes of that département,
  its EPCI, "france" and nothing; horaires_accueil among 21 OSM expressions (a few not carried over);
- the import as the CLI runs it (sync/data_inclusion.py: streamed with ijson, validated with the
  schema's models, mapped, staged with COPY and upserted set-wise in one transaction, committed), as
  the schema owner, in a child process of its own (spawned, not forked: its peak RSS is its own):
  first on an empty source (all creates), then, after an ANALYZE (what autovacuum does between two
  imports; `--stale-statistics` skips it), again on the same extract (nothing changes). Its peak RSS
  (VmHWM) is also measured on a 20,000-service extract, in another clone, to show whether memory grows
  with the rows, both at the end of the staging loop and at the end of the import. Where the time
  goes: the staging loop (read, validate, map, COPY) apart from the set-wise SQL after it, the
  statements that took longest, and the PL/pgSQL functions (the triggers) by time, from
  pg_stat_xact_user_functions (the connection sets track_functions = 'pl');
- a budget: an import still running after `--budget` seconds is stopped (its backend terminated, so its
  transaction rolls back; the re-import is then not run) and the output says so, with what had been
  measured by then (the staging loop, the peak RSS) and the statement its connection was running, so
  that the script ends in about 10 minutes whatever the import costs;
- the ceilings, on the same 100,000 services: parsing services.json with ijson alone; ijson and the
  schema's validation (`Service.model_validate`) without any database; a bare COPY of the parsed rows
  (parsed beforehand) into an unlogged table with the same columns; and ijson streamed into that COPY.

The import's rows/s count the services read over the whole run, whose time also covers the 20,000
structures (read, validated and upserted): the ceilings count services only.

Caveats: one run each (no percentiles: an import is one long operation); the machine's cores are
shared by the child, PostgreSQL and anything else on the cluster (tests may run at the same time).

Usage: .venv/bin/python bench/import_data_inclusion.py [--services 100000] [--small 20000] [--budget 180]
       [--stale-statistics] [--seed 1]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import queue
import random
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import ijson
import psycopg
from data_inclusion.schema.v1 import Service, Thematique
from pydantic import ValidationError

from api.cluster import Cluster
from api.db import libpq_url
from api.migrations_runner import upgrade
from api.settings import REPO_ROOT, Settings
from directory.taxonomy import DATA_INCLUSION_IMPORT
from tests.database import TEMPLATE, create_test_database, fingerprint

SUFFIX = "_bench_import"
STRUCTURES_PER_SERVICE = 0.2
SMALL_SERVICES = 20_000
OUT_OF_SCOPE_SHARE = 0.10
BAD_SERVICE_SHARE = 0.01
BAD_STRUCTURE_SHARE = 0.002
SHARED_SIRET_SHARE = 0.05  # another producer's listing of the same establishment
FIRST_DAY, LAST_DAY = date(2023, 1, 1), date(2026, 11, 30)
SOURCES = ("dora", "emplois-de-linclusion", "france-travail", "soliguide", "mes-aides", "action-logement")
HOURS = (
    "Mo-Fr 09:00-12:00,14:00-17:00; PH off",
    "24/7",
    "Mo-Sa 08:30-18:00",
    "Mo-Fr 09:00-17:00",
    "Mo-Fr 08:30-12:30,13:30-17:00",
    "Mo-Th 09:00-12:00,14:00-17:30; Fr 09:00-12:00",
    "Tu,Th 14:00-17:00",
    "Mo,We,Fr 09:00-12:00",
    "Mo-Fr 09:00-18:00; Sa 09:00-12:00; PH off",
    "We 14:00-18:00",
    "Mo-Fr 10:00-16:00; PH off",
    "Mo-Su 07:00-22:00",
    "Mo-Fr 09:00-12:00; Tu 14:00-17:00",
    "Sa 09:00-12:30",
    "Mo-Fr 08:00-20:00; Sa 09:00-13:00",
    'Mo 09:00-12:00 "sur rendez-vous"',  # a comment: not carried over
    "Mo-Fr 09:00-17:00; Jul-Aug off",  # seasonal: not carried over
    "Th 18:00-20:00",
    "Mo-Fr 13:30-17:30",
    "Tu-Sa 10:00-19:00",
    "Mo-Fr 09:00-12:00,14:00-16:30; PH off",
)
PUBLICS = (
    (["tous-publics"], 40),
    (["jeunes"], 15),
    (["familles"], 12),
    (["femmes"], 6),
    (["familles", "femmes"], 5),
    (["jeunes", "etudiants"], 5),
    (["personnes-exilees"], 5),
    (["demandeurs-emploi", "jeunes"], 5),
    (["seniors"], 4),
    (["personnes-en-situation-de-handicap"], 3),
)
NAMES = (
    "Hébergement d'urgence",
    "Accueil de jour",
    "Permanence d'accès aux droits",
    "Consultation jeunes consommateurs",
    "Point écoute parents",
    "Épicerie solidaire",
    "Centre de santé sexuelle",
    "Maison des adolescents",
    "Point justice",
    "Médiation familiale",
    "Centre médico-psychologique",
    "Distribution alimentaire",
)
SENTENCES = (
    "Accueil inconditionnel des personnes et de leurs familles, avec ou sans rendez-vous.",
    "Une équipe de professionnels écoute, informe et oriente vers les partenaires du territoire.",
    "Le service est gratuit et confidentiel ; un interprète peut être sollicité si besoin.",
    "Les mineurs peuvent être reçus seuls ; les parents sont associés quand c'est possible.",
    "Un accompagnement dans les démarches administratives est proposé sur place.",
    "Les orientations se font par les travailleurs sociaux ou directement par les personnes.",
    "Des permanences ont lieu dans plusieurs communes du département, voir le calendrier.",
    "Merci de vous munir d'une pièce d'identité et des justificatifs dont vous disposez.",
)
IN_SCOPE = sorted(DATA_INCLUSION_IMPORT)
OUT_OF_SCOPE = sorted(t.value for t in Thematique if t.value not in DATA_INCLUSION_IMPORT)
BAD_KINDS = (
    "date_maj in the future",
    "nom too short",
    "tous-publics with another public",
    "unknown commune code",
    "unknown EPCI",
    "unknown département",
    "missing structure",
    "a-distance without a zone",
)
# The bare table of the COPY ceiling: the columns of the generated services, as they are in the JSON.
BARE_COLUMNS = (
    ("source", "text"),
    ("id", "text"),
    ("structure_id", "text"),
    ("nom", "text"),
    ("description", "text"),
    ("date_maj", "date"),
    ("thematiques", "text[]"),
    ("publics", "text[]"),
    ("modes_accueil", "text[]"),
    ("code_insee", "text"),
    ("adresse", "text"),
    ("longitude", "float8"),
    ("latitude", "float8"),
    ("horaires_accueil", "text"),
    ("zone_eligibilite", "text[]"),
    ("telephone", "text"),
    ("courriel", "text"),
    ("lien_source", "text"),
)


# --- databases -------------------------------------------------------------------------------


def template_current(cluster: Cluster) -> bool:
    with psycopg.connect(cluster.url("postgres", driver="postgresql"), autocommit=True) as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", (TEMPLATE,)
        ).fetchone()
    return row is not None and row[0] == fingerprint()


def own_database(cluster: Cluster, suffix: str) -> str:
    """A database of this run's own, loaded with the reference data; its name."""
    if template_current(cluster):
        for _ in range(20):
            try:
                return create_test_database(cluster, suffix)
            except psycopg.errors.ObjectInUse:  # someone is connected to the template: try again
                time.sleep(3)
    # No current template, and it is not ours to rebuild: migrate and seed as `maillage seed` does.
    from directory import coverage, hours
    from directory.seeding import seed_collective, seed_crips, seed_hotline, seed_specialisms
    from geo.calendars import load_public_holidays
    from geo.loading import load_territories

    name = f"maillage_bench_{os.getpid()}{suffix}"
    print(f"the test template is missing or stale: migrating and seeding '{name}' (a few minutes)")
    cluster.drop_database(name)
    cluster.ensure_database(name)
    upgrade(cluster.url(name))
    with psycopg.connect(libpq_url(cluster.url(name))) as conn:
        load_territories(conn)
        load_public_holidays(conn)
        seed_specialisms(conn)
        seed_hotline(conn)
        seed_crips(conn)
        seed_collective(conn, REPO_ROOT / "seeds")
        coverage.refresh(conn)
        hours.refresh(conn)
    return name


# --- the synthetic extract -------------------------------------------------------------------


@dataclass(frozen=True)
class Places:
    communes: list[tuple[str, str, float, float]]  # code, département, longitude, latitude
    by_departement: dict[str, list[int]]  # indexes into communes
    departements: list[str]
    epci_of: dict[str, str]  # commune → its EPCI
    epcis: list[str]


def read_places(url: str) -> Places:
    """Real communes with a point inside their boundary, and EPCIs with communes."""
    with psycopg.connect(url) as conn:
        communes = [
            (str(code), str(dep), float(lon), float(lat))
            for code, dep, lon, lat in conn.execute(
                """SELECT code, departement_code, ST_X(point), ST_Y(point) FROM commune
                    WHERE point IS NOT NULL AND ST_Covers(boundary, point) ORDER BY code"""
            )
        ]
        epcis = conn.execute("SELECT code, communes FROM epci WHERE cardinality(communes) > 0 ORDER BY code").fetchall()
    by_departement: dict[str, list[int]] = {}
    for index, commune in enumerate(communes):
        by_departement.setdefault(commune[1], []).append(index)
    epci_of = {member: str(code) for code, members in epcis for member in members}
    return Places(communes, by_departement, sorted(by_departement), epci_of, [str(code) for code, _ in epcis])


def _day(rng: random.Random) -> str:
    last = min(LAST_DAY, date.today())
    return (FIRST_DAY + timedelta(days=rng.randrange((last - FIRST_DAY).days + 1))).isoformat()


def _phone(rng: random.Random) -> str:
    digits = f"0{rng.randint(1, 5)}{rng.randrange(10**8):08d}"
    style = rng.random()
    if style < 0.4:
        return " ".join(digits[i : i + 2] for i in range(0, 10, 2))
    if style < 0.7:
        return "+33" + digits[1:]
    if style < 0.95:
        return digits
    return "tél. " + digits  # not a phone number Maillage accepts: left out


def _description(rng: random.Random) -> str:
    return " ".join(rng.sample(SENTENCES, rng.randint(2, 5)))


def structure_source(index: int) -> str:
    return SOURCES[index % len(SOURCES)]


def structures(rng: random.Random, count: int) -> Iterator[dict[str, Any]]:
    siret = ""
    for i in range(count):
        source = structure_source(i)
        if not siret or rng.random() >= SHARED_SIRET_SHARE:
            siret = f"{rng.randrange(10**9):09d}{rng.randrange(10**5):05d}"
        row: dict[str, Any] = {
            "source": source,
            "id": f"{source}--s{i}",
            "nom": "ab" if rng.random() < BAD_STRUCTURE_SHARE else f"{rng.choice(NAMES)} — structure {i}",
            "date_maj": _day(rng),
            "description": _description(rng),
            "telephone": _phone(rng),
            "courriel": f"contact@structure-{i}.fr",
            "site_web": f"{'http' if rng.random() < 0.1 else 'https'}://structure-{i}.fr",
        }
        if rng.random() < 0.8:
            row["siret"] = siret
        yield row


def _zone(rng: random.Random, places: Places, commune: tuple[str, str, float, float], *, required: bool) -> Any:
    draw = rng.random() * (0.8 if required else 1.0)
    code, departement = commune[0], commune[1]
    if draw < 0.35:
        return [departement]
    if draw < 0.55:
        neighbours = places.by_departement[departement]
        picked = {places.communes[rng.choice(neighbours)][0] for _ in range(rng.randint(1, 6))}
        return sorted(picked | {code})
    if draw < 0.67:
        return [places.epci_of.get(code) or rng.choice(places.epcis)]
    if draw < 0.77:
        return ["france"]
    if draw < 0.8:
        return sorted({departement, rng.choice(places.departements)})
    return None


def services(rng: random.Random, count: int, structure_count: int, places: Places) -> Iterator[dict[str, Any]]:
    publics, weights = zip(*PUBLICS, strict=True)
    for j in range(count):
        s = rng.randrange(structure_count)
        source = structure_source(s)
        commune = places.communes[rng.randrange(len(places.communes))]
        in_scope = rng.random() >= OUT_OF_SCOPE_SHARE
        bad = rng.choice(BAD_KINDS) if in_scope and rng.random() < BAD_SERVICE_SHARE else None
        if in_scope:
            thematiques = rng.sample(IN_SCOPE, rng.choice((1, 1, 1, 2, 2, 3)))
            if rng.random() < 0.3:
                thematiques.append(rng.choice(OUT_OF_SCOPE))
        else:
            thematiques = rng.sample(OUT_OF_SCOPE, rng.randint(1, 3))
        in_person = rng.random() < 0.7
        modes = ["en-presentiel"] if in_person else ["a-distance"]
        if in_person and rng.random() < 0.2:
            modes.append("a-distance")
        row: dict[str, Any] = {
            "source": source,
            "id": f"{source}--v{j}",
            "structure_id": f"{source}--s{s}",
            "nom": f"{rng.choice(NAMES)} n°{j}",
            "description": _description(rng),
            "date_maj": _day(rng),
            "lien_source": f"https://{source}.example.fr/services/{j}",
            "thematiques": thematiques,
            "publics": rng.choices(publics, weights)[0],
            "modes_accueil": modes,
            "zone_eligibilite": _zone(rng, places, commune, required=not in_person),
            "telephone": _phone(rng) if rng.random() < 0.8 else None,
            "courriel": f"service-{j}@structure-{s}.fr" if rng.random() < 0.5 else None,
            "horaires_accueil": rng.choice(HOURS) if rng.random() < 0.8 else None,
        }
        if in_person:
            row |= {
                "code_insee": commune[0],
                "adresse": f"{rng.randint(1, 120)} rue de la République",
                "longitude": commune[2],
                "latitude": commune[3],
            }
        if bad == "date_maj in the future":
            row["date_maj"] = "2099-01-01"
        elif bad == "nom too short":
            row["nom"] = "ab"
        elif bad == "tous-publics with another public":
            row["publics"] = ["tous-publics", "jeunes"]
        elif bad == "unknown commune code":
            row["code_insee"] = "00000"
            row["modes_accueil"] = ["en-presentiel"]
        elif bad == "unknown EPCI":
            row["zone_eligibilite"] = ["999999999"]
        elif bad == "unknown département":
            row["zone_eligibilite"] = ["00"]
        elif bad == "missing structure":
            row["structure_id"] = f"{source}--nowhere-{j}"
        elif bad == "a-distance without a zone":
            row |= {"modes_accueil": ["a-distance"], "zone_eligibilite": None}
            for key in ("code_insee", "adresse", "longitude", "latitude"):
                row.pop(key, None)
        yield {key: value for key, value in row.items() if value is not None}


def write_array(path: Path, items: Iterable[dict[str, Any]]) -> int:
    """A JSON array written item by item; the number of items."""
    count = 0
    with path.open("w", encoding="utf-8") as out:
        out.write("[")
        for item in items:
            out.write(",\n" if count else "\n")
            out.write(json.dumps(item, ensure_ascii=False))
            count += 1
        out.write("\n]\n")
    return count


def write_extract(directory: Path, places: Places, service_count: int, seed: int) -> dict[str, Any]:
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    structure_count = max(1, int(service_count * STRUCTURES_PER_SERVICE))
    started = time.monotonic()
    write_array(directory / "structures.json", structures(rng, structure_count))
    write_array(directory / "services.json", services(rng, service_count, structure_count, places))
    return {
        "structures": structure_count,
        "services": service_count,
        "seconds": time.monotonic() - started,
        "megabytes": sum((directory / f).stat().st_size for f in ("structures.json", "services.json")) / 2**20,
    }


# --- the import, in a child process ------------------------------------------------------------


def vmhwm_kb(pid: int | str = "self") -> int:
    """A process's peak resident set so far (Linux), in kB; 0 when it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


class TimedConnection(psycopg.Connection[Any]):
    """A connection that keeps the duration of every `execute` (the import's set-wise statements; its
    staging goes through a cursor) and calls `on_execute` before each."""

    timings: list[tuple[float, str]]
    on_execute: Callable[[], None]

    def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        self.on_execute()
        started = time.monotonic()
        try:
            return super().execute(query, *args, **kwargs)
        finally:
            self.timings.append((time.monotonic() - started, " ".join(str(query).split())))


def import_in_child(url: str, directory: str, messages: Any) -> None:
    """One `maillage import data-inclusion DIRECTORY` (without its progress bar), committed, in a process
    of its own; tells `messages` when it is connected, when the staging loop is over, and its result.
    PL/pgSQL functions are timed (track_functions) to say which triggers the statements' time went to."""
    try:
        from sync import data_inclusion

        baseline = vmhwm_kb()
        rows = 0
        last_row = staged = 0.0

        def tick() -> None:
            nonlocal rows, last_row
            rows += 1
            last_row = time.monotonic()

        def on_execute() -> None:
            nonlocal staged
            if rows and not staged:  # the first statement after the rows were read and copied
                staged = last_row
                messages.put({"event": "staged", "staging_seconds": staged - started, "staged_peak_kb": vmhwm_kb()})

        started = time.monotonic()
        with TimedConnection.connect(url) as conn:
            conn.timings, conn.on_execute = [], on_execute
            messages.put({"event": "connected", "backend_pid": conn.info.backend_pid, "baseline_kb": baseline})
            conn.execute("SET track_functions = 'pl'")
            conn.timings.clear()
            report = data_inclusion.run(conn, data_inclusion.open_directory(Path(directory)), tick=tick)
            finished = time.monotonic()
            functions = conn.execute(
                """SELECT funcname, calls, total_time / 1000, self_time / 1000 FROM pg_stat_xact_user_functions
                    ORDER BY total_time DESC LIMIT 8"""
            ).fetchall()
            conn.commit()
            committed = time.monotonic()
        messages.put(
            {
                "event": "done",
                "seconds": committed - started,
                "sql_seconds": finished - staged,
                "commit_seconds": committed - finished,
                "slowest": sorted(conn.timings, reverse=True)[:5],
                "sql_statements": len(conn.timings) - 1,
                "functions": [tuple(row) for row in functions],
                "peak_kb": vmhwm_kb(),
                "read": dict(report.read),
                "tallies": {name: vars(getattr(report, name)) for name in ("organisations", "locations", "services")},
                "rejected": dict(report.rejected.most_common()),
                "skipped": dict(report.skipped.most_common()),
                "left_out": dict(report.left_out.most_common()),
            }
        )
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which prints it
        messages.put({"event": "failed", "error": f"{type(exc).__name__}: {exc}"})


def import_once(cluster: Cluster, url: str, directory: Path, budget: float) -> dict[str, Any]:
    """The import in a freshly spawned process (not forked: its peak RSS is only its own). Past
    `budget` seconds it is stopped (its backend terminated: the transaction rolls back) and the result
    says what its connection was running then."""
    context = multiprocessing.get_context("spawn")
    messages = context.Queue()
    child = context.Process(target=import_in_child, args=(url, str(directory), messages))
    started = time.monotonic()
    child.start()
    result: dict[str, Any] = {"finished": False}
    while result.get("event") not in ("done", "failed"):
        try:
            result.update(messages.get(timeout=max(0.01, started + budget - time.monotonic())))
        except queue.Empty:
            break
    if result.get("event") == "done":
        result["finished"] = True
    elif result.get("event") != "failed":
        result["peak_kb"] = vmhwm_kb(child.pid or 0)
        with psycopg.connect(cluster.url("postgres", driver="postgresql"), autocommit=True) as conn:
            row = conn.execute(
                """SELECT extract(epoch FROM now() - query_start)::float8, query, pg_terminate_backend(pid)
                     FROM pg_stat_activity WHERE pid = %s""",
                (result.get("backend_pid", 0),),
            ).fetchone()
        if row:
            result["running_seconds"], result["running"] = row[0], " ".join(str(row[1]).split())
        child.terminate()
    child.join()
    result["process_seconds"] = time.monotonic() - started
    return result


# --- the ceilings ----------------------------------------------------------------------------


def timed(work: Callable[[], int]) -> tuple[int, float]:
    started = time.monotonic()
    rows = work()
    return rows, time.monotonic() - started


def parse_only(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for _ in ijson.items(handle, "item", use_float=True))


def parse_and_validate(path: Path) -> int:
    count = 0
    with path.open("rb") as handle:
        for item in ijson.items(handle, "item", use_float=True):
            count += 1
            with contextlib.suppress(ValidationError):  # a bad row costs its validation all the same
                Service.model_validate(item)
    return count


def bare_row(item: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(item.get(column) for column, _ in BARE_COLUMNS)


def bare_copy(url: str, rows: Iterable[tuple[Any, ...]]) -> int:
    """COPY `rows` into a new unlogged table with the services' columns, committed, then dropped."""
    columns = ", ".join(f"{name} {kind}" for name, kind in BARE_COLUMNS)
    count = 0
    with psycopg.connect(url) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_bare_service")
        conn.execute(f"CREATE UNLOGGED TABLE bench_bare_service ({columns})")
        conn.commit()
        with conn.cursor() as cur, cur.copy("COPY bench_bare_service FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
                count += 1
        conn.commit()
        conn.execute("DROP TABLE bench_bare_service")
        conn.commit()
    return count


def ceilings(url: str, path: Path) -> dict[str, tuple[int, float]]:
    figures = {
        "ijson": timed(lambda: parse_only(path)),
        "validate": timed(lambda: parse_and_validate(path)),
    }
    with path.open("rb") as handle:
        parsed = [bare_row(item) for item in ijson.items(handle, "item", use_float=True)]
    figures["copy"] = timed(lambda: bare_copy(url, parsed))
    parsed.clear()

    def streamed() -> int:
        with path.open("rb") as handle:
            return bare_copy(url, (bare_row(item) for item in ijson.items(handle, "item", use_float=True)))

    figures["ijson_copy"] = timed(streamed)
    return figures


# --- report ----------------------------------------------------------------------------------


def rate(rows: int, seconds: float) -> float:
    return rows / seconds if seconds > 0 else 0.0


def megabytes(kb: int) -> float:
    return kb / 1024


def print_import(title: str, result: dict[str, Any], count: int, budget: float) -> None:
    if result.get("event") == "failed":
        print(f"{title}: failed: {result.get('error')}")
        return
    peak = f"peak RSS {megabytes(result.get('peak_kb', 0)):.0f} MB"
    if result["finished"]:
        print(
            f"{title}: {result['seconds']:.1f} s = {rate(count, result['seconds']):,.0f} services/s"
            f" (the child process from spawn to exit: {result['process_seconds']:.1f} s); {peak}"
            f" (after its imports, before reading: {megabytes(result['baseline_kb']):.0f} MB)"
        )
    else:
        print(f"{title}: UNFINISHED after the budget of {budget:.0f} s, stopped and rolled back; {peak} by then")
    if "staging_seconds" in result:
        print(
            f"  staging loop (read, validate, map, COPY) {result['staging_seconds']:.1f} s"
            f" = {rate(count, result['staging_seconds']):,.0f} services/s,"
            f" peak RSS {megabytes(result['staged_peak_kb']):.0f} MB at its end"
        )
    if not result["finished"]:
        if "running" in result:
            print(
                f"  at the deadline its connection had been running one statement for"
                f" {result['running_seconds']:.0f} s: {result['running'][:110]}"
            )
        return
    print(
        f"  set-wise SQL after it: {result['sql_statements']} statements, {result['sql_seconds']:.1f} s;"
        f" commit {result['commit_seconds']:.1f} s; the slowest statements:"
    )
    for seconds, label in result["slowest"]:
        print(f"    {seconds:7.2f} s  {label[:110]}")
    print("  PL/pgSQL functions (triggers and what they call), total and own time:")
    for function, calls, total, own in result["functions"]:
        print(f"    {total:7.2f} s  (own {own:6.2f} s, {calls:>6,} calls)  {function}")
    print("  read " + ", ".join(f"{n:,} {kind}" for kind, n in sorted(result["read"].items())))
    for name, tally in result["tallies"].items():
        print(
            f"  {name:14} created {tally['created']:>7,}  updated {tally['updated']:>7,}"
            f"  unchanged {tally['unchanged']:>7,}  archived {tally['archived']:>5,}  kept {tally['kept']:>5,}"
        )
    for heading, counter in (("rejected", result["rejected"]), ("left out", result["skipped"])):
        for reason, n in counter.items():
            print(f"  {heading}: {n:,} × {reason}")
    for value, n in list(result["left_out"].items())[:6]:
        print(f"  not carried over: {n:,} × {value}")


def seconds_or_none(result: dict[str, Any], key: str = "seconds") -> float | None:
    value = result.get(key) if result.get("finished") or key == "staging_seconds" else None
    return round(value, 2) if isinstance(value, float) else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", type=int, default=100_000, help="services in the extract")
    parser.add_argument("--small", type=int, default=SMALL_SERVICES, help="services in the extract for memory")
    parser.add_argument("--budget", type=float, default=180, help="seconds each import may take before it is stopped")
    parser.add_argument(
        "--stale-statistics", action="store_true", help="re-import without ANALYZE after the first import"
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    cluster = Cluster(Settings().var_dir)
    cluster.start()
    created: list[str] = []
    labels = {
        "ijson": "ijson parse alone",
        "validate": "ijson + Service.model_validate",
        "copy": "COPY of the parsed rows (unlogged)",
        "ijson_copy": "ijson streamed into that COPY",
    }
    try:
        name = own_database(cluster, SUFFIX)
        created.append(name)
        url = libpq_url(cluster.url(name))
        small_name = own_database(cluster, SUFFIX + "_small")
        created.append(small_name)
        small_url = libpq_url(cluster.url(small_name))
        with psycopg.connect(url) as conn:
            server = conn.execute("SHOW server_version").fetchone()
        print(
            f"databases '{name}' and '{small_name}'; PostgreSQL {server[0] if server else '?'};"
            f" ijson backend {ijson.backend}; {os.cpu_count()} cores; each import stopped after {args.budget:.0f} s"
        )
        places = read_places(url)
        with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
            big, small = Path(tmp) / "big", Path(tmp) / "small"
            extract = write_extract(big, places, args.services, args.seed)
            small_extract = write_extract(small, places, args.small, args.seed + 1)
            print(
                f"extract: {extract['structures']:,} structures and {extract['services']:,} services"
                f" ({extract['megabytes']:.0f} MB of JSON), written in {extract['seconds']:.1f} s"
                f" from {len(places.communes):,} communes and {len(places.epcis):,} EPCIs;"
                f" the small one: {small_extract['structures']:,} and {small_extract['services']:,}"
                f" ({small_extract['megabytes']:.0f} MB)"
            )

            print(f"ceilings on the same {args.services:,} services (services.json only, no structures):")
            bare = ceilings(url, big / "services.json")
            for key, label in labels.items():
                rows, seconds = bare[key]
                print(f"  {label:36} {rate(rows, seconds):>9,.0f} rows/s  ({seconds:.2f} s, {rows:,} rows)")

            first = import_once(cluster, url, big, args.budget)
            print_import("first import (all creates)", first, args.services, args.budget)
            again: dict[str, Any] = {"finished": False}
            if first["finished"]:
                if not args.stale_statistics:
                    started = time.monotonic()
                    with psycopg.connect(url, autocommit=True) as conn:
                        conn.execute("ANALYZE")
                    print(
                        f"ANALYZE of the database, as autovacuum does between two imports:"
                        f" {time.monotonic() - started:.1f} s"
                    )
                again = import_once(cluster, url, big, args.budget)
                print_import("re-import of the same extract (nothing changes)", again, args.services, args.budget)
            else:
                print("re-import: not run (the first import did not finish)")
            small_run = import_once(cluster, small_url, small, args.budget)
            print_import(f"first import of the {args.small:,}-service extract", small_run, args.small, args.budget)
    finally:
        for database in created:
            cluster.drop_database(database)

    print(
        f"peak RSS of the importing process: {megabytes(small_run.get('peak_kb', 0)):.0f} MB with"
        f" {args.small:,} services, {megabytes(first.get('peak_kb', 0)):.0f} MB with {args.services:,}"
        f" (at the end of staging: {megabytes(small_run.get('staged_peak_kb', 0)):.0f} MB and"
        f" {megabytes(first.get('staged_peak_kb', 0)):.0f} MB; before reading, the interpreter and its libraries:"
        f" {megabytes(first.get('baseline_kb', 0)):.0f} MB)"
    )
    columns = {
        "first import, staging loop": rate(args.services, first.get("staging_seconds", 0.0)),
        "first import": rate(args.services, first["seconds"]) if first["finished"] else None,
        "re-import": rate(args.services, again["seconds"]) if again["finished"] else None,
    }
    states = ["unfinished", "unfinished", "unfinished" if "event" in again else "not run"]
    print("the import beside the ceilings (services/s, and as a share of the ceiling):")
    for key, label in labels.items():
        ceiling = rate(*bare[key])
        cells = [
            f"{column} " + (f"{value:,.0f} ({value / ceiling:.1%})" if value else state)
            for (column, value), state in zip(columns.items(), states, strict=True)
        ]
        print(f"  {label:36} {ceiling:>9,.0f}:  " + ";  ".join(cells))
    services = first.get("tallies", {}).get("services", {})
    summary = {
        "services": args.services,
        "structures": extract["structures"],
        "budget_s": args.budget,
        "first_import_finished": first["finished"],
        "first_import_s": seconds_or_none(first),
        "first_import_rows_per_s": round(columns["first import"] or 0) or None,
        "first_import_staging_s": seconds_or_none(first, "staging_seconds"),
        "first_import_staging_rows_per_s": round(columns["first import, staging loop"]) or None,
        "first_import_sql_s": seconds_or_none(first, "sql_seconds"),
        "reimport_finished": again["finished"],
        "reimport_s": seconds_or_none(again),
        "reimport_rows_per_s": round(columns["re-import"] or 0) or None,
        "peak_rss_mb": round(megabytes(first.get("peak_kb", 0)), 1),
        f"peak_rss_{args.small}_mb": round(megabytes(small_run.get("peak_kb", 0)), 1),
        "baseline_rss_mb": round(megabytes(first.get("baseline_kb", small_run.get("baseline_kb", 0))), 1),
        **{f"{key}_rows_per_s": round(rate(*bare[key])) for key in labels},
        "services_created": services.get("created"),
        "services_unchanged_on_reimport": again.get("tallies", {}).get("services", {}).get("unchanged"),
        "rejected": sum(first["rejected"].values()) if first["finished"] else None,
        "skipped": sum(first["skipped"].values()) if first["finished"] else None,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
