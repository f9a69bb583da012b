"""Idempotent seeds for the directory, upserted on their natural key (`seed_key`).

Seeded listings carry only what a public source gives: contact details stay empty and every
listing is `unverified` until its organisation confirms it (never invent a phone or an address).
"""

from __future__ import annotations

import csv
import re
import unicodedata
import uuid
from pathlib import Path

import psycopg

from geo.codes import commune_of

from .areas import REFRESH, rebuild_params
from .taxonomy import SLUGS, SPECIALISMS

ENSEMBLE_CONTRE_LA_TRAITE = "ensemble-contre-la-traite"
HOTLINE_SEED_KEY = "hotline:119"
CRIP_DESCRIPTION = (
    "Cellule départementale de recueil, de traitement et d'évaluation des informations préoccupantes "
    "relatives aux mineurs en danger ou en risque de l'être (article L226-3 du code de l'action sociale "
    "et des familles)."
)


def seed_hotline(conn: psycopg.Connection) -> None:
    """The 119 unit: the organisation specialists act for when they hand a case over."""
    conn.execute(
        """INSERT INTO organisation (id, name, kind, description, website, seat_commune_code, verification,
                                     verified_at, seed_key)
           VALUES (gen_random_uuid(), %(name)s, 'public_service', %(description)s, 'https://www.allo119.gouv.fr/',
                   '75056', 'verified', now(), %(key)s)
           ON CONFLICT (seed_key) DO UPDATE SET name = EXCLUDED.name, description = EXCLUDED.description""",
        {
            "name": "119 — Allô Enfance en Danger, cellule exploitation sexuelle des mineurs",
            "description": "Service national d'accueil téléphonique de l'enfance en danger (SNATED).",
            "key": HOTLINE_SEED_KEY,
        },
    )


def seed_specialisms(conn: psycopg.Connection) -> int:
    with conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO specialism (slug, label_fr, label_en, data_inclusion, position)
               VALUES (%s, %s, %s, %s, %s)
               ON CONFLICT (slug) DO UPDATE SET label_fr = EXCLUDED.label_fr, label_en = EXCLUDED.label_en,
                   data_inclusion = EXCLUDED.data_inclusion, position = EXCLUDED.position""",
            [(s.slug, s.label_fr, s.label_en, s.data_inclusion, i) for i, s in enumerate(SPECIALISMS)],
        )
    return len(SPECIALISMS)


def refresh_areas(conn: psycopg.Connection, service_ids: list[uuid.UUID]) -> None:
    for statement in REFRESH:
        conn.execute(statement, rebuild_params(service_ids))


def _upsert_location(conn: psycopg.Connection, *, seed_key: str, organisation_id: uuid.UUID, commune: str) -> uuid.UUID:
    """A public location at a commune's point, flagged as only commune-precise (no address)."""
    row = conn.execute(
        """INSERT INTO location (id, organisation_id, commune_code, point, visibility, point_precision, seed_key)
           SELECT gen_random_uuid(), %(org)s, c.code, c.point, 'public', 'commune', %(key)s
             FROM commune c WHERE c.code = %(commune)s AND c.point IS NOT NULL
           ON CONFLICT (seed_key) DO UPDATE SET commune_code = EXCLUDED.commune_code, point = EXCLUDED.point
           RETURNING id""",
        {"org": organisation_id, "key": seed_key, "commune": commune},
    ).fetchone()
    if row is None:
        raise ValueError(f"seed {seed_key}: commune {commune} has no point")
    return row[0]


def _upsert_service(
    conn: psycopg.Connection,
    *,
    seed_key: str,
    organisation_id: uuid.UUID,
    location_id: uuid.UUID | None,
    name: str,
    description: str | None,
    specialisms: list[str],
    audiences: list[str],
    area: dict[str, object],
) -> uuid.UUID:
    row = conn.execute(
        """INSERT INTO service (id, organisation_id, location_id, name, description, specialisms, audiences, seed_key)
           VALUES (gen_random_uuid(), %(org)s, %(location)s, %(name)s, %(description)s, %(specialisms)s,
                   %(audiences)s, %(key)s)
           ON CONFLICT (seed_key) DO UPDATE SET location_id = EXCLUDED.location_id, name = EXCLUDED.name,
               description = EXCLUDED.description, specialisms = EXCLUDED.specialisms,
               audiences = EXCLUDED.audiences
           RETURNING id""",
        {
            "org": organisation_id,
            "location": location_id,
            "name": name,
            "description": description,
            "specialisms": specialisms,
            "audiences": audiences,
            "key": seed_key,
        },
    ).fetchone()
    assert row is not None
    service_id: uuid.UUID = row[0]
    # The seeded area is set once; afterwards the organisation owns it.
    conn.execute(
        """INSERT INTO service_area (id, service_id, collectivites, regions, national)
           SELECT gen_random_uuid(), %(service)s, %(collectivites)s, %(regions)s, %(national)s
            WHERE NOT EXISTS (SELECT 1 FROM service_area WHERE service_id = %(service)s)""",
        {
            "service": service_id,
            "collectivites": area.get("collectivites", []),
            "regions": area.get("regions", []),
            "national": area.get("national", False),
        },
    )
    return service_id


def seed_crips(conn: psycopg.Connection) -> int:
    """One CRIP per collectivité, at the collectivité's seat, receiving informations préoccupantes for
    its territory. Contact fields stay empty and unverified: the CRIP fills them in."""
    rows = conn.execute(
        """
        INSERT INTO organisation (id, name, kind, collectivite_code, seat_commune_code, verification, seed_key)
        SELECT gen_random_uuid(),
               'Cellule de recueil des informations préoccupantes — ' || k.name,
               'crip', k.code, k.seat_commune_code, 'unverified', 'crip:' || k.code
          FROM collectivite k
        ON CONFLICT (seed_key) DO UPDATE SET
            name = EXCLUDED.name, collectivite_code = EXCLUDED.collectivite_code,
            seat_commune_code = EXCLUDED.seat_commune_code
        RETURNING id, collectivite_code, seat_commune_code
        """
    ).fetchall()
    service_ids = []
    for organisation_id, code, seat in rows:
        location_id = _upsert_location(
            conn, seed_key=f"crip:{code}:seat", organisation_id=organisation_id, commune=seat
        )
        service_ids.append(
            _upsert_service(
                conn,
                seed_key=f"crip:{code}:ip",
                organisation_id=organisation_id,
                location_id=location_id,
                name="Recueil des informations préoccupantes",
                description=CRIP_DESCRIPTION,
                specialisms=["crip"],
                audiences=["minor", "entourage", "professional"],
                area={"collectivites": [code]},
            )
        )
    refresh_areas(conn, service_ids)
    return len(rows)


def _slug(text: str) -> str:
    ascii_only = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", "-", ascii_only).strip("-")


def seed_collective(conn: psycopg.Connection, seeds_dir: Path) -> int:
    """Members of the collective "Ensemble contre la traite des êtres humains" (seeds/collective-*.csv):
    national coverage unless the source gives a seat for a regional association."""
    with open(seeds_dir / "collective-specialisms.csv", encoding="utf-8") as handle:
        specialisms = {row["short_name"]: row["specialisms"].split(";") for row in csv.DictReader(handle)}
    unknown = {slug for slugs in specialisms.values() for slug in slugs} - SLUGS
    if unknown:
        raise ValueError(f"collective-specialisms.csv uses unknown specialisms: {sorted(unknown)}")
    with open(seeds_dir / "collective-members.csv", encoding="utf-8") as handle:
        members = list(csv.DictReader(handle))
    service_ids = []
    for member in members:
        key = f"collective:{_slug(member['short_name'])}"
        seat = commune_of(member["seat_commune_insee"]) if member["seat_commune_insee"] else None
        row = conn.execute(
            """INSERT INTO organisation (id, name, kind, collectives, seat_commune_code, verification, seed_key)
               VALUES (gen_random_uuid(), %(name)s, 'association', %(collectives)s, %(seat)s, 'unverified', %(key)s)
               ON CONFLICT (seed_key) DO UPDATE SET
                   name = EXCLUDED.name, seat_commune_code = EXCLUDED.seat_commune_code,
                   collectives = (SELECT array_agg(DISTINCT c)
                                    FROM unnest(organisation.collectives || EXCLUDED.collectives) c)
               RETURNING id""",
            {"name": member["name"], "collectives": [ENSEMBLE_CONTRE_LA_TRAITE], "seat": seat, "key": key},
        ).fetchone()
        assert row is not None
        slugs = specialisms.get(member["short_name"])
        if not slugs:  # advocacy networks: listed as organisations, with no service to refer to
            continue
        location_id = (
            _upsert_location(conn, seed_key=f"{key}:seat", organisation_id=row[0], commune=seat) if seat else None
        )
        regional = member["scope"] == "regional" and seat is not None
        area: dict[str, object] = {"national": True}
        if regional:
            region = conn.execute(
                """SELECT d.region_code FROM commune c JOIN departement d ON d.code = c.departement_code
                    WHERE c.code = %s""",
                (seat,),
            ).fetchone()
            area = {"regions": [region[0]]} if region else area
        label = next(s.label_fr for s in SPECIALISMS if s.slug == slugs[0])
        service_ids.append(
            _upsert_service(
                conn,
                seed_key=f"{key}:service",
                organisation_id=row[0],
                location_id=location_id,
                name=f"{member['short_name']} — {label}",
                description=None,
                specialisms=slugs,
                audiences=[],
                area=area,
            )
        )
    refresh_areas(conn, service_ids)
    return len(members)
