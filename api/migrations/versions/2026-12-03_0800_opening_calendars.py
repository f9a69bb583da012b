"""Opening calendars: the search's projection of opening hours, and hours read as spans of real time.

- `schedule_ranges` turns one local day of a schedule into spans of real time (`tstzrange`): an
  interval is open from the instant its start names in the service's time zone to the instant its end
  names. `service_is_open` and `service_next_opening` are redefined on it, so they and the calendars
  agree by construction, DST nights included (a local time the clock skips or repeats names the
  instant PostgreSQL gives it).
- `service_next_opening` is the first instant after `at` at which the service is open: the earliest
  opening within the next 15 local days outside any temporary closure, or the end of the closure if
  the service is open then (however far away). A closure that starts later no longer hides the openings
  before it, and a reopening in the middle of the hours is found even when the closure starts later.
- `opening_calendar` holds, per distinct (schedule, time zone, holiday zone), the open spans of a
  weekly schedule over a window of 120 days: the search reads "open at" as one containment test and
  the next opening as the first span after it, instead of running plpgsql per row. Closures stay on
  the service and are applied at read time. A search reads a calendar only inside its window and with
  the very key its service has now; anything else (no calendar, a time outside the window, an
  unforeseen change) falls back to the functions, so the projection can make a search slower, never
  wrong.
- Kept current in the same transaction as the writes: a trigger on `service` (schedule, place,
  organisation), on `location` (commune, archival) and on `organisation` (seat) ensures the calendar
  of each service concerned; changes to public holidays drop the calendars of their zone. Calendars
  that near the end of their window are rebuilt by a write that needs them, by `maillage hours
  refresh`, and when the server starts. The triggers run as the schema owner: the application role
  only reads calendars.

Revision ID: 8e4b02d3f6a1
Revises: 7d3a91c2e5f0
Create Date: 2026-12-03 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "8e4b02d3f6a1"
down_revision: str | None = "7d3a91c2e5f0"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APP_ROLE = "maillage_app"

_FUNCTIONS = """
CREATE FUNCTION schedule_ranges(p_schedule jsonb, p_day date, p_tz text, p_zone text) RETURNS SETOF tstzrange
LANGUAGE sql STABLE AS $$
    SELECT tstzrange(a, b) FROM (
        SELECT (p_day + (iv->>0)::time) AT TIME ZONE p_tz AS a,
               (p_day + CASE WHEN (iv->>0)::time < (iv->>1)::time THEN 0 ELSE 1 END + (iv->>1)::time)
                   AT TIME ZONE p_tz AS b
          FROM jsonb_array_elements(schedule_intervals(p_schedule, p_day, p_zone)) iv) spans
     WHERE a < b
$$;

CREATE OR REPLACE FUNCTION service_is_open(p_schedule jsonb, p_status text, p_closed_from timestamptz,
                                           p_closed_until timestamptz, p_tz text, p_zone text, p_at timestamptz)
RETURNS boolean LANGUAGE plpgsql STABLE AS $$
DECLARE
    day date := (p_at AT TIME ZONE p_tz)::date;
BEGIN
    IF service_closed_for(p_status, p_closed_from, p_closed_until, p_at) THEN
        RETURN false;
    END IF;
    IF p_schedule->>'mode' IN ('always', 'on_call') THEN
        RETURN true;
    ELSIF p_schedule->>'mode' = 'unknown' THEN
        RETURN NULL;  -- hours not given: neither open nor closed
    END IF;
    -- A span of the day before may run past midnight; one of the next day starts after it.
    RETURN EXISTS (SELECT 1 FROM generate_series(-1, 0) k, schedule_ranges(p_schedule, day + k, p_tz, p_zone) r
                    WHERE r @> p_at);
END $$;

CREATE OR REPLACE FUNCTION service_next_opening(p_schedule jsonb, p_status text, p_closed_from timestamptz,
                                                p_closed_until timestamptz, p_tz text, p_zone text,
                                                p_at timestamptz)
RETURNS timestamptz LANGUAGE plpgsql STABLE AS $$
DECLARE
    day date := (p_at AT TIME ZONE p_tz)::date;
    reopens timestamptz;
    opens timestamptz;
BEGIN
    IF p_status = 'suspended' OR p_schedule->>'mode' = 'unknown'
       OR service_is_open(p_schedule, p_status, p_closed_from, p_closed_until, p_tz, p_zone, p_at) IS NOT FALSE THEN
        RETURN NULL;
    END IF;
    IF p_status = 'temporarily_closed' AND p_closed_until > p_at
       AND service_is_open(p_schedule, p_status, p_closed_from, p_closed_until, p_tz, p_zone, p_closed_until) THEN
        reopens := p_closed_until;  -- open when the closure ends: the middle of its hours, or 24/7
    END IF;
    IF p_schedule->>'mode' IN ('always', 'on_call') THEN
        RETURN reopens;
    END IF;
    FOR k IN 0..15 LOOP  -- day by day: the first day with an opening holds the earliest one
        opens := (SELECT min(lower(r)) FROM schedule_ranges(p_schedule, day + k, p_tz, p_zone) r
                   WHERE lower(r) > p_at AND NOT service_closed_for(p_status, p_closed_from, p_closed_until, lower(r)));
        IF opens IS NOT NULL THEN
            RETURN least(reopens, opens);
        END IF;
    END LOOP;
    RETURN reopens;
END $$;

-- The open spans of a weekly schedule between two instants.
CREATE FUNCTION calendar_open(p_schedule jsonb, p_tz text, p_zone text, p_from timestamptz, p_until timestamptz)
RETURNS tstzmultirange LANGUAGE sql STABLE AS $$
    SELECT coalesce(range_agg(r * tstzrange(p_from, p_until)), '{}'::tstzmultirange)
      FROM generate_series((p_from AT TIME ZONE p_tz)::date - 1, (p_until AT TIME ZONE p_tz)::date,
                           interval '1 day') d,
           schedule_ranges(p_schedule, d::date, p_tz, p_zone) r
     WHERE r && tstzrange(p_from, p_until)
$$;

-- The calendar key of a schedule: its canonical jsonb text, digested.
CREATE FUNCTION schedule_digest(p_schedule jsonb) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT sha256(convert_to(p_schedule::text, 'UTF8')) $$;

-- Make sure the calendars of these services exist and have at least 30 days of window left; the time
-- zone and holiday zone are read as the search reads them (the location's commune, else the
-- organisation's seat). Returns how many calendars were built.
CREATE FUNCTION ensure_calendars(p_services uuid[],
                                 p_from timestamptz DEFAULT date_trunc('hour', now()) - interval '1 day',
                                 p_days integer DEFAULT 120) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    built integer;
    starts timestamptz := p_from;
    ends timestamptz := p_from + make_interval(days => p_days);
BEGIN
    WITH wanted AS (
        SELECT DISTINCT ON (1, 2, 3) schedule_digest(s.schedule) AS digest,
               coalesce(d.timezone, 'Europe/Paris') AS tz, coalesce(d.holiday_zone, 'FR') AS zone, s.schedule
          FROM service s
          JOIN organisation o ON o.id = s.organisation_id
          LEFT JOIN location l ON l.id = s.location_id AND l.archived_at IS NULL
          LEFT JOIN commune lc ON lc.code = coalesce(l.commune_code, o.seat_commune_code)
          LEFT JOIN departement d ON d.code = lc.departement_code
         WHERE s.id = ANY(p_services) AND s.archived_at IS NULL AND s.schedule->>'mode' = 'weekly'
    ), missing AS (
        SELECT w.* FROM wanted w
         WHERE NOT EXISTS (SELECT 1 FROM opening_calendar c
                            WHERE c.schedule_digest = w.digest AND c.timezone = w.tz AND c.holiday_zone = w.zone
                              AND c.valid_until >= least(ends, now() + interval '30 days'))
    )
    INSERT INTO opening_calendar (schedule_digest, timezone, holiday_zone, valid_from, valid_until, open)
    SELECT digest, tz, zone, starts, ends, calendar_open(schedule, tz, zone, starts, ends)
      FROM missing
     ORDER BY digest, tz, zone  -- one order for every writer: two never wait on each other's keys
    ON CONFLICT (schedule_digest, timezone, holiday_zone) DO UPDATE
       SET valid_from = EXCLUDED.valid_from, valid_until = EXCLUDED.valid_until, open = EXCLUDED.open;
    GET DIAGNOSTICS built = ROW_COUNT;
    RETURN built;
END $$;

CREATE FUNCTION service_calendar_trigger() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    PERFORM ensure_calendars(ARRAY[NEW.id]);
    RETURN NULL;
END $$;

CREATE FUNCTION location_calendar_trigger() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    PERFORM ensure_calendars(ARRAY(SELECT id FROM service WHERE location_id = NEW.id));
    RETURN NULL;
END $$;

CREATE FUNCTION organisation_calendar_trigger() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    PERFORM ensure_calendars(ARRAY(SELECT id FROM service WHERE organisation_id = NEW.id));
    RETURN NULL;
END $$;

-- Public holidays close days: a calendar of a zone whose holidays change is dropped (its services
-- fall back to the functions until `maillage hours refresh` or their next write rebuilds it).
CREATE FUNCTION holiday_calendar_trigger() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        DELETE FROM opening_calendar WHERE holiday_zone IN (SELECT zone FROM new_rows);
    ELSIF TG_OP = 'DELETE' THEN
        DELETE FROM opening_calendar WHERE holiday_zone IN (SELECT zone FROM old_rows);
    ELSE  -- renaming a holiday (as every `maillage seed` does) changes no calendar
        DELETE FROM opening_calendar WHERE holiday_zone IN (
            SELECT zone FROM ((SELECT zone, day FROM new_rows EXCEPT SELECT zone, day FROM old_rows)
                              UNION (SELECT zone, day FROM old_rows EXCEPT SELECT zone, day FROM new_rows)) changed);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER service_calendar AFTER INSERT OR UPDATE OF schedule, location_id, organisation_id, archived_at
    ON service FOR EACH ROW WHEN (NEW.schedule->>'mode' = 'weekly') EXECUTE FUNCTION service_calendar_trigger();
CREATE TRIGGER location_calendar AFTER UPDATE OF commune_code, archived_at ON location
    FOR EACH ROW EXECUTE FUNCTION location_calendar_trigger();
CREATE TRIGGER organisation_calendar AFTER UPDATE OF seat_commune_code ON organisation
    FOR EACH ROW EXECUTE FUNCTION organisation_calendar_trigger();
CREATE TRIGGER holiday_calendar_insert AFTER INSERT ON public_holiday
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION holiday_calendar_trigger();
CREATE TRIGGER holiday_calendar_delete AFTER DELETE ON public_holiday
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION holiday_calendar_trigger();
CREATE TRIGGER holiday_calendar_update AFTER UPDATE ON public_holiday
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION holiday_calendar_trigger();
"""

# The functions as the previous revision defined them (local times compared on the clock face; a
# closure's end taken as the next opening even before the closure started).
_PREVIOUS = """
CREATE OR REPLACE FUNCTION service_is_open(p_schedule jsonb, p_status text, p_closed_from timestamptz,
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
        RETURN NULL;
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

CREATE OR REPLACE FUNCTION service_next_opening(p_schedule jsonb, p_status text, p_closed_from timestamptz,
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
        RETURN p_closed_until;
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
    op.create_table(
        "opening_calendar",
        sa.Column("schedule_digest", postgresql.BYTEA(), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("holiday_zone", sa.String(length=4), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("open", postgresql.TSTZMULTIRANGE(), nullable=False),
        sa.PrimaryKeyConstraint("schedule_digest", "timezone", "holiday_zone", name=op.f("pk_opening_calendar")),
    )
    op.execute(_FUNCTIONS)
    op.execute(f"GRANT SELECT ON opening_calendar TO {APP_ROLE}")
    # Triggers call it as the owner; nobody else needs to (functions are executable by PUBLIC by default).
    op.execute(
        "REVOKE EXECUTE ON FUNCTION ensure_calendars, service_calendar_trigger, location_calendar_trigger,"
        " organisation_calendar_trigger, holiday_calendar_trigger FROM PUBLIC"
    )
    # SECURITY DEFINER functions resolve names in public: nobody but the owner may add any there
    # (PostgreSQL 15's default for new databases; not for databases created before it).
    op.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    op.execute("SELECT ensure_calendars(ARRAY(SELECT id FROM service))")


def downgrade() -> None:
    for trigger, table in (
        ("service_calendar", "service"),
        ("location_calendar", "location"),
        ("organisation_calendar", "organisation"),
        ("holiday_calendar_insert", "public_holiday"),
        ("holiday_calendar_delete", "public_holiday"),
        ("holiday_calendar_update", "public_holiday"),
    ):
        op.execute(f"DROP TRIGGER {trigger} ON {table}")
    op.execute(
        "DROP FUNCTION service_calendar_trigger, location_calendar_trigger, organisation_calendar_trigger,"
        " holiday_calendar_trigger, ensure_calendars, schedule_digest, calendar_open"
    )
    op.execute(_PREVIOUS)
    op.execute("DROP FUNCTION schedule_ranges")
    op.drop_table("opening_calendar")
