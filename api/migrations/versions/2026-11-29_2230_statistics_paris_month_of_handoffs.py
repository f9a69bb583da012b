"""Statistics: store each handoff's Paris month of creation and index the statistics atoms.

The month is a stored generated column (timezone() and date_trunc() on a timestamp are immutable), so
a national query reads it instead of converting 500,000 timestamps, and months are Paris months in
every statistic and in the retention archive alike. The (collectivité, month, kind) index includes
case_id and status: atoms and their distinct cases come from an index-only scan, in order.

Revision ID: 5c1f3e0a9b27
Revises: 2b95dbdd1acf
Create Date: 2026-11-29 22:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5c1f3e0a9b27"
down_revision: str | None = "2b95dbdd1acf"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CREATED_MONTH = "date_trunc('month', timezone('Europe/Paris', created_at))::date"


def upgrade() -> None:
    op.add_column(
        "handoff",
        sa.Column("created_month", sa.Date(), sa.Computed(CREATED_MONTH, persisted=True), nullable=False),
    )
    op.drop_index("ix_handoff__collectivite_code_created_at", table_name="handoff")
    op.create_index(
        "ix_handoff__stats",
        "handoff",
        ["collectivite_code", "created_month", "kind"],
        postgresql_include=["case_id", "status"],
    )


def downgrade() -> None:
    op.drop_index("ix_handoff__stats", table_name="handoff")
    op.create_index("ix_handoff__collectivite_code_created_at", "handoff", ["collectivite_code", "created_at"])
    op.drop_column("handoff", "created_month")
