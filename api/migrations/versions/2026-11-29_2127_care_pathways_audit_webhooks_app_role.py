"""Care pathways (cases, handoffs, events), audit trail, idempotency keys, webhook outbox; and the
application's own database role.

The API connects as `maillage_app`, which may read everything but write only what it must: it can
never DELETE (archiving is an UPDATE of a flag), reference tables are read-only for it, and event,
history and audit rows are INSERT-only for it. Retention purges run as the owner. Later migrations grant each new
table explicitly.

Revision ID: ea55c5c648b7
Revises: aa78a5440451
Create Date: 2026-11-29 21:27:11.447712
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = 'ea55c5c648b7'
down_revision: str | None = 'aa78a5440451'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


APP_ROLE = "maillage_app"
READ_ONLY = ("region", "departement", "collectivite", "commune", "public_holiday", "specialism", "reference_dataset",
             "alembic_version", "spatial_ref_sys", "handoff_archive")
INSERT_UPDATE = ("organisation", "location", "service", "service_area", "api_client", "case_record", "handoff",
                 "idempotency_key", "webhook_subscription", "webhook_delivery")
INSERT_ONLY = ("listing_revision", "audit_event", "handoff_event", "case_event", "outbox_event")


def _grants() -> None:
    op.execute(f"""DO $$ BEGIN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN CREATE ROLE {APP_ROLE} NOLOGIN; END IF;
    END $$""")
    op.execute(f"GRANT USAGE ON SCHEMA public TO {APP_ROLE}")
    op.execute(f"GRANT SELECT ON {', '.join(READ_ONLY + INSERT_UPDATE + INSERT_ONLY)} TO {APP_ROLE}")
    op.execute(f"GRANT INSERT, UPDATE ON {', '.join(INSERT_UPDATE)} TO {APP_ROLE}")
    op.execute(f"GRANT INSERT ON {', '.join(INSERT_ONLY)} TO {APP_ROLE}")
    op.execute(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {APP_ROLE}")


def upgrade() -> None:
    op.create_table('handoff_archive',
    sa.Column('collectivite_code', sa.String(length=4), nullable=False),
    sa.Column('month', sa.Date(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('handoffs', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('collectivite_code', 'month', 'kind', 'status', name=op.f('pk_handoff_archive'))
    )
    op.create_table('audit_event',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('actor_subject', sa.String(length=200), nullable=False),
    sa.Column('actor_role', sa.String(length=32), nullable=True),
    sa.Column('actor_organisation_id', sa.Uuid(), nullable=True),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('object_type', sa.String(length=32), nullable=False),
    sa.Column('object_id', sa.Uuid(), nullable=True),
    sa.Column('case_id', sa.Uuid(), nullable=True),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('status_code', sa.SmallInteger(), nullable=False),
    sa.Column('request_id', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_event'))
    )
    op.create_index('ix_audit_event__at', 'audit_event', ['at'], unique=False)
    op.create_index('ix_audit_event__case_id', 'audit_event', ['case_id'], unique=False)
    op.create_table('idempotency_key',
    sa.Column('subject', sa.String(length=200), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('status_code', sa.SmallInteger(), nullable=True),
    sa.Column('response', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('subject', 'key', name=op.f('pk_idempotency_key'))
    )
    op.create_table('outbox_event',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('event_id', sa.Uuid(), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('payload', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox_event')),
    sa.UniqueConstraint('event_id', name=op.f('uq_outbox_event__event_id'))
    )
    op.create_table('case_record',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('reference', sa.String(length=16), nullable=False),
    sa.Column('collectivite_code', sa.String(length=4), nullable=False, comment='residence of the child: the competent collectivité'),
    sa.Column('found_in_commune_code', sa.String(length=5), nullable=True),
    sa.Column('age', sa.SmallInteger(), nullable=False),
    sa.Column('gender', sa.Enum('female', 'male', 'other', name='casegender', native_enum=False, create_constraint=True, length=32), nullable=True),
    sa.Column('intake_channel', sa.Enum('phone', 'web_form', 'chat', 'partner', name='intakechannel', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('caller', sa.Enum('minor', 'parent', 'relative', 'professional', 'other', name='caller', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('known_to_child_welfare', sa.Enum('yes', 'no', 'unknown', name='tristate', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('needs', postgresql.ARRAY(sa.String(length=64)), server_default='{}', nullable=False),
    sa.Column('do_not_contact_minor_directly', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('do_not_contact_parents', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('safe_contact', sa.String(length=200), nullable=True),
    sa.Column('status', sa.Enum('open', 'closed', name='casestatus', native_enum=False, create_constraint=True, length=32), server_default='open', nullable=False),
    sa.Column('opened_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('version', sa.Integer(), server_default='1', nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('age BETWEEN 0 AND 25', name=op.f('ck_case_record__age_range')),
    sa.ForeignKeyConstraint(['collectivite_code'], ['collectivite.code'], name=op.f('fk_case_record__collectivite_code__collectivite')),
    sa.ForeignKeyConstraint(['found_in_commune_code'], ['commune.code'], name=op.f('fk_case_record__found_in_commune_code__commune')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_case_record')),
    sa.UniqueConstraint('collectivite_code', 'id', name='uq_case_record__collectivite_code_id'),
    sa.UniqueConstraint('reference', name=op.f('uq_case_record__reference'))
    )
    op.create_index(op.f('ix_case_record__collectivite_code'), 'case_record', ['collectivite_code'], unique=False)
    op.create_table('case_event',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('case_id', sa.Uuid(), nullable=False),
    sa.Column('collectivite_code', sa.String(length=4), nullable=False),
    sa.Column('kind', sa.Enum('runaway_started', 'runaway_ended', 'relapse', 'placement', 'complaint_filed', 'hospitalisation', 'contact_lost', 'contact_restored', 'note', name='pathwayeventkind', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('note', sa.String(length=280), nullable=True),
    sa.Column('actor_subject', sa.String(length=200), nullable=False),
    sa.Column('actor_role', sa.Enum('specialist', 'partner', 'department', 'admin', name='role', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('actor_organisation_id', sa.Uuid(), nullable=True),
    sa.ForeignKeyConstraint(['collectivite_code', 'case_id'], ['case_record.collectivite_code', 'case_record.id'], name='fk_case_event__case', onupdate='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_case_event'))
    )
    op.create_index(op.f('ix_case_event__case_id'), 'case_event', ['case_id'], unique=False)
    op.create_table('webhook_subscription',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('organisation_id', sa.Uuid(), nullable=False),
    sa.Column('url', sa.String(length=500), nullable=False),
    sa.Column('event_types', postgresql.ARRAY(sa.String(length=64)), server_default='{}', nullable=False),
    sa.Column('secret_encrypted', sa.String(length=500), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('disabled_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['organisation_id'], ['organisation.id'], name=op.f('fk_webhook_subscription__organisation_id__organisation')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_subscription'))
    )
    op.create_index(op.f('ix_webhook_subscription__organisation_id'), 'webhook_subscription', ['organisation_id'], unique=False)
    op.create_table('webhook_delivery',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('outbox_event_id', sa.BigInteger(), nullable=False),
    sa.Column('subscription_id', sa.Uuid(), nullable=False),
    sa.Column('status', sa.Enum('pending', 'delivered', 'dead', name='deliverystatus', native_enum=False, create_constraint=True, length=32), server_default='pending', nullable=False),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('last_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_status_code', sa.SmallInteger(), nullable=True),
    sa.Column('last_error', sa.String(length=200), nullable=True),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['outbox_event_id'], ['outbox_event.id'], name=op.f('fk_webhook_delivery__outbox_event_id__outbox_event')),
    sa.ForeignKeyConstraint(['subscription_id'], ['webhook_subscription.id'], name=op.f('fk_webhook_delivery__subscription_id__webhook_subscription')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_delivery')),
    sa.UniqueConstraint('outbox_event_id', 'subscription_id', name='uq_webhook_delivery__event_subscription')
    )
    op.create_index('ix_webhook_delivery__due', 'webhook_delivery', ['next_attempt_at'], unique=False, postgresql_where=sa.text("status = 'pending'"))
    op.create_index(op.f('ix_webhook_delivery__outbox_event_id'), 'webhook_delivery', ['outbox_event_id'], unique=False)
    op.create_index(op.f('ix_webhook_delivery__subscription_id'), 'webhook_delivery', ['subscription_id'], unique=False)
    op.create_table('handoff',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('case_id', sa.Uuid(), nullable=False),
    sa.Column('collectivite_code', sa.String(length=4), nullable=False),
    sa.Column('sender_organisation_id', sa.Uuid(), nullable=False),
    sa.Column('receiver_organisation_id', sa.Uuid(), nullable=False),
    sa.Column('receiver_service_id', sa.Uuid(), nullable=True),
    sa.Column('kind', sa.Enum('information_preoccupante', 'orientation', 'professional_contact', 'signalement', 'shelter_request', name='handoffkind', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('beneficiary', sa.Enum('minor', 'entourage', 'professional', name='beneficiary', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('urgency', sa.Enum('immediate', 'within_24h', 'routine', name='urgency', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('legal_basis', sa.Enum('child_protection_duty', 'consent', name='legalbasis', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('reason', sa.String(length=500), nullable=True),
    sa.Column('status', sa.Enum('sent', 'acknowledged', 'accepted', 'declined', 'in_progress', 'on_hold', 'completed', 'failed', 'cancelled', 'expired', 'entered_in_error', name='handoffstatus', native_enum=False, create_constraint=True, length=32), server_default='sent', nullable=False),
    sa.Column('acknowledge_by', sa.DateTime(timezone=True), nullable=False),
    sa.Column('overdue_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('acknowledged_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('accepted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('decline_reason', sa.String(length=32), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('version', sa.Integer(), server_default='1', nullable=False),
    sa.ForeignKeyConstraint(['collectivite_code', 'case_id'], ['case_record.collectivite_code', 'case_record.id'], name='fk_handoff__case', onupdate='CASCADE'),
    sa.ForeignKeyConstraint(['collectivite_code'], ['collectivite.code'], name=op.f('fk_handoff__collectivite_code__collectivite')),
    sa.ForeignKeyConstraint(['receiver_organisation_id'], ['organisation.id'], name=op.f('fk_handoff__receiver_organisation_id__organisation')),
    sa.ForeignKeyConstraint(['receiver_service_id'], ['service.id'], name=op.f('fk_handoff__receiver_service_id__service')),
    sa.ForeignKeyConstraint(['sender_organisation_id'], ['organisation.id'], name=op.f('fk_handoff__sender_organisation_id__organisation')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_handoff')),
    sa.UniqueConstraint('collectivite_code', 'id', name='uq_handoff__collectivite_code_id')
    )
    op.create_index(op.f('ix_handoff__case_id'), 'handoff', ['case_id'], unique=False)
    op.create_index('ix_handoff__open_deadline', 'handoff', ['acknowledge_by'], unique=False, postgresql_where=sa.text("status = 'sent'"))
    op.create_index('ix_handoff__receiver_status', 'handoff', ['receiver_organisation_id', 'status'], unique=False)
    op.create_index('ix_handoff__sender_status', 'handoff', ['sender_organisation_id', 'status'], unique=False)
    op.create_table('handoff_event',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('handoff_id', sa.Uuid(), nullable=False),
    sa.Column('case_id', sa.Uuid(), nullable=False),
    sa.Column('collectivite_code', sa.String(length=4), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('from_status', sa.Enum('sent', 'acknowledged', 'accepted', 'declined', 'in_progress', 'on_hold', 'completed', 'failed', 'cancelled', 'expired', 'entered_in_error', name='from_status', native_enum=False, create_constraint=True, length=32), nullable=True),
    sa.Column('to_status', sa.Enum('sent', 'acknowledged', 'accepted', 'declined', 'in_progress', 'on_hold', 'completed', 'failed', 'cancelled', 'expired', 'entered_in_error', name='to_status', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('reason_code', sa.String(length=32), nullable=True),
    sa.Column('reason', sa.String(length=500), nullable=True),
    sa.Column('actor_subject', sa.String(length=200), nullable=False),
    sa.Column('actor_role', sa.Enum('specialist', 'partner', 'department', 'admin', name='role', native_enum=False, create_constraint=True, length=32), nullable=True),
    sa.Column('actor_organisation_id', sa.Uuid(), nullable=True),
    sa.ForeignKeyConstraint(['collectivite_code', 'handoff_id'], ['handoff.collectivite_code', 'handoff.id'], name='fk_handoff_event__handoff', onupdate='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_handoff_event'))
    )
    op.create_index(op.f('ix_handoff_event__case_id'), 'handoff_event', ['case_id'], unique=False)
    op.create_index(op.f('ix_handoff_event__handoff_id'), 'handoff_event', ['handoff_id'], unique=False)
    _grants()


def downgrade() -> None:
    op.execute(f"""DO $$ BEGIN
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
            REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {APP_ROLE};
            REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {APP_ROLE};
            REVOKE USAGE ON SCHEMA public FROM {APP_ROLE};
        END IF;
    END $$""")
    op.drop_index(op.f('ix_handoff_event__handoff_id'), table_name='handoff_event')
    op.drop_index(op.f('ix_handoff_event__case_id'), table_name='handoff_event')
    op.drop_table('handoff_event')
    op.drop_index('ix_handoff__sender_status', table_name='handoff')
    op.drop_index('ix_handoff__receiver_status', table_name='handoff')
    op.drop_index('ix_handoff__open_deadline', table_name='handoff', postgresql_where=sa.text("status = 'sent'"))
    op.drop_index(op.f('ix_handoff__case_id'), table_name='handoff')
    op.drop_table('handoff')
    op.drop_index(op.f('ix_webhook_delivery__subscription_id'), table_name='webhook_delivery')
    op.drop_index(op.f('ix_webhook_delivery__outbox_event_id'), table_name='webhook_delivery')
    op.drop_index('ix_webhook_delivery__due', table_name='webhook_delivery', postgresql_where=sa.text("status = 'pending'"))
    op.drop_table('webhook_delivery')
    op.drop_index(op.f('ix_webhook_subscription__organisation_id'), table_name='webhook_subscription')
    op.drop_table('webhook_subscription')
    op.drop_index(op.f('ix_case_event__case_id'), table_name='case_event')
    op.drop_table('case_event')
    op.drop_index(op.f('ix_case_record__collectivite_code'), table_name='case_record')
    op.drop_table('case_record')
    op.drop_table('outbox_event')
    op.drop_table('idempotency_key')
    op.drop_index('ix_audit_event__case_id', table_name='audit_event')
    op.drop_index('ix_audit_event__at', table_name='audit_event')
    op.drop_table('audit_event')
    op.drop_table('handoff_archive')
