"""Handoff rollups: the statistics' atoms, summed ahead, kept exact.

A national year of statistics scanned ~500,000 handoffs twice (once for the atoms under k, once for
the figures) and took ~1.5 s. `handoff_rollup` holds one row per atom — (collectivité, Paris month,
kind) — with everything the tables grouped by those dimensions need, exactly:
- additive counts and their perturbation keys (handoffs, accepted, declined, failed, declines by
  reason, acknowledged late);
- the atom's distinct cases as a sorted array of case numbers (`case_record.stat_no`, an internal
  sequence never shown to anyone) with, beside each, the sum of its handoffs' keys: distinct cases
  are not additive across atoms, so a cell counts the distinct numbers of its atoms, and the cases who
  ran away are those numbers found in the runaway set at read time;
- the deadlines of handoffs not yet acknowledged (with their keys), since whether they are overdue
  depends on the moment the statistics are read;
- the hours to acknowledgement and to acceptance of every handoff, so percentiles stay exact.

`archived` rows hold what retention deleted, so months older than the retention period are still
counted. What stays cannot lead back to a child: the case numbers are new ones from a sequence of their
own, deadlines long past are counted as late handoffs, hours are kept to the minute.
`runaway_case` holds the numbers of the cases that ran away and the collectivité their events are in
(a trigger on `case_event` keeps it; retention renumbers its rows instead of deleting them): a cell's
runaways are its case numbers found there.

The live rows (`archived = false`) are a projection of `handoff`. Each handoff statement records the
atoms it touched; a deferred trigger recomputes them at commit, under one advisory lock per atom taken
in key order before reading (two writers of one atom never overwrite each other with stale sums, and
never deadlock, since those locks are the last a transaction waits for), and a statistics read first
recomputes what its own transaction touched. Writers must run at READ COMMITTED (the application
does): a REPEATABLE READ writer would recompute from its old snapshot and fail to serialise.
`handoff_rollup_rebuild()` (`maillage stats rebuild`) recomputes every live row; the application
role only reads the tables.

`handoff_archive` (counts by status, without cases: no k could be applied to them) is replaced: the
upgrade refuses to drop it while it holds rows rather than lose them.

Revision ID: b7d2e8f14c60
Revises: a1c7e5f09b3d
Create Date: 2026-12-03 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "b7d2e8f14c60"
down_revision: str | None = "a1c7e5f09b3d"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APP_ROLE = "maillage_app"
# directory/stats.py's DECLINE_REASONS: a test compares the rollup with the statement over handoffs.
_REASONS = ("no_capacity", "out_of_criteria", "out_of_territory", "refused_by_young_person", "other")
_REASON_COLUMNS = "".join(f", s.declined_{r}, s.declined_{r}_key" for r in _REASONS)
_ARCHIVED_REASON_COLUMNS = "".join(f", p.declined_{r}, p.declined_{r}_key" for r in _REASONS)
_REASON_SUMS = "".join(
    f""",
               count(*) FILTER (WHERE reason = '{r}')::int AS declined_{r},
               coalesce(sum(hkey) FILTER (WHERE reason = '{r}'), 0)::bigint AS declined_{r}_key"""
    for r in _REASONS
)
_REASON_MERGE = "".join(
    f""",
        declined_{r} = r.declined_{r} + EXCLUDED.declined_{r},
        declined_{r}_key = r.declined_{r}_key + EXCLUDED.declined_{r}_key"""
    for r in _REASONS
)
_KNOWN = "ARRAY[" + ", ".join(f"'{r}'" for r in _REASONS) + "]::text[]"

_FUNCTIONS = f"""
-- The rollup rows of these atoms as the handoffs say now (of these cases only, when given).
CREATE FUNCTION handoff_rollup_of(p_collectivites varchar[], p_months date[], p_kinds varchar[],
                                  p_cases uuid[], p_archived boolean)
RETURNS SETOF handoff_rollup LANGUAGE sql STABLE SET search_path = public, pg_temp AS $$
    WITH atom AS (
        SELECT DISTINCT * FROM unnest(p_collectivites, p_months, p_kinds) AS a(collectivite_code, month, kind)
    ), h AS MATERIALIZED (
        SELECT h.collectivite_code, h.created_month AS month, h.kind, c.stat_no, h.status,
               get_byte(uuid_send(h.id), 15) AS hkey, h.acknowledge_by, h.acknowledged_at, h.accepted_at,
               date_part('epoch', h.acknowledged_at - h.created_at) / 3600 AS ack_hours,
               date_part('epoch', h.accepted_at - h.created_at) / 3600 AS accept_hours,
               CASE WHEN h.status = 'declined' THEN CASE WHEN h.decline_reason = ANY({_KNOWN})
                    THEN h.decline_reason ELSE 'other' END END AS reason
          FROM atom a
          JOIN handoff h ON h.collectivite_code = a.collectivite_code AND h.created_month = a.month
                        AND h.kind = a.kind
          JOIN case_record c ON c.id = h.case_id
         WHERE h.status <> 'entered_in_error' AND (p_cases IS NULL OR h.case_id = ANY(p_cases))
    ), by_case AS (
        SELECT collectivite_code, month, kind, array_agg(stat_no ORDER BY stat_no) AS case_nos,
               array_agg(key ORDER BY stat_no) AS case_keys
          FROM (SELECT collectivite_code, month, kind, stat_no, sum(hkey)::int AS key
                  FROM h GROUP BY 1, 2, 3, 4) per_case
         GROUP BY 1, 2, 3
    ), sums AS (
        SELECT collectivite_code, month, kind,
               count(*)::int AS handoffs, sum(hkey)::bigint AS handoffs_key,
               count(*) FILTER (WHERE accepted_at IS NOT NULL)::int AS accepted,
               coalesce(sum(hkey) FILTER (WHERE accepted_at IS NOT NULL), 0)::bigint AS accepted_key,
               count(*) FILTER (WHERE status = 'declined')::int AS declined,
               coalesce(sum(hkey) FILTER (WHERE status = 'declined'), 0)::bigint AS declined_key,
               count(*) FILTER (WHERE status = 'failed')::int AS failed,
               coalesce(sum(hkey) FILTER (WHERE status = 'failed'), 0)::bigint AS failed_key
               {_REASON_SUMS},
               count(*) FILTER (WHERE acknowledged_at > acknowledge_by)::int AS overdue_late,
               coalesce(sum(hkey) FILTER (WHERE acknowledged_at > acknowledge_by), 0)::bigint AS overdue_late_key,
               coalesce(array_agg(acknowledge_by ORDER BY acknowledge_by, hkey)
                        FILTER (WHERE acknowledged_at IS NULL), '{{}}') AS pending_due,
               coalesce(array_agg(hkey ORDER BY acknowledge_by, hkey)
                        FILTER (WHERE acknowledged_at IS NULL), '{{}}') AS pending_keys,
               coalesce(array_agg(ack_hours ORDER BY ack_hours) FILTER (WHERE ack_hours IS NOT NULL), '{{}}')
                   AS ack_hours,
               coalesce(array_agg(accept_hours ORDER BY accept_hours) FILTER (WHERE accept_hours IS NOT NULL),
                        '{{}}') AS accept_hours
          FROM h GROUP BY 1, 2, 3
    )
    SELECT s.collectivite_code, s.month, s.kind, p_archived, s.handoffs, s.handoffs_key, b.case_nos, b.case_keys,
           s.accepted, s.accepted_key, s.declined, s.declined_key, s.failed, s.failed_key{_REASON_COLUMNS},
           s.overdue_late, s.overdue_late_key, s.pending_due, s.pending_keys, s.ack_hours, s.accept_hours
      FROM sums s JOIN by_case b USING (collectivite_code, month, kind)
$$;

-- Serialises the writers of each atom before anything is read (the statements after it see every
-- commit that came before), in the order of the lock keys, so that two flushes never wait on each other
-- in a cycle. The key spells the month out, whatever the session's DateStyle.
CREATE FUNCTION handoff_rollup_lock(p_collectivites varchar[], p_months date[], p_kinds varchar[])
RETURNS void LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
DECLARE
    key integer;
BEGIN
    FOR key IN SELECT DISTINCT hashtext(c || '/' || to_char(m, 'YYYY-MM-DD') || '/' || k)
                 FROM unnest(p_collectivites, p_months, p_kinds) AS a(c, m, k) ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(hashtext('handoff_rollup'), key);
    END LOOP;
END $$;

CREATE FUNCTION handoff_rollup_refresh(p_collectivites varchar[], p_months date[], p_kinds varchar[])
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    IF p_collectivites IS NULL OR cardinality(p_collectivites) = 0 THEN
        RETURN;
    END IF;
    PERFORM handoff_rollup_lock(p_collectivites, p_months, p_kinds);
    DELETE FROM handoff_rollup r
     USING unnest(p_collectivites, p_months, p_kinds) AS a(collectivite_code, month, kind)
     WHERE NOT r.archived AND r.collectivite_code = a.collectivite_code AND r.month = a.month AND r.kind = a.kind;
    INSERT INTO handoff_rollup SELECT * FROM handoff_rollup_of(p_collectivites, p_months, p_kinds, NULL, false);
END $$;

-- Every live row again, from the handoffs; returns the rows written.
CREATE FUNCTION handoff_rollup_rebuild() RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    written bigint;
BEGIN
    LOCK TABLE handoff_rollup IN EXCLUSIVE MODE;  -- readers go on; triggered refreshes wait
    DELETE FROM handoff_rollup WHERE NOT archived;
    DELETE FROM runaway_case WHERE stat_no > 0;  -- the live cases' (archived ones are negative)
    INSERT INTO runaway_case (stat_no, collectivite_code)
    SELECT DISTINCT c.stat_no, e.collectivite_code FROM case_event e JOIN case_record c ON c.id = e.case_id
     WHERE e.kind = 'runaway_started';
    INSERT INTO handoff_rollup
    SELECT r.* FROM (SELECT array_agg(collectivite_code) AS c, array_agg(created_month) AS m, array_agg(kind) AS k
                       FROM (SELECT DISTINCT collectivite_code, created_month, kind FROM handoff) atoms) a,
                    handoff_rollup_of(a.c, a.m, a.k, NULL, false) r;
    GET DIAGNOSTICS written = ROW_COUNT;
    RETURN written;
END $$;

-- Retention, before it deletes these cases: their part of each atom moves to the archived rows. What
-- stays must not lead back to a child: each case gets a new number from a sequence of its own (negative,
-- apart from the live ones; the same across its atoms, so distinct counts still hold, and a case leaves
-- whole, so the parts never share one), its runaway row follows that number, deadlines long past become
-- late handoffs, and hours are kept to the minute.
CREATE FUNCTION handoff_rollup_archive(p_cases uuid[]) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    c varchar[];
    m date[];
    k varchar[];
BEGIN
    SELECT array_agg(collectivite_code), array_agg(created_month), array_agg(kind) INTO c, m, k
      FROM (SELECT DISTINCT collectivite_code, created_month, kind FROM handoff WHERE case_id = ANY(p_cases)) atoms;
    IF c IS NULL THEN
        RETURN;
    END IF;
    PERFORM handoff_rollup_lock(c, m, k);
    WITH renumbered AS MATERIALIZED (
        SELECT stat_no, -nextval('archived_case_no')::integer AS archived_no
          FROM case_record WHERE id = ANY(p_cases) ORDER BY stat_no
    ), runaways AS (
        UPDATE runaway_case r SET stat_no = n.archived_no FROM renumbered n WHERE r.stat_no = n.stat_no RETURNING 1
    ), part AS MATERIALIZED (
        SELECT * FROM handoff_rollup_of(c, m, k, p_cases, true)
    ), cases AS (
        SELECT p.collectivite_code, p.month, p.kind, array_agg(n.archived_no ORDER BY n.archived_no) AS nos,
               array_agg(u.key ORDER BY n.archived_no) AS keys
          FROM part p CROSS JOIN LATERAL unnest(p.case_nos, p.case_keys) AS u(no, key)
          JOIN renumbered n ON n.stat_no = u.no
         GROUP BY 1, 2, 3
    ), rows AS (
        SELECT p.collectivite_code, p.month, p.kind, true, p.handoffs, p.handoffs_key, cs.nos, cs.keys,
               p.accepted, p.accepted_key, p.declined, p.declined_key, p.failed, p.failed_key{_ARCHIVED_REASON_COLUMNS},
               p.overdue_late + late.n, p.overdue_late_key + late.key,
               ARRAY(SELECT d FROM unnest(p.pending_due) d WHERE d >= now() ORDER BY 1),
               ARRAY(SELECT pk FROM unnest(p.pending_due, p.pending_keys) u(d, pk) WHERE d >= now() ORDER BY d, pk),
               ARRAY(SELECT round(x * 60) / 60 FROM unnest(p.ack_hours) x ORDER BY 1),
               ARRAY(SELECT round(x * 60) / 60 FROM unnest(p.accept_hours) x ORDER BY 1)
          FROM part p JOIN cases cs USING (collectivite_code, month, kind)
         CROSS JOIN LATERAL (SELECT count(*)::integer AS n, coalesce(sum(pk), 0)::bigint AS key
                               FROM unnest(p.pending_due, p.pending_keys) u(d, pk) WHERE d < now()) late
    )
    INSERT INTO handoff_rollup AS r SELECT * FROM rows
    ON CONFLICT (collectivite_code, month, kind, archived) DO UPDATE SET
        handoffs = r.handoffs + EXCLUDED.handoffs, handoffs_key = r.handoffs_key + EXCLUDED.handoffs_key,
        case_nos = r.case_nos || EXCLUDED.case_nos, case_keys = r.case_keys || EXCLUDED.case_keys,
        accepted = r.accepted + EXCLUDED.accepted, accepted_key = r.accepted_key + EXCLUDED.accepted_key,
        declined = r.declined + EXCLUDED.declined, declined_key = r.declined_key + EXCLUDED.declined_key,
        failed = r.failed + EXCLUDED.failed, failed_key = r.failed_key + EXCLUDED.failed_key{_REASON_MERGE},
        overdue_late = r.overdue_late + EXCLUDED.overdue_late,
        overdue_late_key = r.overdue_late_key + EXCLUDED.overdue_late_key,
        pending_due = r.pending_due || EXCLUDED.pending_due, pending_keys = r.pending_keys || EXCLUDED.pending_keys,
        ack_hours = r.ack_hours || EXCLUDED.ack_hours, accept_hours = r.accept_hours || EXCLUDED.accept_hours;
END $$;

-- The cases that ran away, by number, where their events are: kept when retention deletes the events.
CREATE FUNCTION runaway_case_trigger() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN  -- a case moved to another collectivité: its events followed it
        DELETE FROM runaway_case r USING case_record c, new_rows n
         WHERE c.id = n.case_id AND r.stat_no = c.stat_no AND n.kind = 'runaway_started';
    END IF;
    INSERT INTO runaway_case (stat_no, collectivite_code)
    SELECT DISTINCT c.stat_no, n.collectivite_code
      FROM new_rows n JOIN case_record c ON c.id = n.case_id
     WHERE n.kind = 'runaway_started'
     ORDER BY 1, 2
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;

-- A handoff statement records the atoms it touched (in a setting local to the transaction); a deferred
-- trigger refreshes them once, at commit, after every row lock the transaction takes: the atoms' locks
-- are then the last ones it waits for, taken in key order, so no two writers deadlock on them however
-- many statements each ran, and an atom a job touched a hundred times is recomputed once.
CREATE FUNCTION handoff_rollup_trigger() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    touched jsonb;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        DELETE FROM handoff_rollup WHERE NOT archived;
        RETURN NULL;
    ELSIF TG_OP = 'INSERT' THEN
        SELECT jsonb_agg(DISTINCT jsonb_build_array(collectivite_code, created_month, kind)) INTO touched FROM new_rows;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT jsonb_agg(DISTINCT jsonb_build_array(collectivite_code, created_month, kind)) INTO touched FROM old_rows;
    ELSE
        SELECT jsonb_agg(DISTINCT x.atom) INTO touched
          FROM new_rows n FULL JOIN old_rows o ON o.id = n.id
         CROSS JOIN LATERAL (VALUES (jsonb_build_array(n.collectivite_code, n.created_month, n.kind)),
                                    (jsonb_build_array(o.collectivite_code, o.created_month, o.kind))) AS x(atom)
         WHERE x.atom <> '[null, null, null]'::jsonb
           AND (n.id IS NULL OR o.id IS NULL
                OR (n.collectivite_code, n.created_month, n.kind, n.case_id, n.status, n.acknowledge_by,
                    n.acknowledged_at, n.accepted_at, n.decline_reason, n.created_at)
                   IS DISTINCT FROM
                   (o.collectivite_code, o.created_month, o.kind, o.case_id, o.status, o.acknowledge_by,
                    o.acknowledged_at, o.accepted_at, o.decline_reason, o.created_at));
    END IF;
    IF touched IS NOT NULL THEN
        PERFORM set_config('maillage.rollup_pending',
            (coalesce(nullif(current_setting('maillage.rollup_pending', true), ''), '[]')::jsonb || touched)::text,
            true);
    END IF;
    RETURN NULL;
END $$;

-- Refreshes the atoms this transaction touched (none: nothing to do). At commit, by the deferred
-- trigger; and by a statistics read, so that a transaction reads its own writes.
CREATE FUNCTION handoff_rollup_flush() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    pending jsonb := nullif(current_setting('maillage.rollup_pending', true), '')::jsonb;
    c varchar[];
    m date[];
    k varchar[];
BEGIN
    IF pending IS NULL THEN
        RETURN;
    END IF;
    PERFORM set_config('maillage.rollup_pending', '', true);
    SELECT array_agg(a ->> 0), array_agg((a ->> 1)::date), array_agg(a ->> 2) INTO c, m, k
      FROM (SELECT DISTINCT a FROM jsonb_array_elements(pending) a) atoms;
    PERFORM handoff_rollup_refresh(c, m, k);
END $$;

CREATE FUNCTION handoff_rollup_flush_trigger() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    PERFORM handoff_rollup_flush();
    RETURN NULL;
END $$;

-- A case's number never changes: the rollups and runaway_case hold it.
CREATE FUNCTION case_stat_no_fixed() RETURNS trigger
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
BEGIN
    IF NEW.stat_no IS DISTINCT FROM OLD.stat_no THEN
        RAISE EXCEPTION 'a case''s statistics number cannot change' USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER handoff_rollup_insert AFTER INSERT ON handoff REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION handoff_rollup_trigger();
CREATE TRIGGER handoff_rollup_update AFTER UPDATE ON handoff REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION handoff_rollup_trigger();
CREATE TRIGGER handoff_rollup_delete AFTER DELETE ON handoff REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION handoff_rollup_trigger();
CREATE TRIGGER handoff_rollup_truncate AFTER TRUNCATE ON handoff
    FOR EACH STATEMENT EXECUTE FUNCTION handoff_rollup_trigger();
CREATE CONSTRAINT TRIGGER handoff_rollup_flush AFTER INSERT OR UPDATE OR DELETE ON handoff
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION handoff_rollup_flush_trigger();
CREATE TRIGGER case_stat_no_fixed BEFORE UPDATE OF stat_no ON case_record
    FOR EACH ROW EXECUTE FUNCTION case_stat_no_fixed();
CREATE TRIGGER runaway_case_insert AFTER INSERT ON case_event REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION runaway_case_trigger();
CREATE TRIGGER runaway_case_update AFTER UPDATE ON case_event REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION runaway_case_trigger();
"""

_TRIGGERS = (
    ("handoff_rollup_insert", "handoff"),
    ("handoff_rollup_update", "handoff"),
    ("handoff_rollup_delete", "handoff"),
    ("handoff_rollup_truncate", "handoff"),
    ("handoff_rollup_flush", "handoff"),
    ("case_stat_no_fixed", "case_record"),
    ("runaway_case_insert", "case_event"),
    ("runaway_case_update", "case_event"),
)
_FUNCTION_NAMES = (
    "handoff_rollup_of, handoff_rollup_lock, handoff_rollup_refresh, handoff_rollup_rebuild,"
    " handoff_rollup_archive, handoff_rollup_trigger, handoff_rollup_flush, handoff_rollup_flush_trigger,"
    " case_stat_no_fixed, runaway_case_trigger"
)


def _counts(*names: str) -> list[sa.Column]:
    columns = []
    for name in names:
        columns += [
            sa.Column(name, sa.Integer(), nullable=False),
            sa.Column(f"{name}_key", sa.BigInteger(), nullable=False),
        ]
    return columns


def upgrade() -> None:
    kept = op.get_bind().execute(sa.text("SELECT count(*) FROM handoff_archive")).scalar_one()
    if kept:
        raise RuntimeError(
            f"handoff_archive holds {kept} rows: this migration replaces it with handoff_rollup's archived rows, "
            "which cannot be made from its counts. Export them, empty the table, and upgrade again."
        )
    op.add_column("case_record", sa.Column("stat_no", sa.Integer(), sa.Identity(always=True), nullable=False))
    op.create_unique_constraint(op.f("uq_case_record__stat_no"), "case_record", ["stat_no"])
    op.create_table(
        "handoff_rollup",
        sa.Column("collectivite_code", sa.String(length=4), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("archived", sa.Boolean(), nullable=False),
        *_counts("handoffs"),
        sa.Column("case_nos", postgresql.ARRAY(sa.Integer()), nullable=False),
        sa.Column("case_keys", postgresql.ARRAY(sa.Integer()), nullable=False),
        *_counts("accepted", "declined", "failed", *(f"declined_{r}" for r in _REASONS), "overdue_late"),
        sa.Column("pending_due", postgresql.ARRAY(sa.DateTime(timezone=True)), nullable=False),
        sa.Column("pending_keys", postgresql.ARRAY(sa.Integer()), nullable=False),
        sa.Column("ack_hours", postgresql.ARRAY(sa.Float()), nullable=False),
        sa.Column("accept_hours", postgresql.ARRAY(sa.Float()), nullable=False),
        sa.ForeignKeyConstraint(
            ["collectivite_code"],
            ["collectivite.code"],
            name=op.f("fk_handoff_rollup__collectivite_code__collectivite"),
        ),
        sa.PrimaryKeyConstraint("collectivite_code", "month", "kind", "archived", name=op.f("pk_handoff_rollup")),
    )
    op.create_index("ix_handoff_rollup__month", "handoff_rollup", ["month"], unique=False)
    op.create_table(
        "runaway_case",
        sa.Column("stat_no", sa.Integer(), nullable=False),
        sa.Column("collectivite_code", sa.String(length=4), nullable=False),
        sa.PrimaryKeyConstraint("stat_no", "collectivite_code", name=op.f("pk_runaway_case")),
    )
    op.create_index(op.f("ix_runaway_case__collectivite_code"), "runaway_case", ["collectivite_code"], unique=False)
    op.execute("CREATE SEQUENCE archived_case_no AS integer")
    op.drop_table("handoff_archive")
    op.execute(_FUNCTIONS)
    op.execute(f"GRANT SELECT ON handoff_rollup, runaway_case TO {APP_ROLE}")
    op.execute(f"REVOKE EXECUTE ON FUNCTION {_FUNCTION_NAMES} FROM PUBLIC")
    # A statistics read first refreshes what its own transaction touched (it recomputes from the handoffs).
    op.execute(f"GRANT EXECUTE ON FUNCTION handoff_rollup_flush() TO {APP_ROLE}")
    op.execute(
        """INSERT INTO runaway_case (stat_no, collectivite_code)
           SELECT DISTINCT c.stat_no, e.collectivite_code FROM case_event e JOIN case_record c ON c.id = e.case_id
            WHERE e.kind = 'runaway_started'"""
    )
    op.execute("SELECT handoff_rollup_rebuild()")


def downgrade() -> None:
    archived = op.get_bind().execute(sa.text("SELECT count(*) FROM handoff_rollup WHERE archived")).scalar_one()
    if archived:
        raise RuntimeError(
            f"handoff_rollup holds {archived} archived rows (what retention kept of deleted cases), which the "
            "previous schema cannot hold: export them first, and delete them to downgrade."
        )
    for trigger, table in _TRIGGERS:
        op.execute(f"DROP TRIGGER {trigger} ON {table}")
    op.execute(f"DROP FUNCTION {_FUNCTION_NAMES}")
    op.create_table(
        "handoff_archive",
        sa.Column("collectivite_code", sa.String(length=4), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("handoffs", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("collectivite_code", "month", "kind", "status", name=op.f("pk_handoff_archive")),
    )
    op.drop_index(op.f("ix_runaway_case__collectivite_code"), table_name="runaway_case")
    op.drop_table("runaway_case")
    op.execute("DROP SEQUENCE archived_case_no")
    op.drop_index("ix_handoff_rollup__month", table_name="handoff_rollup")
    op.drop_table("handoff_rollup")
    op.drop_constraint(op.f("uq_case_record__stat_no"), "case_record", type_="unique")
    op.drop_column("case_record", "stat_no")
