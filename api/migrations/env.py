"""Alembic environment. Runs synchronously on psycopg 3; the URL comes from the caller."""

from alembic import context
from geoalchemy2 import alembic_helpers
from sqlalchemy import create_engine, pool
from sqlmodel import SQLModel

import api.audit  # noqa: F401 - registers the tables
import api.idempotency  # noqa: F401 - registers the tables
import directory.coverage  # noqa: F401 - registers the tables
import directory.handoff_rollups  # noqa: F401 - registers the tables
import directory.hours  # noqa: F401 - registers the tables
import directory.identity_bindings  # noqa: F401 - registers the tables
import directory.models  # noqa: F401 - registers the tables
import directory.pathway_models  # noqa: F401 - registers the tables
import directory.search_points  # noqa: F401 - registers the tables
import directory.stats  # noqa: F401 - registers the tables
import geo.models  # noqa: F401 - registers the tables
import sync.models  # noqa: F401 - registers the tables

config = context.config
target_metadata = SQLModel.metadata


def include_object(obj, name, type_, reflected, compare_to):  # type: ignore[no-untyped-def]
    # PostGIS and its friends own tables (spatial_ref_sys, tiger…) that are not ours to migrate.
    if type_ == "table" and reflected and compare_to is None:
        return False
    return alembic_helpers.include_object(obj, name, type_, reflected, compare_to)


def run_migrations() -> None:
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL: run migrations through `maillage migrate`")
    connectable = config.attributes.get("connection")
    if connectable is None:
        engine = create_engine(url, poolclass=pool.NullPool)
        with engine.connect() as connection:
            _run(connection)
    else:
        _run(connectable)


def _run(connection):  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        include_object=include_object,
        process_revision_directives=alembic_helpers.writer,
        render_item=alembic_helpers.render_item,
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
