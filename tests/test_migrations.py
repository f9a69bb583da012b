"""Migrations are the only way the schema is built: they go up, down and up again, and match the models."""

from collections.abc import Iterator

import psycopg
import pytest
from alembic import command

from api.cluster import Cluster
from api.migrations_runner import alembic_config, downgrade, head_revision, upgrade
from tests.database import plain


@pytest.fixture
def scratch_url(cluster: Cluster) -> Iterator[str]:
    name = "maillage_test_migrations"
    cluster.drop_database(name)
    cluster.ensure_database(name)
    yield cluster.url(name)
    cluster.drop_database(name)


def _tables(url: str) -> set[str]:
    with psycopg.connect(plain(url)) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {row[0] for row in rows}


def test_upgrade_downgrade_upgrade(scratch_url: str) -> None:
    upgrade(scratch_url)
    tables = _tables(scratch_url)
    assert {"commune", "departement", "collectivite", "region", "organisation", "alembic_version"} <= tables
    downgrade(scratch_url, "base")
    assert _tables(scratch_url) <= {"alembic_version", "spatial_ref_sys"}
    upgrade(scratch_url)
    assert _tables(scratch_url) == tables
    with psycopg.connect(plain(scratch_url)) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == (head_revision(),)


def test_models_and_migrations_do_not_drift(scratch_url: str) -> None:
    upgrade(scratch_url)
    command.check(alembic_config(scratch_url))  # raises when autogenerate would emit operations
