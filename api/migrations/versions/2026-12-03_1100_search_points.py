"""Search points: where each searchable service receives people, beside the specialisms it offers.

A search near a point starts with a nearest-first scan: the `limit` nearest services that pass the
filters bound the page (directory/search.py). On `location` that scan met every location of every
specialism, each looked up in `service` and `organisation` before the filters could reject it — most
of a search's time at 1M services. `search_point` holds one row per service a search may return and
that has a place (current, not suspended, its organisation active, its location current): the public
point as geography with its own GiST index, and the specialisms, so that the scan rejects the other
specialisms in the index's own table and reaches the joins only with candidates.

It is a projection of the listing tables, never written by the application: statement-level triggers
on service, location and organisation keep it in the same transaction as the write (as the schema
owner; the application role only reads it), and `search_points_rebuild()` (`maillage search rebuild`)
recomputes it whole. Deleting a service or a location deletes its rows (foreign keys).

Revision ID: a1c7e5f09b3d
Revises: 9f5c13e4a7b2
Create Date: 2026-12-03 11:00:00
"""

from collections.abc import Sequence

import geoalchemy2
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "a1c7e5f09b3d"
down_revision: str | None = "9f5c13e4a7b2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APP_ROLE = "maillage_app"

_FUNCTIONS = """
-- The rows of these services as the listing tables say now. Their location and organisation are read
-- under a share lock: a writer of either that commits meanwhile is waited for and read again, and one
-- that comes later waits for this transaction and then sees its services (each statement of a trigger
-- function reads what is committed when it starts). Without it, a service added at a location while
-- the location moves would keep the old point. Upserted in service order: two writers refreshing the
-- same services never collide on a key nor lock them in opposite orders.
CREATE FUNCTION search_points_refresh(p_services uuid[]) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    IF p_services IS NULL OR cardinality(p_services) = 0 THEN
        RETURN;
    END IF;
    DELETE FROM search_point WHERE service_id = ANY(p_services);
    INSERT INTO search_point (service_id, location_id, geog, specialisms)
    SELECT s.id, l.id, l.public_point::geography, s.specialisms
      FROM service s JOIN location l ON l.id = s.location_id JOIN organisation o ON o.id = s.organisation_id
     WHERE s.id = ANY(p_services) AND s.archived_at IS NULL AND s.status <> 'suspended'
       AND o.deactivated_at IS NULL AND l.archived_at IS NULL AND l.public_point IS NOT NULL
     ORDER BY s.id
       FOR SHARE OF l, o
    ON CONFLICT (service_id) DO UPDATE
        SET location_id = EXCLUDED.location_id, geog = EXCLUDED.geog, specialisms = EXCLUDED.specialisms;
END $$;

-- Everything again, from the listing tables; returns the rows written.
CREATE FUNCTION search_points_rebuild() RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    written bigint;
BEGIN
    LOCK TABLE search_point IN EXCLUSIVE MODE;  -- readers go on; triggered refreshes wait for the rebuild
    DELETE FROM search_point;
    INSERT INTO search_point (service_id, location_id, geog, specialisms)
    SELECT s.id, l.id, l.public_point::geography, s.specialisms
      FROM service s JOIN location l ON l.id = s.location_id JOIN organisation o ON o.id = s.organisation_id
     WHERE s.archived_at IS NULL AND s.status <> 'suspended'
       AND o.deactivated_at IS NULL AND l.archived_at IS NULL AND l.public_point IS NOT NULL;
    GET DIAGNOSTICS written = ROW_COUNT;
    RETURN written;
END $$;

CREATE FUNCTION service_search_points_trigger() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM search_points_refresh(ARRAY(SELECT id FROM new_rows));
    ELSE
        PERFORM search_points_refresh(ARRAY(
            SELECT n.id FROM new_rows n JOIN old_rows o ON o.id = n.id
             WHERE n.specialisms IS DISTINCT FROM o.specialisms OR n.location_id IS DISTINCT FROM o.location_id
                OR n.organisation_id IS DISTINCT FROM o.organisation_id OR n.status IS DISTINCT FROM o.status
                OR n.archived_at IS DISTINCT FROM o.archived_at));
    END IF;
    RETURN NULL;
END $$;

-- Not on "UPDATE OF public_point": a BEFORE trigger derives it from the point and the visibility.
CREATE FUNCTION location_search_points_trigger() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    PERFORM search_points_refresh(ARRAY(
        SELECT s.id FROM service s JOIN new_rows n ON n.id = s.location_id JOIN old_rows o ON o.id = n.id
         WHERE n.public_point IS DISTINCT FROM o.public_point OR n.archived_at IS DISTINCT FROM o.archived_at));
    RETURN NULL;
END $$;

CREATE FUNCTION organisation_search_points_trigger() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    PERFORM search_points_refresh(ARRAY(
        SELECT s.id FROM service s JOIN new_rows n ON n.id = s.organisation_id JOIN old_rows o ON o.id = n.id
         WHERE n.deactivated_at IS DISTINCT FROM o.deactivated_at));
    RETURN NULL;
END $$;

CREATE TRIGGER service_search_points_insert AFTER INSERT ON service REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION service_search_points_trigger();
CREATE TRIGGER service_search_points_update AFTER UPDATE ON service
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION service_search_points_trigger();
CREATE TRIGGER location_search_points AFTER UPDATE ON location
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION location_search_points_trigger();
CREATE TRIGGER organisation_search_points AFTER UPDATE ON organisation
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION organisation_search_points_trigger();
"""

_TRIGGERS = (
    ("service_search_points_insert", "service"),
    ("service_search_points_update", "service"),
    ("location_search_points", "location"),
    ("organisation_search_points", "organisation"),
)
_FUNCTION_NAMES = (
    "search_points_refresh, search_points_rebuild, service_search_points_trigger,"
    " location_search_points_trigger, organisation_search_points_trigger"
)


def upgrade() -> None:
    op.create_table(
        "search_point",
        sa.Column("service_id", sa.Uuid(), nullable=False),
        sa.Column("location_id", sa.Uuid(), nullable=False),
        sa.Column(
            "geog",
            geoalchemy2.types.Geography(geometry_type="POINT", srid=4326, spatial_index=False),
            nullable=False,
        ),
        sa.Column("specialisms", postgresql.ARRAY(sa.String(length=64)), server_default="{}", nullable=False),
        sa.ForeignKeyConstraint(
            ["service_id"], ["service.id"], name=op.f("fk_search_point__service_id__service"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["location_id"], ["location.id"], name=op.f("fk_search_point__location_id__location"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("service_id", name=op.f("pk_search_point")),
    )
    op.create_index("ix_search_point__geog", "search_point", ["geog"], unique=False, postgresql_using="gist")
    op.create_index(op.f("ix_search_point__location_id"), "search_point", ["location_id"], unique=False)
    op.execute(_FUNCTIONS)
    op.execute(f"GRANT SELECT ON search_point TO {APP_ROLE}")
    # Triggers call them as the owner; nobody else needs to (functions are executable by PUBLIC by default).
    op.execute(f"REVOKE EXECUTE ON FUNCTION {_FUNCTION_NAMES} FROM PUBLIC")
    op.execute("SELECT search_points_rebuild()")


def downgrade() -> None:
    for trigger, table in _TRIGGERS:
        op.execute(f"DROP TRIGGER {trigger} ON {table}")
    op.execute(f"DROP FUNCTION {_FUNCTION_NAMES}")
    op.drop_index(op.f("ix_search_point__location_id"), table_name="search_point")
    op.drop_index("ix_search_point__geog", table_name="search_point", postgresql_using="gist")
    op.drop_table("search_point")
