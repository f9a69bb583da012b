"""Coverage precomputed: per commune and specialism, how far the nearest listed service is.

`commune_coverage` holds, for every commune with a point and every specialism, the distance (on the
sphere, as the geography KNN operator measures it) from the commune's point to the public point of the
nearest service that counts for coverage — current, not suspended, not demo, at a current location —
and that service's id. `GET /v1/stats/coverage` reads it for any `within_km` instead of probing
~558,000 commune × specialism pairs (10 s nationally at 1M services: a 503 every time).

Kept in the same transaction as the writes, by statement-level triggers (as the schema owner; the
application role only reads the table), serialised by one advisory lock since coverage writes are rare;
a statement changing more than 200 services recomputes the specialisms they touch instead:
- a service that stops counting somewhere (moved, a specialism dropped, suspended, archived, its
  location moved or archived) has its communes recomputed: those whose nearest it was;
- a service that counts (again) lowers the distance of every commune within 100 km (the largest
  `within_km` the API accepts) that it is nearer to. Beyond 100 km a stored distance may exceed the true
  one (or be null), never fall below it: no answer changes, and `maillage coverage refresh --rebuild`
  makes it exact.
Communes or specialisms added later (reference data) have no row until that command: the statistic
probes them live meanwhile.

Revision ID: 9f5c13e4a7b2
Revises: 8e4b02d3f6a1
Create Date: 2026-12-03 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "9f5c13e4a7b2"
down_revision: str | None = "8e4b02d3f6a1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APP_ROLE = "maillage_app"

_FUNCTIONS = """
-- Compute the nearest counting service with `p_specialism` for these communes (all with a point when
-- null): the specialism's points are gathered once, with their own index, so that each commune is
-- one KNN probe however rare the specialism (walking the locations' index would pass every location
-- of other specialisms first). Returns the rows written.
CREATE FUNCTION coverage_compute(p_specialism text, p_communes text[]) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    written integer;
BEGIN
    DROP TABLE IF EXISTS pg_temp.coverage_points;
    CREATE TEMP TABLE coverage_points ON COMMIT DROP AS
        SELECT s.id, l.public_point::geography AS g
          FROM service s JOIN location l ON l.id = s.location_id
         WHERE s.specialisms @> ARRAY[p_specialism]::varchar[] AND l.archived_at IS NULL
           AND s.archived_at IS NULL AND s.status <> 'suspended' AND NOT s.demo;
    CREATE INDEX ON pg_temp.coverage_points USING gist (g);
    ANALYZE pg_temp.coverage_points;
    INSERT INTO commune_coverage (commune_code, specialism, service_id, metres)
    SELECT c.code, p_specialism, n.id, n.metres
      FROM commune c
      LEFT JOIN LATERAL (SELECT p.id, p.g <-> c.point::geography AS metres FROM pg_temp.coverage_points p
                          ORDER BY p.g <-> c.point::geography LIMIT 1) n ON true
     WHERE c.point IS NOT NULL AND (p_communes IS NULL OR c.code IN (SELECT unnest(p_communes)))
    ON CONFLICT (specialism, commune_code) DO UPDATE SET service_id = EXCLUDED.service_id, metres = EXCLUDED.metres;
    GET DIAGNOSTICS written = ROW_COUNT;
    DROP TABLE pg_temp.coverage_points;
    RETURN written;
END $$;

-- The nearest counting service with `p_specialism` from a point, walking the locations' own KNN index:
-- a few rows where the specialism is common, but every location of other specialisms first where it is
-- rare (coverage_compute then).
CREATE FUNCTION coverage_nearest(p_point geometry, p_specialism text, OUT service_id uuid, OUT metres float8)
LANGUAGE sql STABLE AS $$
    SELECT s.id, l.public_point::geography <-> p_point::geography
      FROM location l JOIN service s ON s.location_id = l.id
     WHERE l.archived_at IS NULL AND s.archived_at IS NULL AND s.status <> 'suspended' AND NOT s.demo
       AND s.specialisms @> ARRAY[p_specialism]::varchar[]
     ORDER BY l.public_point::geography <-> p_point::geography
     LIMIT 1
$$;

-- Recompute the communes whose nearest was one of these services, then let each of them that counts
-- lower the distance of the communes within 100 km it is nearer to.
CREATE FUNCTION coverage_services_changed(p_services uuid[]) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    lost record;
    common integer;
BEGIN
    IF p_services IS NULL OR cardinality(p_services) = 0 THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('commune_coverage'));
    IF cardinality(p_services) > 200 THEN  -- a bulk load: recomputing the specialisms it touches is cheaper
        PERFORM coverage_compute(touched.specialism, NULL)
           FROM (SELECT unnest(specialisms)::text AS specialism FROM service WHERE id = ANY(p_services)
                  UNION SELECT specialism FROM commune_coverage WHERE service_id = ANY(p_services)) touched
          ORDER BY 1;
        RETURN;
    END IF;
    FOR lost IN SELECT specialism, array_agg(commune_code) AS communes FROM commune_coverage
                 WHERE service_id = ANY(p_services) GROUP BY specialism LOOP
        -- Where the specialism is common (1,000+ services), each commune is a short walk of the
        -- locations' index; gathering its points would cost seconds. Where it is rare, gather them.
        -- (`maillage.coverage_common` lowers the bar, for tests of the first way on a small directory.)
        common := coalesce(nullif(current_setting('maillage.coverage_common', true), '')::int, 1000);
        IF (SELECT count(*) FROM (SELECT 1 FROM service s
                                   WHERE s.specialisms @> ARRAY[lost.specialism]::varchar[]
                                     AND s.archived_at IS NULL AND s.status <> 'suspended' AND NOT s.demo
                                   LIMIT common) counted) >= common THEN
            UPDATE commune_coverage cc
               SET (service_id, metres) = (SELECT n.service_id, n.metres
                                             FROM commune c, coverage_nearest(c.point, cc.specialism) n
                                            WHERE c.code = cc.commune_code)
             WHERE cc.specialism = lost.specialism AND cc.commune_code = ANY(lost.communes);
        ELSE
            PERFORM coverage_compute(lost.specialism, lost.communes);
        END IF;
    END LOOP;
    UPDATE commune_coverage cc SET service_id = x.service_id, metres = x.metres
      FROM (SELECT DISTINCT ON (c.code, sp) c.code, sp, s.id AS service_id,
                   l.public_point::geography <-> c.point::geography AS metres
              FROM service s JOIN location l ON l.id = s.location_id
                   CROSS JOIN LATERAL unnest(s.specialisms) sp
                   JOIN commune c
                     ON c.point && ST_Expand(l.public_point, 1.0 / cos(radians(least(abs(ST_Y(l.public_point)), 60))), 1.0)
                    AND ST_DWithin(c.point::geography, l.public_point::geography, 100000, false)
             WHERE s.id = ANY(p_services) AND l.archived_at IS NULL AND s.archived_at IS NULL
               AND s.status <> 'suspended' AND NOT s.demo
             ORDER BY c.code, sp, metres) x
     WHERE cc.commune_code = x.code AND cc.specialism = x.sp AND (cc.metres IS NULL OR x.metres < cc.metres);
END $$;

-- Statement-level, with the rows each statement changed: a bulk load (an import, a bench) is judged
-- once, as a whole, not service by service.
CREATE FUNCTION service_coverage_trigger() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN  -- a new demo service, or one without a location, changes nothing
        PERFORM coverage_services_changed(ARRAY(SELECT id FROM new_rows WHERE NOT demo AND location_id IS NOT NULL));
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM coverage_services_changed(ARRAY(SELECT id FROM old_rows));
    ELSE
        PERFORM coverage_services_changed(ARRAY(
            SELECT n.id FROM new_rows n JOIN old_rows o ON o.id = n.id
             WHERE n.specialisms IS DISTINCT FROM o.specialisms OR n.location_id IS DISTINCT FROM o.location_id
                OR n.status IS DISTINCT FROM o.status OR n.archived_at IS DISTINCT FROM o.archived_at
                OR n.demo IS DISTINCT FROM o.demo));
    END IF;
    RETURN NULL;
END $$;

-- Not on "UPDATE OF public_point": a BEFORE trigger derives it from the point and the visibility.
CREATE FUNCTION location_coverage_trigger() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    PERFORM coverage_services_changed(ARRAY(
        SELECT s.id FROM service s JOIN new_rows n ON n.id = s.location_id JOIN old_rows o ON o.id = n.id
         WHERE n.public_point IS DISTINCT FROM o.public_point OR n.archived_at IS DISTINCT FROM o.archived_at));
    RETURN NULL;
END $$;

CREATE TRIGGER service_coverage_insert AFTER INSERT ON service REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION service_coverage_trigger();
CREATE TRIGGER service_coverage_update AFTER UPDATE ON service
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION service_coverage_trigger();
CREATE TRIGGER service_coverage_delete AFTER DELETE ON service REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION service_coverage_trigger();
CREATE TRIGGER location_coverage AFTER UPDATE ON location
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION location_coverage_trigger();
"""


# Every commune with a point × every specialism (directory/coverage.py runs the same after reference
# data loads; kept here so that an existing directory is covered from the migration on).
_BUILD = "SELECT coverage_compute(slug, NULL) FROM specialism ORDER BY slug"


def upgrade() -> None:
    op.create_table(
        "commune_coverage",
        sa.Column("commune_code", sa.String(length=5), nullable=False),
        sa.Column("specialism", sa.String(length=64), nullable=False),
        sa.Column("service_id", sa.Uuid(), nullable=True),
        sa.Column("metres", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["commune_code"], ["commune.code"], name=op.f("fk_commune_coverage_commune_code_commune"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("specialism", "commune_code", name=op.f("pk_commune_coverage")),
    )
    op.create_index(op.f("ix_commune_coverage__service_id"), "commune_coverage", ["service_id"])
    op.execute(_FUNCTIONS)
    op.execute(f"GRANT SELECT ON commune_coverage TO {APP_ROLE}")
    # Triggers call them as the owner; nobody else needs to (functions are executable by PUBLIC by default).
    op.execute(
        "REVOKE EXECUTE ON FUNCTION coverage_compute, coverage_services_changed, service_coverage_trigger,"
        " location_coverage_trigger FROM PUBLIC"
    )
    op.execute(_BUILD)


def downgrade() -> None:
    for trigger, table in (
        ("service_coverage_insert", "service"),
        ("service_coverage_update", "service"),
        ("service_coverage_delete", "service"),
        ("location_coverage", "location"),
    ):
        op.execute(f"DROP TRIGGER {trigger} ON {table}")
    op.execute(
        "DROP FUNCTION IF EXISTS service_coverage_trigger, location_coverage_trigger, coverage_services_changed,"
        " coverage_compute, coverage_nearest"
    )
    op.drop_index(op.f("ix_commune_coverage__service_id"), table_name="commune_coverage")
    op.drop_table("commune_coverage")
