"""Work that runs on its own, limits shared by every process, session defaults a pooler can keep.

- The job queue of procrastinate (api/jobs.py): its schema, as shipped with the pinned version
  (3.10.0, recorded as the comment of `procrastinate_jobs`). Upgrading procrastinate means a new
  migration applying its `sql/migrations/` files above the recorded version, then updating the comment.
  The API reads the queue (the admins' health report) and queues one thing only, a webhook delivery,
  through `queue_webhook_delivery`, in the transaction that queued the events; the worker runs as the
  schema owner.
- Rate limits (api/ratelimit.py): the allowed requests of the last minute, per scope and subject.
  Unlogged (a crash forgets them, a replica never sees them: they are worth a minute); the API reaches
  them only through `rate_limit_hit`, which runs as the owner.
- The request id of each outbox event, so that delivery logs name the request that caused it.
- Session defaults of the application role (statement timeout, no JIT, UTC): the API also sends them
  at connection start, but PgBouncer (1.18) refuses that `options` startup parameter, so behind it the
  role's own defaults are what applies.

Revision ID: d4e6b0c1a2f9
Revises: c3f9a1d27e84
Create Date: 2026-12-03 16:00:00
"""

from collections.abc import Sequence
from importlib import resources

import sqlalchemy as sa
from alembic import op

revision: str = "d4e6b0c1a2f9"
down_revision: str | None = "c3f9a1d27e84"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APP_ROLE = "maillage_app"
PROCRASTINATE_VERSION = "3.10.0"
# What the admins' health report and the metrics read. Nothing sensitive: task names, times, and the
# request ids of delivery nudges.
READABLE = ("procrastinate_jobs", "procrastinate_events", "procrastinate_workers")


def _procrastinate_schema() -> str:
    import procrastinate

    if procrastinate.__version__ != PROCRASTINATE_VERSION:
        # The schema below is the one of the installed package: a newer one would be recorded under
        # the wrong version, and the migration that upgrades it would apply its changes twice.
        raise RuntimeError(
            f"this migration installs procrastinate {PROCRASTINATE_VERSION}'s schema, "
            f"but {procrastinate.__version__} is installed"
        )
    return (resources.files("procrastinate.sql") / "schema.sql").read_text()


def upgrade() -> None:
    # On the driver's connection, without parameters: the SQL holds `%` signs that a parameterised
    # execution would read as placeholders.
    op.get_bind().connection.dbapi_connection.execute(_procrastinate_schema())  # type: ignore[union-attr]
    op.execute(f"COMMENT ON TABLE procrastinate_jobs IS 'procrastinate {PROCRASTINATE_VERSION}'")
    op.execute(f"GRANT SELECT ON {', '.join(READABLE)} TO {APP_ROLE}")
    # Whoever queues webhook events queues their delivery, in the same transaction (sync/outbound.py):
    # the worker is woken at commit (the queue's NOTIFY trigger), never before the events are visible.
    # The one job the API may queue, and nothing else: no lock, queue, time or task of its choosing.
    # One waiting run is enough (it delivers everything due); the check reads committed rows and the
    # transaction's own, so two writers at once may queue two, never wait for each other.
    op.execute("""
        CREATE FUNCTION queue_webhook_delivery(p_request_id text) RETURNS void
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
        BEGIN
            IF EXISTS (SELECT FROM procrastinate_jobs
                        WHERE task_name = 'webhooks.deliver' AND status = 'todo' AND scheduled_at IS NULL) THEN
                RETURN;
            END IF;
            PERFORM procrastinate_defer_jobs_v1(ARRAY[ROW(
                'default', 'webhooks.deliver', 0, 'webhooks.deliver', NULL,
                jsonb_build_object('request_id', left(p_request_id, 64)), NULL
            )::procrastinate_job_to_defer_v1]);
        END $$""")
    op.execute("REVOKE ALL ON FUNCTION queue_webhook_delivery(text) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION queue_webhook_delivery(text) TO {APP_ROLE}")

    op.execute("""
        CREATE UNLOGGED TABLE rate_limit_event (
            scope text NOT NULL,
            subject text NOT NULL,
            at timestamptz NOT NULL
        )""")
    op.execute("CREATE INDEX ix_rate_limit_event__subject_at ON rate_limit_event (scope, subject, at)")
    op.execute("CREATE INDEX ix_rate_limit_event__at ON rate_limit_event (at)")
    # A moving window, exact: a request is allowed while fewer than `p_limit` allowed requests of this
    # scope and subject fall within the last `p_width`. A refused one is not counted (a client that keeps
    # knocking is told the same wait, not a longer one). Returns 0 when allowed, else the seconds until
    # the oldest counted request leaves the window. Hits of one subject are taken one at a time (a
    # transaction-level advisory lock), from any number of processes.
    op.execute("""
        CREATE FUNCTION rate_limit_hit(p_scope text, p_subject text, p_limit integer, p_width interval)
        RETURNS double precision
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
        DECLARE
            now_ timestamptz;
            counted integer;
            oldest timestamptz;
        BEGIN
            PERFORM pg_advisory_xact_lock(hashtextextended('rate_limit ' || p_scope || ' ' || p_subject, 0));
            now_ := clock_timestamp();  -- after the wait for the lock: the window is as of the count
            SELECT count(*), min(at) INTO counted, oldest FROM (
                SELECT at FROM rate_limit_event
                 WHERE scope = p_scope AND subject = p_subject AND at > now_ - p_width
                 ORDER BY at DESC LIMIT p_limit) recent;
            IF counted < p_limit THEN
                INSERT INTO rate_limit_event (scope, subject, at) VALUES (p_scope, p_subject, now_);
                RETURN 0;
            END IF;
            RETURN greatest(extract(epoch FROM oldest + p_width - now_), 0.001);
        END $$""")
    op.execute("REVOKE ALL ON FUNCTION rate_limit_hit(text, text, integer, interval) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION rate_limit_hit(text, text, integer, interval) TO {APP_ROLE}")

    # The request that caused an event: the worker's delivery logs name it.
    op.add_column("outbox_event", sa.Column("request_id", sa.String(length=64), nullable=True))

    # Needs CREATEROLE (or to be the role's admin): the owner that created the role has it.
    op.execute(f"ALTER ROLE {APP_ROLE} SET statement_timeout = '5s'")
    op.execute(f"ALTER ROLE {APP_ROLE} SET jit = off")
    op.execute(f"ALTER ROLE {APP_ROLE} SET timezone = 'UTC'")


def downgrade() -> None:
    op.drop_column("outbox_event", "request_id")
    op.execute(f"ALTER ROLE {APP_ROLE} RESET statement_timeout")
    op.execute(f"ALTER ROLE {APP_ROLE} RESET jit")
    op.execute(f"ALTER ROLE {APP_ROLE} RESET timezone")
    op.execute("DROP FUNCTION queue_webhook_delivery(text)")
    op.execute("DROP FUNCTION rate_limit_hit(text, text, integer, interval)")
    op.execute("DROP TABLE rate_limit_event")
    op.execute("""
        DROP TABLE IF EXISTS procrastinate_events, procrastinate_periodic_defers, procrastinate_jobs,
            procrastinate_workers CASCADE;
        DROP TYPE IF EXISTS procrastinate_job_event_type, procrastinate_job_status,
            procrastinate_job_to_defer_v1 CASCADE;
    """)
    op.execute("""DO $$ DECLARE f record; BEGIN
        FOR f IN SELECT p.oid::regprocedure AS sig FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                 WHERE n.nspname = 'public' AND p.proname LIKE 'procrastinate\\_%' LOOP
            EXECUTE 'DROP FUNCTION ' || f.sig || ' CASCADE';
        END LOOP;
    END $$""")
