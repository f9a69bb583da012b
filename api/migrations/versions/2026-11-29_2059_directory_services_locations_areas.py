"""Directory: specialisms, locations, services, service areas; calendars for "open now".

- location.public_point is kept by a trigger (the exact point when public, the commune's point when
  confidential), so no code path can file a safe house's coordinates where searches look.
- service.search_vector uses a French, accent-insensitive text search configuration.
- service_is_open / service_next_opening read a service's schedule in its own time zone, with the
  public holidays of its zone; they are the only implementation of opening hours.

Revision ID: 6d08922b5d46
Revises: dd74bb3bfac9
Create Date: 2026-11-29 20:59:08.988892
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry
from sqlalchemy.dialects import postgresql

revision: str = '6d08922b5d46'
down_revision: str | None = 'dd74bb3bfac9'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


_ZONES = """
UPDATE departement SET
    timezone = CASE code WHEN '971' THEN 'America/Guadeloupe' WHEN '972' THEN 'America/Martinique'
                         WHEN '973' THEN 'America/Cayenne' WHEN '974' THEN 'Indian/Reunion'
                         WHEN '976' THEN 'Indian/Mayotte' ELSE 'Europe/Paris' END,
    holiday_zone = CASE WHEN code IN ('67', '68') THEN '6AE' WHEN code IN ('57', '971', '972', '973', '974', '976')
                        THEN code ELSE 'FR' END
"""

_PUBLIC_POINT_TRIGGER = """
CREATE FUNCTION location_public_point() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.visibility = 'public' THEN
        NEW.public_point := NEW.point;
    ELSE
        SELECT c.point INTO NEW.public_point FROM commune c WHERE c.code = NEW.commune_code;
        IF NEW.public_point IS NULL THEN
            RAISE EXCEPTION 'commune % has no point for a confidential location', NEW.commune_code;
        END IF;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER location_public_point BEFORE INSERT OR UPDATE ON location
    FOR EACH ROW EXECUTE FUNCTION location_public_point();
"""

# Intervals are ["HH:MM", "HH:MM"] local times; an end at or before the start runs past midnight and
# belongs to the day it starts. A dated exception replaces the day's weekly hours; public holidays
# close the day unless "closed_on_public_holidays" is false. "always" and "on_call" are reachable at
# any time. A temporary closure [closed_from, closed_until) wins over everything.
_SCHEDULE_FUNCTIONS = """
CREATE FUNCTION schedule_intervals(p_schedule jsonb, p_day date, p_zone text) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT e->'hours' FROM jsonb_array_elements(coalesce(p_schedule->'exceptions', '[]')) e
          WHERE e->>'date' = p_day::text LIMIT 1),
        CASE WHEN coalesce((p_schedule->>'closed_on_public_holidays')::boolean, true)
                  AND EXISTS (SELECT 1 FROM public_holiday h WHERE h.zone = p_zone AND h.day = p_day)
             THEN '[]'::jsonb END,
        p_schedule->'weekly'->((ARRAY['mon','tue','wed','thu','fri','sat','sun'])[extract(isodow FROM p_day)::int]),
        '[]'::jsonb)
$$;

CREATE FUNCTION service_closed_for(p_status text, p_closed_from timestamptz, p_closed_until timestamptz,
                                   p_at timestamptz) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT p_status = 'suspended'
        OR (p_status = 'temporarily_closed' AND (p_closed_from IS NULL OR p_at >= p_closed_from)
            AND (p_closed_until IS NULL OR p_at < p_closed_until))
$$;

CREATE FUNCTION service_is_open(p_schedule jsonb, p_status text, p_closed_from timestamptz,
                                p_closed_until timestamptz, p_tz text, p_zone text, p_at timestamptz)
RETURNS boolean LANGUAGE plpgsql STABLE AS $$
DECLARE
    local_ts timestamp := p_at AT TIME ZONE p_tz;
    t time := local_ts::time;
    iv jsonb;
    s time;
    e time;
BEGIN
    IF service_closed_for(p_status, p_closed_from, p_closed_until, p_at) THEN
        RETURN false;
    END IF;
    IF p_schedule->>'mode' IN ('always', 'on_call') THEN
        RETURN true;
    ELSIF p_schedule->>'mode' = 'unknown' THEN
        RETURN NULL;  -- hours not given: neither open nor closed
    END IF;
    FOR iv IN SELECT value FROM jsonb_array_elements(schedule_intervals(p_schedule, local_ts::date, p_zone)) LOOP
        s := (iv->>0)::time;
        e := (iv->>1)::time;
        IF (s < e AND t >= s AND t < e) OR (e <= s AND t >= s) THEN
            RETURN true;
        END IF;
    END LOOP;
    FOR iv IN SELECT value FROM jsonb_array_elements(schedule_intervals(p_schedule, local_ts::date - 1, p_zone)) LOOP
        s := (iv->>0)::time;
        e := (iv->>1)::time;
        IF e <= s AND t < e THEN
            RETURN true;
        END IF;
    END LOOP;
    RETURN false;
END $$;

-- The next time a closed service opens, within 15 days; NULL when it is open now or will not open.
CREATE FUNCTION service_next_opening(p_schedule jsonb, p_status text, p_closed_from timestamptz,
                                     p_closed_until timestamptz, p_tz text, p_zone text, p_at timestamptz)
RETURNS timestamptz LANGUAGE plpgsql STABLE AS $$
DECLARE
    day date := (p_at AT TIME ZONE p_tz)::date;
    k int;
    s time;
    candidate timestamptz;
BEGIN
    IF p_status = 'suspended'
       OR service_is_open(p_schedule, p_status, p_closed_from, p_closed_until, p_tz, p_zone, p_at) IS NOT FALSE THEN
        RETURN NULL;
    END IF;
    IF p_closed_until IS NOT NULL AND p_closed_until > p_at
       AND service_is_open(p_schedule, p_status, p_closed_from, p_closed_until, p_tz, p_zone, p_closed_until) IS TRUE THEN
        RETURN p_closed_until;  -- reopens in the middle of its hours
    END IF;
    IF p_schedule->>'mode' IN ('always', 'on_call') THEN
        RETURN CASE WHEN p_closed_until > p_at THEN p_closed_until END;
    ELSIF p_schedule->>'mode' = 'unknown' THEN
        RETURN NULL;
    END IF;
    FOR k IN 0..15 LOOP
        FOR s IN SELECT (value->>0)::time FROM jsonb_array_elements(schedule_intervals(p_schedule, day + k, p_zone))
                 ORDER BY 1 LOOP
            candidate := ((day + k) + s) AT TIME ZONE p_tz;
            IF candidate > p_at AND NOT service_closed_for(p_status, p_closed_from, p_closed_until, candidate) THEN
                RETURN candidate;
            END IF;
        END LOOP;
    END LOOP;
    RETURN NULL;
END $$;
"""


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS unaccent")
    op.execute("CREATE TEXT SEARCH CONFIGURATION public.french_unaccent (COPY = pg_catalog.french)")
    op.execute(
        "ALTER TEXT SEARCH CONFIGURATION public.french_unaccent "
        "ALTER MAPPING FOR hword, hword_part, word WITH public.unaccent, french_stem"
    )
    op.create_table('public_holiday',
    sa.Column('zone', sa.String(length=4), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.PrimaryKeyConstraint('zone', 'day', name=op.f('pk_public_holiday'))
    )
    op.create_table('specialism',
    sa.Column('slug', sa.String(length=64), nullable=False),
    sa.Column('label_fr', sa.String(length=120), nullable=False),
    sa.Column('label_en', sa.String(length=120), nullable=False),
    sa.Column('data_inclusion', sa.String(length=120), nullable=True),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('slug', name=op.f('pk_specialism'))
    )
    op.create_geospatial_table('location',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('organisation_id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=True),
    sa.Column('address', sa.String(length=300), nullable=True),
    sa.Column('commune_code', sa.String(length=5), nullable=False),
    sa.Column('point', Geometry(geometry_type='POINT', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry', nullable=False), nullable=False),
    sa.Column('public_point', Geometry(geometry_type='POINT', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry', nullable=False), nullable=False),
    sa.Column('visibility', sa.Enum('public', 'confidential', name='visibility', native_enum=False, create_constraint=True, length=32), server_default='public', nullable=False),
    sa.Column('point_precision', sa.Enum('exact', 'commune', name='pointprecision', native_enum=False, create_constraint=True, length=32), server_default='exact', nullable=False),
    sa.Column('front_door_phone', sa.String(length=32), nullable=True),
    sa.Column('front_door_email', sa.String(length=254), nullable=True),
    sa.Column('demo', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('seed_key', sa.String(length=80), nullable=True),
    sa.Column('archived_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['commune_code'], ['commune.code'], name=op.f('fk_location__commune_code__commune')),
    sa.ForeignKeyConstraint(['organisation_id'], ['organisation.id'], name=op.f('fk_location__organisation_id__organisation')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_location')),
    sa.UniqueConstraint('seed_key', name=op.f('uq_location__seed_key'))
    )
    op.create_index(op.f('ix_location__organisation_id'), 'location', ['organisation_id'], unique=False)
    op.create_geospatial_index('ix_location__public_point', 'location', ['public_point'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_index('ix_location__public_point_geography', 'location', [sa.literal_column('(public_point::geography)')], unique=False, postgresql_using='gist')
    op.create_geospatial_table('service',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('organisation_id', sa.Uuid(), nullable=False),
    sa.Column('location_id', sa.Uuid(), nullable=True),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('description', sa.String(length=2000), nullable=True),
    sa.Column('specialisms', postgresql.ARRAY(sa.String(length=64)), server_default='{}', nullable=False),
    sa.Column('audiences', postgresql.ARRAY(sa.String(length=32)), server_default='{}', nullable=False),
    sa.Column('age_min', sa.SmallInteger(), nullable=True),
    sa.Column('age_max', sa.SmallInteger(), nullable=True),
    sa.Column('genders', postgresql.ARRAY(sa.String(length=16)), server_default='{}', nullable=False),
    sa.Column('languages', postgresql.ARRAY(sa.String(length=3)), server_default='{}', nullable=False),
    sa.Column('channels', postgresql.ARRAY(sa.String(length=16)), server_default='{}', nullable=False),
    sa.Column('phone', sa.String(length=32), nullable=True),
    sa.Column('email', sa.String(length=254), nullable=True),
    sa.Column('website', sa.String(length=500), nullable=True),
    sa.Column('schedule', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text('\'{"mode": "unknown"}\''), nullable=False),
    sa.Column('status', sa.Enum('active', 'temporarily_closed', 'suspended', name='servicestatus', native_enum=False, create_constraint=True, length=32), server_default='active', nullable=False),
    sa.Column('closed_from', sa.DateTime(timezone=True), nullable=True),
    sa.Column('closed_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('closure_message', sa.String(length=500), nullable=True),
    sa.Column('capacity', sa.Enum('available', 'limited', 'full', 'waitlist', name='capacity', native_enum=False, create_constraint=True, length=32), nullable=True),
    sa.Column('capacity_places', sa.Integer(), nullable=True),
    sa.Column('capacity_as_of', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_verified_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('coverage', Geometry(geometry_type='MULTIPOLYGON', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry'), nullable=True),
    sa.Column('covers_national', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('search_vector', postgresql.TSVECTOR(), sa.Computed("to_tsvector('public.french_unaccent'::regconfig, coalesce(name, '') || ' ' || coalesce(description, ''))", persisted=True), nullable=True),
    sa.Column('demo', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('seed_key', sa.String(length=80), nullable=True),
    sa.Column('archived_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('age_max IS NULL OR age_max BETWEEN 0 AND 99', name=op.f('ck_service__age_max_range')),
    sa.CheckConstraint('age_min IS NULL OR age_max IS NULL OR age_min <= age_max', name=op.f('ck_service__age_range')),
    sa.CheckConstraint('age_min IS NULL OR age_min BETWEEN 0 AND 99', name=op.f('ck_service__age_min_range')),
    sa.CheckConstraint('capacity_places IS NULL OR capacity_places >= 0', name=op.f('ck_service__places_positive')),
    sa.ForeignKeyConstraint(['location_id'], ['location.id'], name=op.f('fk_service__location_id__location')),
    sa.ForeignKeyConstraint(['organisation_id'], ['organisation.id'], name=op.f('fk_service__organisation_id__organisation')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_service')),
    sa.UniqueConstraint('seed_key', name=op.f('uq_service__seed_key'))
    )
    op.create_geospatial_index('ix_service__coverage', 'service', ['coverage'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_index('ix_service__covers_national', 'service', ['covers_national'], unique=False, postgresql_where=sa.text('covers_national'))
    op.create_index(op.f('ix_service__location_id'), 'service', ['location_id'], unique=False)
    op.create_index(op.f('ix_service__organisation_id'), 'service', ['organisation_id'], unique=False)
    op.create_index('ix_service__search_vector', 'service', ['search_vector'], unique=False, postgresql_using='gin')
    op.create_index('ix_service__specialisms', 'service', ['specialisms'], unique=False, postgresql_using='gin')
    op.create_geospatial_table('service_area',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('service_id', sa.Uuid(), nullable=False),
    sa.Column('communes', postgresql.ARRAY(sa.String(length=5)), server_default='{}', nullable=False),
    sa.Column('departements', postgresql.ARRAY(sa.String(length=3)), server_default='{}', nullable=False),
    sa.Column('collectivites', postgresql.ARRAY(sa.String(length=4)), server_default='{}', nullable=False),
    sa.Column('regions', postgresql.ARRAY(sa.String(length=3)), server_default='{}', nullable=False),
    sa.Column('radius_km', sa.Float(), nullable=True),
    sa.Column('national', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('area', Geometry(geometry_type='MULTIPOLYGON', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry'), nullable=True),
    sa.Column('archived_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['service_id'], ['service.id'], name=op.f('fk_service_area__service_id__service')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_service_area'))
    )
    op.create_index(op.f('ix_service_area__service_id'), 'service_area', ['service_id'], unique=False)
    op.add_column('departement', sa.Column('timezone', sa.String(length=40), server_default='Europe/Paris', nullable=False))
    op.add_column('departement', sa.Column('holiday_zone', sa.String(length=4), server_default='FR', nullable=False))
    op.execute(_ZONES)
    op.execute(_PUBLIC_POINT_TRIGGER)
    op.execute(_SCHEDULE_FUNCTIONS)
    op.add_column('organisation', sa.Column('siret', sa.String(length=14), nullable=True))
    op.add_column('organisation', sa.Column('deactivated_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column('organisation', 'deactivated_at')
    op.drop_column('organisation', 'siret')
    op.drop_column('departement', 'holiday_zone')
    op.drop_column('departement', 'timezone')
    op.drop_index(op.f('ix_service_area__service_id'), table_name='service_area')
    op.drop_geospatial_table('service_area')
    op.drop_index('ix_service__specialisms', table_name='service', postgresql_using='gin')
    op.drop_index('ix_service__search_vector', table_name='service', postgresql_using='gin')
    op.drop_index(op.f('ix_service__organisation_id'), table_name='service')
    op.drop_index(op.f('ix_service__location_id'), table_name='service')
    op.drop_index('ix_service__covers_national', table_name='service', postgresql_where=sa.text('covers_national'))
    op.drop_geospatial_index('ix_service__coverage', table_name='service', postgresql_using='gist', column_name='coverage')
    op.drop_geospatial_table('service')
    op.drop_index('ix_location__public_point_geography', table_name='location', postgresql_using='gist')
    op.drop_geospatial_index('ix_location__public_point', table_name='location', postgresql_using='gist', column_name='public_point')
    op.drop_index(op.f('ix_location__organisation_id'), table_name='location')
    op.drop_geospatial_table('location')
    op.drop_table('specialism')
    op.drop_table('public_holiday')
    op.execute("DROP FUNCTION service_next_opening, service_is_open, service_closed_for, schedule_intervals")
    op.execute("DROP FUNCTION location_public_point")
    op.execute("DROP TEXT SEARCH CONFIGURATION public.french_unaccent")
    op.execute("DROP EXTENSION IF EXISTS unaccent")
