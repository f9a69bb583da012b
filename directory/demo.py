"""Synthetic demo listings for local runs: a few hundred services in 15 départements, metropolitan and
overseas, with confidential shelters, 24/7 lines, closed, full and stale services.

Every row is flagged `demo` and named "[Démo] …"; phone numbers come from the range ARCEP reserves for
fiction (01 99 00 xx xx). Never loaded when DATABASE_URL is set (`maillage seed --demo` refuses).
Deterministic: the same seed gives the same listings (timestamps are relative to now).
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from .seeding import refresh_areas
from .taxonomy import SLUGS

CITIES = (
    "75056",
    "13055",
    "69123",
    "31555",
    "06088",
    "44109",
    "67482",
    "34172",
    "33063",
    "59350",
    "35238",
    "93008",
    "97411",
    "97209",
    "97302",
)
KINDS = (
    "Accueil de jour",
    "Maison des adolescents",
    "Équipe mobile",
    "Foyer d'urgence",
    "Permanence juridique",
    "Centre de santé sexuelle",
    "Consultation psychotrauma",
    "Point écoute parents",
    "Service éducatif",
)
SHELTER = {"emergency-shelter", "protective-relocation"}
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri")
SCHEDULES: tuple[dict[str, Any], ...] = (
    {"mode": "weekly", "weekly": {d: [["09:00", "12:30"], ["13:30", "17:30"]] for d in WEEKDAYS}},
    {"mode": "weekly", "weekly": {**{d: [["10:00", "18:00"]] for d in WEEKDAYS}, "sat": [["10:00", "13:00"]]}},
    {
        "mode": "weekly",
        "weekly": {d: [["18:00", "02:00"]] for d in (*WEEKDAYS, "sat", "sun")},
        "closed_on_public_holidays": False,
    },
    {"mode": "always"},
    {"mode": "on_call"},
    {"mode": "unknown"},
)
LANGUAGES = ("fr", "en", "ar", "ro", "es", "uk", "ps", "pt")
DEMO_COUNT = 300


def _phone(rng: random.Random) -> str:
    return f"+33 1 99 00 {rng.randint(0, 99):02d} {rng.randint(0, 99):02d}"


def seed_demo(conn: psycopg.Connection, *, count: int = DEMO_COUNT, seed: int = 119) -> int:
    rng = random.Random(seed)
    now = datetime.now(UTC)
    slugs = sorted(SLUGS - {"crip"})
    points: dict[str, list[tuple[float, float]]] = {}
    for city in CITIES:
        rows = conn.execute(
            """SELECT ST_X(g), ST_Y(g) FROM (SELECT (ST_Dump(ST_GeneratePoints(boundary, 60, %(seed)s))).geom AS g
                                          FROM commune WHERE code = %(city)s) p""",
            {"city": city, "seed": seed},
        ).fetchall()
        points[city] = [(x, y) for x, y in rows]
    service_ids = []
    for n in range(count):
        city = CITIES[n % len(CITIES)]
        org_n = n // 3  # three services per organisation
        org = conn.execute(
            """INSERT INTO organisation (id, name, kind, collectives, seat_commune_code, verification, demo, seed_key)
               VALUES (gen_random_uuid(), %(name)s, %(kind)s, %(collectives)s, %(seat)s, 'unverified', true, %(key)s)
               ON CONFLICT (seed_key) DO UPDATE SET name = EXCLUDED.name RETURNING id""",
            {
                "name": f"[Démo] Association {org_n + 1:03d}",
                "kind": rng.choice(("association", "health", "public_service")),
                "collectives": ["ensemble-contre-la-traite"] if org_n % 5 == 0 else [],
                "seat": city,
                "key": f"demo:organisation:{org_n}",
            },
        ).fetchone()
        assert org is not None
        specialisms = rng.sample(slugs, rng.randint(1, 3))
        confidential = bool(SHELTER & set(specialisms)) and rng.random() < 0.7
        lon, lat = points[city][(n // len(CITIES)) % len(points[city])]
        location = conn.execute(
            """INSERT INTO location (id, organisation_id, name, address, commune_code, point, visibility,
                                     front_door_phone, demo, seed_key)
               VALUES (gen_random_uuid(), %(org)s, %(name)s, %(address)s, %(city)s,
                       ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326), %(visibility)s, %(front)s, true, %(key)s)
               ON CONFLICT (seed_key) DO UPDATE SET point = EXCLUDED.point, visibility = EXCLUDED.visibility,
                   address = EXCLUDED.address, front_door_phone = EXCLUDED.front_door_phone
               RETURNING id""",
            {
                "org": org[0],
                "name": f"Lieu démo {n + 1}",
                "address": f"{rng.randint(1, 120)} rue de la Démo",
                "city": city,
                "lon": lon,
                "lat": lat,
                "visibility": "confidential" if confidential else "public",
                "front": _phone(rng) if confidential else None,
                "key": f"demo:location:{n}",
            },
        ).fetchone()
        assert location is not None
        schedule = rng.choice(SCHEDULES)
        status, closed_from, closed_until, message = "active", None, None, None
        roll = rng.random()
        if roll < 0.06:
            status, closed_from, closed_until = "temporarily_closed", now - timedelta(days=2), now + timedelta(days=10)
            message = "Fermeture temporaire (démo) : travaux."
        elif roll < 0.08:
            status = "suspended"
        age_min = rng.choice((None, 10, 12, 13, 15))
        capacity = rng.choice((None, "available", "limited", "full", "waitlist"))
        verified_days_ago = rng.randint(1, 120) if rng.random() < 0.7 else rng.randint(200, 500)
        service = conn.execute(
            """INSERT INTO service (id, organisation_id, location_id, name, description, specialisms, audiences,
                                    age_min, age_max, genders, languages, channels, phone, schedule, status,
                                    closed_from, closed_until, closure_message, capacity, capacity_places,
                                    capacity_as_of, last_verified_at, demo, seed_key)
               VALUES (gen_random_uuid(), %(org)s, %(location)s, %(name)s, %(description)s, %(specialisms)s,
                       %(audiences)s, %(age_min)s, %(age_max)s, %(genders)s, %(languages)s, %(channels)s, %(phone)s,
                       %(schedule)s, %(status)s, %(closed_from)s, %(closed_until)s, %(message)s, %(capacity)s,
                       %(places)s, %(as_of)s, %(verified)s, true, %(key)s)
               ON CONFLICT (seed_key) DO UPDATE SET
                   location_id = EXCLUDED.location_id, name = EXCLUDED.name, specialisms = EXCLUDED.specialisms,
                   audiences = EXCLUDED.audiences, age_min = EXCLUDED.age_min, age_max = EXCLUDED.age_max,
                   genders = EXCLUDED.genders, languages = EXCLUDED.languages, channels = EXCLUDED.channels,
                   schedule = EXCLUDED.schedule, status = EXCLUDED.status, closed_from = EXCLUDED.closed_from,
                   closed_until = EXCLUDED.closed_until, closure_message = EXCLUDED.closure_message,
                   capacity = EXCLUDED.capacity, capacity_places = EXCLUDED.capacity_places,
                   capacity_as_of = EXCLUDED.capacity_as_of, last_verified_at = EXCLUDED.last_verified_at
               RETURNING id""",
            {
                "org": org[0],
                "location": location[0],
                "name": f"[Démo] {rng.choice(KINDS)} {n + 1}",
                "description": "Service fictif pour la démonstration locale.",
                "specialisms": specialisms,
                "audiences": rng.sample(("minor", "young_adult", "entourage", "professional"), rng.randint(1, 3)),
                "age_min": age_min,
                "age_max": None if age_min is None else rng.choice((17, 18, 21, 25)),
                "genders": rng.choice(([], [], ["female"], ["male"])),
                "languages": ["fr", *rng.sample(LANGUAGES[1:], rng.randint(0, 2))],
                "channels": rng.sample(("in_person", "phone", "online", "outreach"), rng.randint(1, 3)),
                "phone": _phone(rng),
                "schedule": Jsonb(schedule),
                "status": status,
                "closed_from": closed_from,
                "closed_until": closed_until,
                "message": message,
                "capacity": capacity,
                "places": rng.randint(0, 12) if capacity in ("available", "limited") else None,
                "as_of": now - timedelta(hours=rng.randint(1, 72)) if capacity else None,
                "verified": now - timedelta(days=verified_days_ago),
                "key": f"demo:service:{n}",
            },
        ).fetchone()
        assert service is not None
        service_ids.append(service[0])
        area = rng.random()
        if area < 0.35:
            columns = ("departements", "collectivites", "radius_km")
            choice = columns[0] if area < 0.25 else columns[1] if area < 0.3 else columns[2]
            values: dict[str, Any] = {"departements": [], "collectivites": [], "radius_km": None}
            dep_coll = conn.execute(
                "SELECT departement_code, collectivite_code FROM commune WHERE code = %s", (city,)
            ).fetchone()
            assert dep_coll is not None
            values[choice] = (
                50.0 if choice == "radius_km" else [dep_coll[0] if choice == "departements" else dep_coll[1]]
            )
            conn.execute("DELETE FROM service_area WHERE service_id = %s", (service[0],))
            conn.execute(
                """INSERT INTO service_area (id, service_id, departements, collectivites, radius_km)
                   VALUES (%s, %s, %s, %s, %s)""",
                (uuid.uuid4(), service[0], values["departements"], values["collectivites"], values["radius_km"]),
            )
    refresh_areas(conn, service_ids)
    return count
