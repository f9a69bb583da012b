"""Listings imported from an outside source (data·inclusion): staged, checked and upserted set-wise.

Rows arrive already mapped to Maillage's terms (sync/data_inclusion.py) and are copied into
temporary staging tables, so memory stays bounded however large the source is; everything after is
SQL over whole sets, in the caller's one transaction: a run is all or nothing, and a re-run with the
same data changes nothing.

Rules (the README's "Open data in" section says them to users):
- Every imported row carries its provenance: source, id there, the source's update date, and when an
  import last wrote it. Rows are matched on (source, source_id); organisations on their SIRET when
  the source gives one (several structures of the same establishment become one organisation), else
  on the structure's id.
- A re-import updates what changed, archives what disappeared from the source (services, locations;
  organisations are deactivated), and brings back what reappears.
- What Maillage's people manage is never overwritten: an organisation with an active partner client
  or identity binding, or any listing change made by someone other than the import, is left as it is
  (counted as "kept"). An organisation already in Maillage with the same SIRET (a partner that joined
  directly) is never duplicated: that structure and its services are left out (counted).
- An imported location is public (a database check says so too); a point the source gives counts
  only inside its commune (200 m of slack for the boundary's generalisation), else the location
  stands at the commune's point with `point_precision = commune`.
- A row that cannot be imported whole is rejected with its reason, never half-imported.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from .areas import REFRESH

IMPORTER = "import:{source}"  # the actor of an import's listing revisions
EXAMPLES = 5  # rejected ids kept per reason in the report
# An extract that would archive more than this share of the imported services (and more than a few)
# is refused unless asked for: a partial download must not empty the directory.
MASS_ARCHIVE_SHARE = 0.3
MASS_ARCHIVE_MIN = 20


@dataclass(frozen=True)
class StructureRow:
    source_id: str
    siret: str | None
    name: str
    description: str | None
    website: str | None
    email: str | None
    phone: str | None
    updated_on: date


@dataclass(frozen=True)
class ServiceRow:
    source_id: str
    structure_id: str
    name: str
    description: str | None
    # 18 when the source's publics are adults only (never a child's door); otherwise unknown.
    age_min: int | None
    specialisms: list[str]
    audiences: list[str]
    genders: list[str]
    channels: list[str]
    phone: str | None
    email: str | None
    website: str | None
    schedule: dict[str, Any]
    updated_on: date
    # Where people are received, when they are (modes_accueil en-presentiel).
    commune_code: str | None
    address: str | None
    lon: float | None
    lat: float | None
    # zone_eligibilite: communes, départements, EPCIs (SIREN), or all of France.
    area_communes: list[str]
    area_departements: list[str]
    area_epcis: list[str]
    national: bool


@dataclass(frozen=True)
class Rejection:
    source_id: str
    reason: str  # a category, the same for every row it applies to
    detail: str = ""
    # A rejected structure's SIRET when it has a valid one: the organisation it made is still listed.
    siret: str | None = None


@dataclass
class Tally:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    archived: int = 0
    kept: int = 0  # managed in Maillage: left as it is


@dataclass
class ImportReport:
    organisations: Tally = field(default_factory=Tally)
    locations: Tally = field(default_factory=Tally)
    services: Tally = field(default_factory=Tally)
    rejected: Counter[str] = field(default_factory=Counter)
    rejected_examples: dict[str, list[str]] = field(default_factory=dict)
    # Rows deliberately left out, by reason (out of Maillage's scope, already listed by a partner).
    skipped: Counter[str] = field(default_factory=Counter)
    # Values not carried over, by field and value (unmapped thématiques, a site that is not https…).
    left_out: Counter[str] = field(default_factory=Counter)
    read: Counter[str] = field(default_factory=Counter)

    def reject(self, rejection: Rejection, count: int = 1) -> None:
        self.rejected[rejection.reason] += count
        examples = self.rejected_examples.setdefault(rejection.reason, [])
        if len(examples) < EXAMPLES:
            examples.append(f"{rejection.source_id}: {rejection.detail}" if rejection.detail else rejection.source_id)


def _managed(organisation: str, source: str) -> str:
    """SQL: the organisation is managed in Maillage (its own people or an admin changed something)."""
    return f"""(EXISTS (SELECT 1 FROM api_client c WHERE c.organisation_id = {organisation} AND c.revoked_at IS NULL)
        OR EXISTS (SELECT 1 FROM identity_binding b WHERE b.organisation_id = {organisation} AND b.revoked_at IS NULL)
        OR EXISTS (SELECT 1 FROM listing_revision r WHERE r.organisation_id = {organisation}
                    AND r.actor_subject <> '{IMPORTER.format(source=source)}'))"""


_STAGE = """
CREATE TEMP TABLE stage_structure (
    source_id text, siret text, name text, description text, website text, email text, phone text,
    updated_on date, dedupe_key text, rejected bool
) ON COMMIT DROP;
CREATE TEMP TABLE stage_service (
    source_id text, structure_id text, name text, description text, age_min smallint, specialisms varchar[],
    audiences varchar[],
    genders varchar[], channels varchar[], phone text, email text, website text, schedule jsonb, updated_on date,
    commune_code text, address text, lon float8, lat float8, area_communes varchar[], area_departements varchar[],
    area_epcis varchar[], national bool, rejected text, rejected_detail text, exact bool
) ON COMMIT DROP;
"""


def _stage(
    conn: psycopg.Connection,
    structures: Iterable[StructureRow | Rejection],
    services: Iterable[ServiceRow | Rejection],
    report: ImportReport,
    tick: Callable[[], None],
) -> None:
    with conn.cursor() as cur:
        cur.execute(_STAGE)
        seen: set[str] = set()  # structure ids (services' are checked in SQL)
        with cur.copy("COPY stage_structure FROM STDIN") as copy:
            for row in structures:
                tick()
                if row.source_id in seen and not isinstance(row, Rejection):
                    row = Rejection(row.source_id, "duplicate structure id in the source", "", row.siret)
                seen.add(row.source_id)
                key = f"siret:{row.siret}" if row.siret else row.source_id
                if isinstance(row, Rejection):
                    report.reject(row)
                    # Staged as rejected: the organisation imported before stays while the row is broken.
                    copy.write_row((row.source_id, row.siret, *([None] * 6), key, True))
                    continue
                copy.write_row(
                    (row.source_id, row.siret, row.name, row.description, row.website, row.email, row.phone,
                     row.updated_on, key, False)
                )  # fmt: skip
        cur.execute("CREATE INDEX ON stage_structure (source_id)")
        with cur.copy("COPY stage_service FROM STDIN") as copy:
            for item in services:
                tick()
                if isinstance(item, Rejection):
                    report.reject(item)
                    # Staged as rejected: a listing imported before is kept, not archived, while the
                    # source's row is broken.
                    copy.write_row((item.source_id, *([None] * 21), item.reason, item.detail, None))
                    continue
                copy.write_row(
                    (item.source_id, item.structure_id, item.name, item.description, item.age_min, item.specialisms,
                     item.audiences,
                     item.genders, item.channels, item.phone, item.email, item.website, Jsonb(item.schedule),
                     item.updated_on, item.commune_code, item.address, item.lon, item.lat, item.area_communes,
                     item.area_departements, item.area_epcis, item.national, None, None, None)
                )  # fmt: skip
        cur.execute("CREATE INDEX ON stage_service (source_id)")
        cur.execute("CREATE INDEX ON stage_service (structure_id)")
        cur.execute("CREATE INDEX ON stage_structure (dedupe_key)")
        cur.execute("ANALYZE stage_structure")
        cur.execute("ANALYZE stage_service")


# Checks that need the database, in order; each rejects what is still unrejected. (reason, detail SQL,
# condition SQL) over stage_service s.
_CHECKS = (
    (
        "duplicate service id in the source",
        "''",
        "(SELECT count(*) FROM stage_service d WHERE d.source_id = s.source_id) > 1",
    ),
    (
        "its structure is missing or was rejected",
        "'structure ' || s.structure_id",
        "NOT EXISTS (SELECT 1 FROM stage_structure t WHERE t.source_id = s.structure_id AND NOT t.rejected)",
    ),
    (
        "unknown commune code",
        "s.commune_code",
        "s.commune_code IS NOT NULL AND NOT EXISTS (SELECT 1 FROM commune c WHERE c.code = s.commune_code)",
    ),
    (
        "zone_eligibilite names an unknown commune",
        "(SELECT string_agg(x, ', ') FROM unnest(s.area_communes) x WHERE x NOT IN (SELECT code FROM commune))",
        "EXISTS (SELECT 1 FROM unnest(s.area_communes) x WHERE x NOT IN (SELECT code FROM commune))",
    ),
    (
        "zone_eligibilite names an unknown département",
        "(SELECT string_agg(x, ', ') FROM unnest(s.area_departements) x WHERE x NOT IN (SELECT code FROM departement))",
        "EXISTS (SELECT 1 FROM unnest(s.area_departements) x WHERE x NOT IN (SELECT code FROM departement))",
    ),
    (
        "zone_eligibilite names an unknown EPCI",
        "(SELECT string_agg(x, ', ') FROM unnest(s.area_epcis) x"
        " WHERE x NOT IN (SELECT code FROM epci WHERE cardinality(communes) > 0))",
        "EXISTS (SELECT 1 FROM unnest(s.area_epcis) x"
        " WHERE x NOT IN (SELECT code FROM epci WHERE cardinality(communes) > 0))",
    ),
)


def _check(conn: psycopg.Connection, report: ImportReport) -> None:
    for reason, detail, condition in _CHECKS:
        conn.execute(
            f"""UPDATE stage_service s SET rejected = %(reason)s, rejected_detail = {detail}
                 WHERE s.rejected IS NULL AND {condition}""",
            {"reason": reason},
        )
    rows = conn.execute(
        """SELECT rejected, count(*), (array_agg(source_id || coalesce(': ' || nullif(rejected_detail, ''), '')
                                                 ORDER BY source_id))[1:%(n)s]
             FROM stage_service WHERE rejected IS NOT NULL AND structure_id IS NOT NULL GROUP BY rejected""",
        {"n": EXAMPLES},
    ).fetchall()
    for reason, count, examples in rows:
        report.rejected[reason] += count
        report.rejected_examples.setdefault(reason, []).extend(
            examples[: EXAMPLES - len(report.rejected_examples.get(reason, []))]
        )
    # A point counts where it lies in its commune; elsewhere the commune's point stands in.
    conn.execute(
        """UPDATE stage_service s SET exact = (s.lon IS NOT NULL AND s.lat IS NOT NULL AND EXISTS (
               SELECT 1 FROM commune c WHERE c.code = s.commune_code
                  AND ST_DWithin(c.boundary::geography, ST_SetSRID(ST_MakePoint(s.lon, s.lat), 4326)::geography, 200)))
            WHERE s.rejected IS NULL AND s.commune_code IS NOT NULL"""
    )
    outside = conn.execute(
        "SELECT count(*) FROM stage_service WHERE rejected IS NULL AND lon IS NOT NULL AND NOT exact"
    ).fetchone()
    if outside and outside[0]:
        report.left_out["point outside its commune (the commune's point stands in)"] += outside[0]


def _tally(rows: list[tuple[bool]], tally: Tally) -> None:
    for (inserted,) in rows:
        if inserted:
            tally.created += 1
        else:
            tally.updated += 1


def _upsert(conn: psycopg.Connection, source: str, report: ImportReport) -> list[uuid.UUID]:
    """Organisations, locations, services and areas; returns the services whose areas changed."""
    managed_o = _managed("o.id", source)
    # The organisation a row belongs to now: a row of a managed organisation never moves or changes,
    # whatever organisation the source now gives it.
    managed_l = _managed("l.organisation_id", source)
    managed_v = _managed("v.organisation_id", source)
    params = {"source": source, "importer": IMPORTER.format(source=source)}
    # Structures that are already organisations of Maillage's own (same SIRET, not imported).
    conn.execute(
        """CREATE TEMP TABLE stage_listed ON COMMIT DROP AS
           SELECT DISTINCT t.dedupe_key FROM stage_structure t JOIN organisation o ON o.siret = t.siret
            WHERE t.siret IS NOT NULL AND NOT t.rejected AND o.source IS DISTINCT FROM %(source)s""",
        params,
    )
    listed = conn.execute(
        """SELECT count(*) FROM stage_service s JOIN stage_structure t ON t.source_id = s.structure_id
            WHERE s.rejected IS NULL AND t.dedupe_key IN (SELECT dedupe_key FROM stage_listed)"""
    ).fetchone()
    if listed and listed[0]:
        report.skipped["its structure is already an organisation in Maillage (same SIRET)"] += listed[0]

    # The organisations, one per SIRET (the structure updated last speaks for it).
    rows = conn.execute(
        f"""
        WITH canon AS (
            SELECT DISTINCT ON (dedupe_key) * FROM stage_structure t
             WHERE NOT rejected AND dedupe_key NOT IN (SELECT dedupe_key FROM stage_listed)
               -- an organisation only for a structure with a service in scope (a directory of the
               -- whole référentiel's employment offices would be noise), or one imported before
               AND (EXISTS (SELECT 1 FROM stage_service s JOIN stage_structure u ON u.source_id = s.structure_id
                             WHERE s.rejected IS NULL AND u.dedupe_key = t.dedupe_key)
                    OR EXISTS (SELECT 1 FROM organisation o WHERE o.source = %(source)s
                                AND o.source_id = t.dedupe_key))
             ORDER BY dedupe_key, updated_on DESC, source_id)
        INSERT INTO organisation AS o (id, name, kind, description, website, email, phone, siret, siren,
                                       verification, source, source_id, source_updated_on, imported_at)
        SELECT gen_random_uuid(), name, 'other', description, website, email, phone, siret, left(siret, 9),
               'unverified', %(source)s, dedupe_key, updated_on, now()
          FROM canon
        ON CONFLICT (source, source_id) WHERE source IS NOT NULL DO UPDATE SET
            name = EXCLUDED.name, description = EXCLUDED.description, website = EXCLUDED.website,
            email = EXCLUDED.email, phone = EXCLUDED.phone, siret = EXCLUDED.siret, siren = EXCLUDED.siren,
            source_updated_on = EXCLUDED.source_updated_on, imported_at = now(), deactivated_at = NULL,
            version = o.version + 1, updated_at = now()
         WHERE NOT {managed_o}
           AND ((o.name, o.description, o.website, o.email, o.phone, o.siret, o.source_updated_on)
                IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.description, EXCLUDED.website, EXCLUDED.email,
                                  EXCLUDED.phone, EXCLUDED.siret, EXCLUDED.source_updated_on)
                OR o.deactivated_at IS NOT NULL)
        RETURNING (xmax = 0)
        """,
        params,
    ).fetchall()
    _tally(rows, report.organisations)
    conn.execute(
        f"""CREATE TEMP TABLE stage_target ON COMMIT DROP AS
            SELECT s.source_id, o.id AS organisation_id, {managed_o} AS managed
              FROM stage_service s
              JOIN stage_structure t ON t.source_id = s.structure_id AND NOT t.rejected
              JOIN organisation o ON o.source = %(source)s AND o.source_id = t.dedupe_key
             WHERE s.rejected IS NULL AND t.dedupe_key NOT IN (SELECT dedupe_key FROM stage_listed)""",
        params,
    )
    conn.execute("CREATE INDEX ON stage_target (source_id)")
    conn.execute("ANALYZE stage_target")
    # Kept: the target organisation is managed, or the row is still with a managed organisation.
    managed_now = _managed("v.organisation_id", source)
    kept = conn.execute(
        f"""SELECT count(*) FROM stage_target g
              LEFT JOIN service v ON v.source = %(source)s AND v.source_id = g.source_id
             WHERE g.managed OR (v.id IS NOT NULL AND {managed_now})""",
        params,
    ).fetchone()
    report.services.kept += kept[0] if kept else 0

    rows = conn.execute(
        f"""
        INSERT INTO location AS l (id, organisation_id, address, commune_code, point, visibility, point_precision,
                                   source, source_id, source_updated_on, imported_at)
        SELECT gen_random_uuid(), g.organisation_id, s.address, s.commune_code,
               CASE WHEN s.exact THEN ST_SetSRID(ST_MakePoint(s.lon, s.lat), 4326) ELSE c.point END,
               'public', CASE WHEN s.exact THEN 'exact' ELSE 'commune' END,
               %(source)s, s.source_id, s.updated_on, now()
          FROM stage_service s
          JOIN stage_target g ON g.source_id = s.source_id AND NOT g.managed
          JOIN commune c ON c.code = s.commune_code
         WHERE s.rejected IS NULL
        ON CONFLICT (source, source_id) WHERE source IS NOT NULL DO UPDATE SET
            organisation_id = EXCLUDED.organisation_id, address = EXCLUDED.address,
            commune_code = EXCLUDED.commune_code, point = EXCLUDED.point, point_precision = EXCLUDED.point_precision,
            source_updated_on = EXCLUDED.source_updated_on, imported_at = now(), archived_at = NULL,
            version = l.version + 1, updated_at = now()
         WHERE NOT {managed_l}
           AND ((l.organisation_id, l.address, l.commune_code, l.point_precision, l.source_updated_on)
                IS DISTINCT FROM (EXCLUDED.organisation_id, EXCLUDED.address, EXCLUDED.commune_code,
                                  EXCLUDED.point_precision, EXCLUDED.source_updated_on)
               OR NOT ST_Equals(l.point, EXCLUDED.point) OR l.archived_at IS NOT NULL)
        RETURNING (xmax = 0)
        """,
        params,
    ).fetchall()
    _tally(rows, report.locations)

    rows = conn.execute(
        f"""
        INSERT INTO service AS v (id, organisation_id, location_id, name, description, age_min, specialisms,
                                  audiences, genders, channels, phone, email, website, schedule, source, source_id,
                                  source_updated_on, imported_at)
        SELECT gen_random_uuid(), g.organisation_id, l.id, s.name, s.description, s.age_min, s.specialisms,
               s.audiences,
               s.genders, s.channels, s.phone, s.email, s.website, s.schedule, %(source)s, s.source_id,
               s.updated_on, now()
          FROM stage_service s
          JOIN stage_target g ON g.source_id = s.source_id AND NOT g.managed
          LEFT JOIN location l ON l.source = %(source)s AND l.source_id = s.source_id AND s.commune_code IS NOT NULL
         WHERE s.rejected IS NULL
        ON CONFLICT (source, source_id) WHERE source IS NOT NULL DO UPDATE SET
            organisation_id = EXCLUDED.organisation_id, location_id = EXCLUDED.location_id, name = EXCLUDED.name,
            description = EXCLUDED.description, age_min = EXCLUDED.age_min, specialisms = EXCLUDED.specialisms,
            audiences = EXCLUDED.audiences,
            genders = EXCLUDED.genders, channels = EXCLUDED.channels, phone = EXCLUDED.phone, email = EXCLUDED.email,
            website = EXCLUDED.website, schedule = EXCLUDED.schedule, source_updated_on = EXCLUDED.source_updated_on,
            imported_at = now(), archived_at = NULL, version = v.version + 1, updated_at = now()
         WHERE NOT {managed_v}
           AND ((v.organisation_id, v.location_id, v.name, v.description, v.age_min, v.specialisms, v.audiences,
                 v.genders, v.channels, v.phone, v.email, v.website, v.schedule, v.source_updated_on)
               IS DISTINCT FROM (EXCLUDED.organisation_id, EXCLUDED.location_id, EXCLUDED.name, EXCLUDED.description,
                                 EXCLUDED.age_min, EXCLUDED.specialisms, EXCLUDED.audiences, EXCLUDED.genders,
                                 EXCLUDED.channels, EXCLUDED.phone, EXCLUDED.email, EXCLUDED.website, EXCLUDED.schedule,
                                 EXCLUDED.source_updated_on)
               OR v.archived_at IS NOT NULL)
        RETURNING id, (xmax = 0)
        """,
        params,
    ).fetchall()
    _tally([(inserted,) for _, inserted in rows], report.services)
    changed = [service_id for service_id, _ in rows]
    if changed:
        conn.execute(
            """INSERT INTO listing_revision (entity, entity_id, service_id, organisation_id, action, changes,
                                             actor_subject, actor_role)
               SELECT 'service', v.id, v.id, v.organisation_id, 'imported',
                      jsonb_build_object('source', v.source, 'source_id', v.source_id,
                                         'source_updated_on', v.source_updated_on),
                      %(importer)s, 'admin'
                 FROM service v WHERE v.id = ANY(%(ids)s)""",
            {**params, "ids": changed},
        )
    return _areas(conn, source)


def _areas(conn: psycopg.Connection, source: str) -> list[uuid.UUID]:
    """One area per imported service, from its zone_eligibilite (an EPCI as its communes); a service
    without a zone has none. Returns the services whose area changed."""
    rows = conn.execute(
        """
        WITH wanted AS (
            SELECT v.id AS service_id,
                   ARRAY(SELECT DISTINCT x FROM unnest(s.area_communes || coalesce(
                             (SELECT array_agg(m) FROM epci e, unnest(e.communes) m WHERE e.code = ANY(s.area_epcis)),
                             '{}')) x ORDER BY x)::varchar[] AS communes,
                   ARRAY(SELECT DISTINCT x FROM unnest(s.area_departements) x ORDER BY x)::varchar[] AS departements,
                   s.national
              FROM stage_service s
              JOIN stage_target g ON g.source_id = s.source_id AND NOT g.managed
              JOIN service v ON v.source = %(source)s AND v.source_id = s.source_id
             WHERE s.rejected IS NULL
        ), current AS (
            SELECT DISTINCT ON (a.service_id) a.* FROM service_area a
              JOIN wanted w ON w.service_id = a.service_id WHERE a.archived_at IS NULL
             ORDER BY a.service_id, a.created_at, a.id
        ), retired AS (
            UPDATE service_area a SET archived_at = now(), version = a.version + 1
              FROM wanted w
             WHERE a.service_id = w.service_id AND a.archived_at IS NULL
               AND NOT w.national AND cardinality(w.communes) = 0 AND cardinality(w.departements) = 0
            RETURNING a.service_id
        ), changed AS (
            UPDATE service_area a SET communes = w.communes, departements = w.departements, national = w.national,
                   version = a.version + 1
              FROM wanted w JOIN current c ON c.service_id = w.service_id
             WHERE a.id = c.id AND (w.national OR cardinality(w.communes) > 0 OR cardinality(w.departements) > 0)
               AND (a.communes, a.departements, a.national) IS DISTINCT FROM (w.communes, w.departements, w.national)
            RETURNING a.service_id
        ), created AS (
            INSERT INTO service_area (id, service_id, communes, departements, national)
            SELECT gen_random_uuid(), w.service_id, w.communes, w.departements, w.national
              FROM wanted w
             WHERE (w.national OR cardinality(w.communes) > 0 OR cardinality(w.departements) > 0)
               AND NOT EXISTS (SELECT 1 FROM current c WHERE c.service_id = w.service_id)
            RETURNING service_id
        )
        SELECT service_id FROM retired UNION SELECT service_id FROM changed UNION SELECT service_id FROM created
        """,
        {"source": source},
    ).fetchall()
    return [row[0] for row in rows]


class MassArchive(ValueError):
    """The extract would archive most of what was imported: a partial download, more likely than the
    closure of most services at once."""


def _archive(
    conn: psycopg.Connection, source: str, report: ImportReport, *, allow_mass_archive: bool
) -> list[uuid.UUID]:
    """What the source no longer lists: services and locations archived, organisations deactivated —
    unless managed in Maillage. A row the source still lists but that was rejected this time stays as
    it was imported last (a broken row is no news that the service closed)."""
    params = {"source": source, "importer": IMPORTER.format(source=source)}
    managed = _managed("x.organisation_id", source)
    gone, active = conn.execute(
        f"""SELECT count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM stage_service s WHERE s.source_id = x.source_id)
                                    AND NOT {managed}), count(*)
              FROM service x WHERE x.source = %(source)s AND x.archived_at IS NULL""",
        params,
    ).fetchone()  # type: ignore[misc]
    if not allow_mass_archive and gone > MASS_ARCHIVE_MIN and gone > active * MASS_ARCHIVE_SHARE:
        raise MassArchive(
            f"this extract would archive {gone} of the {active} services imported before: is it complete? "
            "(to archive them all the same: --allow-mass-archive)"
        )
    rows = conn.execute(
        f"""UPDATE service x SET archived_at = now(), version = x.version + 1, updated_at = now()
             WHERE x.source = %(source)s AND x.archived_at IS NULL
               AND NOT EXISTS (SELECT 1 FROM stage_service s WHERE s.source_id = x.source_id)
               AND NOT {managed}
            RETURNING x.id, x.organisation_id""",
        params,
    ).fetchall()
    report.services.archived += len(rows)
    if rows:
        conn.execute(
            """INSERT INTO listing_revision (entity, entity_id, service_id, organisation_id, action, changes,
                                             actor_subject, actor_role)
               SELECT 'service', x.id, x.id, x.organisation_id, 'archived',
                      jsonb_build_object('reason', 'no longer in the source'), %(importer)s, 'admin'
                 FROM service x WHERE x.id = ANY(%(ids)s)""",
            {**params, "ids": [row[0] for row in rows]},
        )
    located = conn.execute(
        f"""UPDATE location x SET archived_at = now(), version = x.version + 1, updated_at = now()
             WHERE x.source = %(source)s AND x.archived_at IS NULL
               AND NOT EXISTS (SELECT 1 FROM stage_service s WHERE s.source_id = x.source_id
                                AND (s.rejected IS NOT NULL OR s.commune_code IS NOT NULL))
               AND NOT {managed}
            RETURNING x.id""",
        params,
    ).fetchall()
    report.locations.archived += len(located)
    managed_o = _managed("x.id", source)
    deactivated = conn.execute(
        f"""UPDATE organisation x SET deactivated_at = now(), version = x.version + 1, updated_at = now()
             WHERE x.source = %(source)s AND x.deactivated_at IS NULL
               AND NOT EXISTS (SELECT 1 FROM stage_structure t JOIN stage_service s ON s.structure_id = t.source_id
                                WHERE t.dedupe_key = x.source_id)
               AND NOT EXISTS (SELECT 1 FROM stage_structure t WHERE t.dedupe_key = x.source_id AND t.rejected)
               AND NOT {managed_o}
            RETURNING x.id""",
        params,
    ).fetchall()
    report.organisations.archived += len(deactivated)
    return [row[0] for row in rows]


def run(
    conn: psycopg.Connection,
    *,
    source: str,
    structures: Iterable[StructureRow | Rejection],
    services: Iterable[ServiceRow | Rejection],
    report: ImportReport | None = None,
    tick: Callable[[], None] = lambda: None,
    allow_mass_archive: bool = False,
) -> ImportReport:
    """Import one full extract of `source` in the caller's transaction (commit it, or roll it back)."""
    report = report or ImportReport()
    # Set-wise statements over tens of thousands of rows: no JIT compilation (seconds per statement
    # for milliseconds of work), for this transaction only.
    conn.execute("SELECT set_config('jit', 'off', true)")
    _stage(conn, structures, services, report, tick)
    _check(conn, report)
    changed_areas = _upsert(conn, source, report)
    archived = _archive(conn, source, report, allow_mass_archive=allow_mass_archive)
    # Coverage (the union of a service's areas) of the services whose areas changed or that left.
    service_ids = sorted({*changed_areas, *archived})
    if service_ids:
        for statement in REFRESH:
            conn.execute(statement, {"service_ids": service_ids, "area_ids": None, "all": True})
    targets = conn.execute("SELECT count(*) FROM stage_target").fetchone()
    staged = targets[0] if targets else 0
    unchanged = max(0, staged - report.services.created - report.services.updated - report.services.kept)
    report.services.unchanged = unchanged
    conn.execute("DROP TABLE stage_target, stage_listed, stage_service, stage_structure")
    return report
