"""Statistics: empty searches counted per month, commune and specialism (never the point searched);
indexes for per-collectivité statistics and for the confidential-location rule (open handoffs to a
service). The application role may insert and update the counters.

Revision ID: 2b95dbdd1acf
Revises: ea55c5c648b7
Create Date: 2026-11-29 21:42:15.723025
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '2b95dbdd1acf'
down_revision: str | None = 'ea55c5c648b7'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('empty_search',
    sa.Column('month', sa.Date(), nullable=False),
    sa.Column('commune_code', sa.String(length=5), nullable=False),
    sa.Column('specialism', sa.String(length=64), nullable=False),
    sa.Column('collectivite_code', sa.String(length=4), nullable=False),
    sa.Column('searches', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['collectivite_code'], ['collectivite.code'], name=op.f('fk_empty_search__collectivite_code__collectivite')),
    sa.ForeignKeyConstraint(['commune_code'], ['commune.code'], name=op.f('fk_empty_search__commune_code__commune')),
    sa.PrimaryKeyConstraint('month', 'commune_code', 'specialism', name=op.f('pk_empty_search'))
    )
    op.create_index(op.f('ix_empty_search__collectivite_code'), 'empty_search', ['collectivite_code'], unique=False)
    op.create_index('ix_handoff__collectivite_code_created_at', 'handoff', ['collectivite_code', 'created_at'], unique=False)
    op.create_index('ix_handoff__receiver_service_id', 'handoff', ['receiver_service_id'], unique=False)
    op.execute("""DO $$ BEGIN
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'maillage_app') THEN
            GRANT SELECT, INSERT, UPDATE ON empty_search TO maillage_app;
        END IF;
    END $$""")


def downgrade() -> None:
    op.drop_index('ix_handoff__receiver_service_id', table_name='handoff')
    op.drop_index('ix_handoff__collectivite_code_created_at', table_name='handoff')
    op.drop_index(op.f('ix_empty_search__collectivite_code'), table_name='empty_search')
    op.drop_table('empty_search')
