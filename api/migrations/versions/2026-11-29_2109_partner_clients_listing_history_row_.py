"""Partner API clients, listing history and row versions (ETags).

listing_revision is append-only: a trigger refuses UPDATE and DELETE whoever asks.

Revision ID: aa78a5440451
Revises: 6d08922b5d46
Create Date: 2026-11-29 21:09:49.082348
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = 'aa78a5440451'
down_revision: str | None = '6d08922b5d46'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


_APPEND_ONLY = """
CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER listing_revision_append_only BEFORE UPDATE OR DELETE ON listing_revision
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
"""


def upgrade() -> None:
    op.create_table('listing_revision',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('entity', sa.Enum('organisation', 'service', 'location', 'service_area', name='entity', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('entity_id', sa.Uuid(), nullable=False),
    sa.Column('service_id', sa.Uuid(), nullable=True),
    sa.Column('organisation_id', sa.Uuid(), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('changes', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('actor_subject', sa.String(length=200), nullable=False),
    sa.Column('actor_role', sa.Enum('specialist', 'partner', 'department', 'admin', name='role', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('actor_client_id', sa.Uuid(), nullable=True),
    sa.Column('actor_organisation_id', sa.Uuid(), nullable=True),
    sa.Column('request_id', sa.String(length=64), nullable=True),
    sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_listing_revision'))
    )
    op.create_index(op.f('ix_listing_revision__entity_id'), 'listing_revision', ['entity_id'], unique=False)
    op.create_index(op.f('ix_listing_revision__organisation_id'), 'listing_revision', ['organisation_id'], unique=False)
    op.create_index('ix_listing_revision__service_id_at', 'listing_revision', ['service_id', 'at'], unique=False)
    op.create_table('api_client',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('role', sa.Enum('specialist', 'partner', 'department', 'admin', name='role', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('organisation_id', sa.Uuid(), nullable=True),
    sa.Column('collectivite_code', sa.String(length=4), nullable=True),
    sa.Column('secret_hash', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('rotated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("role <> 'department' OR collectivite_code IS NOT NULL", name=op.f('ck_api_client__department_has_collectivite')),
    sa.CheckConstraint("role <> 'partner' OR organisation_id IS NOT NULL", name=op.f('ck_api_client__partner_has_organisation')),
    sa.ForeignKeyConstraint(['collectivite_code'], ['collectivite.code'], name=op.f('fk_api_client__collectivite_code__collectivite')),
    sa.ForeignKeyConstraint(['organisation_id'], ['organisation.id'], name=op.f('fk_api_client__organisation_id__organisation')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_client'))
    )
    op.create_index(op.f('ix_api_client__organisation_id'), 'api_client', ['organisation_id'], unique=False)
    op.add_column('location', sa.Column('version', sa.Integer(), server_default='1', nullable=False))
    op.add_column('organisation', sa.Column('version', sa.Integer(), server_default='1', nullable=False))
    op.add_column('service', sa.Column('version', sa.Integer(), server_default='1', nullable=False))
    op.add_column('service_area', sa.Column('version', sa.Integer(), server_default='1', nullable=False))
    op.execute(_APPEND_ONLY)


def downgrade() -> None:
    op.drop_column('service_area', 'version')
    op.drop_column('service', 'version')
    op.drop_column('organisation', 'version')
    op.drop_column('location', 'version')
    op.drop_index(op.f('ix_api_client__organisation_id'), table_name='api_client')
    op.drop_table('api_client')
    op.drop_index('ix_listing_revision__service_id_at', table_name='listing_revision')
    op.drop_index(op.f('ix_listing_revision__organisation_id'), table_name='listing_revision')
    op.drop_index(op.f('ix_listing_revision__entity_id'), table_name='listing_revision')
    op.drop_table('listing_revision')
    op.execute("DROP FUNCTION refuse_change")
