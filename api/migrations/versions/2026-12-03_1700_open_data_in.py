"""Open data in: provenance of imported listings, EPCIs, and the reference year of the territories.

- `data_source` names each outside source once, with its licence; organisations, locations and
  services imported from one carry `source`, `source_id` (unique per source), the source's own update
  date and when they were imported. A re-import matches rows on (source, source_id).
- An imported location is always public (a check): a source's open data is never a safe house.
- `epci`: the établissements publics de coopération intercommunale (SIREN code) and their communes,
  from the same offline COG load as the communes, so a data·inclusion `zone_eligibilite` naming an
  EPCI becomes the list of its communes.
- A location placed by the geocoder keeps the geocoder's score and result type (housenumber, street,
  locality), so a doubtful placement can be found and checked.
- The service triggers that find which rows a statement changed (coverage, search points) compare its
  old and new rows as sets (EXCEPT) rather than by a join: without statistics on transition tables the
  planner joined them in nested loops, and an UPDATE of 10,000 services spent 99 s there, growing with
  the square of the rows (bench/import_data_inclusion.py).
- `reference_dataset.reference_year`: the COG vintage of the loaded territories (shown in /readyz and
  GET /v1/territories).

Revision ID: e5a7c3b9d1f2
Revises: d4e6b0c1a2f9
Create Date: 2026-12-03 17:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

revision: str = "e5a7c3b9d1f2"
down_revision: str | None = "d4e6b0c1a2f9"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APP_ROLE = "maillage_app"
IMPORTED = ("organisation", "location", "service")

def _service_trigger(function: str, refresh: str, columns: str, insert: str, *, changed_as_sets: bool) -> str:
    """A service trigger whose UPDATE branch finds the rows whose `columns` changed."""
    if changed_as_sets:
        changed = f"""SELECT id FROM (SELECT id, {columns} FROM new_rows EXCEPT SELECT id, {columns} FROM old_rows) c"""
    else:
        distinct = " OR ".join(f"n.{c} IS DISTINCT FROM o.{c}" for c in columns.split(", "))
        changed = f"SELECT n.id FROM new_rows n JOIN old_rows o ON o.id = n.id WHERE {distinct}"
    delete = (
        f"ELSIF TG_OP = 'DELETE' THEN PERFORM {refresh}(ARRAY(SELECT id FROM old_rows));"
        if function == "service_coverage_trigger"
        else ""
    )
    return f"""
CREATE OR REPLACE FUNCTION {function}() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM {refresh}(ARRAY({insert}));
    {delete}
    ELSE
        PERFORM {refresh}(ARRAY({changed}));
    END IF;
    RETURN NULL;
END $$"""


TRIGGERS = (
    (
        "service_coverage_trigger",
        "coverage_services_changed",
        "specialisms, location_id, status, archived_at, demo",
        "SELECT id FROM new_rows WHERE NOT demo AND location_id IS NOT NULL",
    ),
    (
        "service_search_points_trigger",
        "search_points_refresh",
        "specialisms, location_id, organisation_id, status, archived_at",
        "SELECT id FROM new_rows",
    ),
)


def upgrade() -> None:
    op.create_table(
        "data_source",
        sa.Column("slug", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("licence", sa.String(length=200), nullable=False),
        sa.Column("url", sa.String(length=500), nullable=False),
        sa.PrimaryKeyConstraint("slug", name=op.f("pk_data_source")),
    )
    op.execute(
        """INSERT INTO data_source (slug, name, licence, url) VALUES
           ('data-inclusion', 'data·inclusion — référentiel de l''offre d''insertion',
            'Licence Ouverte 2.0 (Etalab)', 'https://data.inclusion.gouv.fr/')"""
    )
    for table in IMPORTED:
        op.add_column(table, sa.Column("source", sa.String(length=64), nullable=True))
        op.add_column(table, sa.Column("source_id", sa.String(length=200), nullable=True))
        op.add_column(table, sa.Column("source_updated_on", sa.Date(), nullable=True))
        op.add_column(table, sa.Column("imported_at", sa.DateTime(timezone=True), nullable=True))
        op.create_foreign_key(
            op.f(f"fk_{table}__source__data_source"), table, "data_source", ["source"], ["slug"]
        )
        op.create_check_constraint(
            op.f(f"ck_{table}__provenance_complete"), table, "(source IS NULL) = (source_id IS NULL)"
        )
        op.create_index(
            op.f(f"uq_{table}__source_source_id"),
            table,
            ["source", "source_id"],
            unique=True,
            postgresql_where=sa.text("source IS NOT NULL"),
        )
    op.create_check_constraint(
        op.f("ck_location__imported_public"), "location", "source IS NULL OR visibility = 'public'"
    )
    op.add_column("location", sa.Column("geocoding_score", sa.Float(), nullable=True))
    op.add_column("location", sa.Column("geocoding_type", sa.String(length=16), nullable=True))
    op.create_table(
        "epci",
        sa.Column("code", sa.String(length=9), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=4), nullable=False),
        sa.Column("communes", ARRAY(sa.String(length=5)), server_default="{}", nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_epci")),
    )
    op.add_column("reference_dataset", sa.Column("reference_year", sa.SmallInteger(), nullable=True))
    op.execute(f"GRANT SELECT ON data_source, epci TO {APP_ROLE}")
    for trigger in TRIGGERS:
        op.execute(_service_trigger(*trigger, changed_as_sets=True))


def downgrade() -> None:
    for trigger in TRIGGERS:
        op.execute(_service_trigger(*trigger, changed_as_sets=False))
    op.drop_column("reference_dataset", "reference_year")
    op.drop_table("epci")
    op.drop_column("location", "geocoding_type")
    op.drop_column("location", "geocoding_score")
    op.drop_constraint(op.f("ck_location__imported_public"), "location", type_="check")
    for table in IMPORTED:
        op.drop_index(op.f(f"uq_{table}__source_source_id"), table_name=table)
        op.drop_constraint(op.f(f"ck_{table}__provenance_complete"), table, type_="check")
        op.drop_constraint(op.f(f"fk_{table}__source__data_source"), table, type_="foreignkey")
        for column in ("imported_at", "source_updated_on", "source_id", "source"):
            op.drop_column(table, column)
    op.drop_table("data_source")
