"""Test databases on the project-managed cluster (the same one `make run` uses).

A template database is migrated and loaded with reference data once, and rebuilt only when the
migrations or the loaders change (a fingerprint is kept as the database comment). Each test run
clones it; each test runs in a transaction that is rolled back.
"""

from __future__ import annotations

import hashlib
import os

import psycopg
from psycopg import sql

from api.cluster import Cluster
from api.migrations_runner import upgrade
from api.settings import REPO_ROOT
from directory import coverage, hours
from directory.seeding import seed_collective, seed_crips, seed_hotline, seed_specialisms
from geo.calendars import load_public_holidays
from geo.loading import VERSION as TERRITORIES_VERSION
from geo.loading import load_territories

TEMPLATE = "maillage_test_template"

_FINGERPRINTED = [
    "api/migrations/versions",
    "geo/loading.py",
    "geo/competence.py",
    "geo/names.py",
    "directory/seeding.py",
    "directory/coverage.py",
    "directory/hours.py",
]


def fingerprint() -> str:
    digest = hashlib.sha256(TERRITORIES_VERSION.encode())
    for entry in _FINGERPRINTED:
        path = REPO_ROOT / entry
        for file in (
            sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in (".py", ".csv"))
            if path.is_dir()
            else [path]
        ):
            digest.update(file.relative_to(REPO_ROOT).as_posix().encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def ensure_template(cluster: Cluster) -> None:
    wanted = fingerprint()
    with psycopg.connect(plain(cluster.url("postgres")), autocommit=True) as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", (TEMPLATE,)
        ).fetchone()
        if row is not None and row[0] == wanted:
            return
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(TEMPLATE)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE)))
    url = cluster.url(TEMPLATE)
    upgrade(url)
    with psycopg.connect(plain(url)) as conn:
        load_territories(conn)
        load_public_holidays(conn)
        seed_specialisms(conn)
        seed_hotline(conn)
        seed_crips(conn)
        seed_collective(conn, REPO_ROOT / "seeds")
        coverage.refresh(conn)  # as `maillage seed` does
        hours.refresh(conn)
    with psycopg.connect(plain(cluster.url("postgres")), autocommit=True) as conn:
        conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(TEMPLATE), sql.Literal(wanted)))


def create_test_database(cluster: Cluster, suffix: str = "") -> str:
    """A fresh clone of the template; returns its name."""
    name = f"maillage_test_{os.getpid()}{suffix}"
    cluster.drop_database(name)
    cluster.ensure_database(name, template=TEMPLATE)
    return name
