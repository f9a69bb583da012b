"""Need-to-know: who works a handoff, and idempotency keys scoped to the whole principal.

- `handoff.created_by_issuer`: with `created_by` (the subject), names the sender across identity
  providers. Rows written before this revision get '' and so match no one: a specialist sees a safe
  house exactly only through handoffs whose sender is known.
- `handoff_assignee`: the specialists the sender adds to a handoff. Removal is an update (`removed_at`),
  since the application's role never deletes. Keyed by collectivité like the handoff (DESIGN §7).
- `idempotency_key.principal`: a digest of (issuer, subject, role, organisation, collectivité) replaces
  the bare subject, so two principals sharing a subject never replay each other's responses. Stored
  keys are short-lived; the old ones are dropped.

Revision ID: 7d3a91c2e5f0
Revises: 5c1f3e0a9b27
Create Date: 2026-12-02 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7d3a91c2e5f0"
down_revision: str | None = "5c1f3e0a9b27"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APP_ROLE = "maillage_app"


def upgrade() -> None:
    op.add_column("handoff", sa.Column("created_by_issuer", sa.String(length=300), server_default="", nullable=False))
    op.create_table(
        "handoff_assignee",
        sa.Column("collectivite_code", sa.String(length=4), nullable=False),
        sa.Column("handoff_id", sa.Uuid(), nullable=False),
        sa.Column("issuer", sa.String(length=300), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("added_by_issuer", sa.String(length=300), nullable=False),
        sa.Column("added_by", sa.String(length=200), nullable=False),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["collectivite_code", "handoff_id"],
            ["handoff.collectivite_code", "handoff.id"],
            onupdate="CASCADE",
            name="fk_handoff_assignee__handoff",
        ),
        sa.PrimaryKeyConstraint("handoff_id", "issuer", "subject", name="pk_handoff_assignee"),
    )
    op.create_index(
        "ix_handoff_assignee__person",
        "handoff_assignee",
        ["issuer", "subject"],
        postgresql_where=sa.text("removed_at IS NULL"),
    )
    op.create_index(
        "ix_handoff__sender_person_open",
        "handoff",
        ["created_by_issuer", "created_by"],
        postgresql_where=sa.text("status IN ('sent', 'acknowledged', 'accepted', 'in_progress', 'on_hold')"),
    )
    op.execute(f"GRANT SELECT, INSERT, UPDATE ON handoff_assignee TO {APP_ROLE}")

    op.execute("DELETE FROM idempotency_key")
    op.drop_constraint("pk_idempotency_key", "idempotency_key", type_="primary")
    op.drop_column("idempotency_key", "subject")
    op.add_column("idempotency_key", sa.Column("principal", sa.String(length=64), nullable=False))
    op.create_primary_key("pk_idempotency_key", "idempotency_key", ["principal", "key"])


def downgrade() -> None:
    op.execute("DELETE FROM idempotency_key")
    op.drop_constraint("pk_idempotency_key", "idempotency_key", type_="primary")
    op.drop_column("idempotency_key", "principal")
    op.add_column("idempotency_key", sa.Column("subject", sa.String(length=200), nullable=False))
    op.create_primary_key("pk_idempotency_key", "idempotency_key", ["subject", "key"])
    op.drop_index("ix_handoff__sender_person_open", table_name="handoff")
    op.drop_index("ix_handoff_assignee__person", table_name="handoff_assignee")
    op.drop_table("handoff_assignee")
    op.drop_column("handoff", "created_by_issuer")
