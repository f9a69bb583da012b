"""Identity bindings: claim values of outside OpenID providers, bound to a role and scope.

An administrator binds a value of one of a provider's claims (a group, a code) to a role, and for
partners and départements to the organisation or collectivité it acts for (directory/identity_bindings.py).
The API reads them on every request from such a provider and writes them for admins; nothing is ever
deleted (a binding is revoked), and one active binding per (issuer, claim, value). The journal of case
data access gains the issuer of each actor.

Revision ID: c3f9a1d27e84
Revises: b7d2e8f14c60
Create Date: 2026-12-03 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c3f9a1d27e84"
down_revision: str | None = "b7d2e8f14c60"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APP_ROLE = "maillage_app"
ROLES = ("specialist", "partner", "department", "admin")


def upgrade() -> None:
    op.create_table(
        "identity_binding",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("issuer", sa.String(length=300), nullable=False),
        sa.Column("claim", sa.String(length=100), nullable=False),
        sa.Column("value", sa.String(length=200), nullable=False),
        sa.Column(
            "role",
            sa.Enum(*ROLES, name="role", native_enum=False, create_constraint=True, length=32),
            nullable=False,
        ),
        sa.Column("organisation_id", sa.Uuid(), nullable=True),
        sa.Column("collectivite_code", sa.String(length=4), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("created_by", sa.String(length=300), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "(role = 'partner') = (organisation_id IS NOT NULL)",
            name=op.f("ck_identity_binding__partner_organisation"),
        ),
        sa.CheckConstraint(
            "(role = 'department') = (collectivite_code IS NOT NULL)",
            name=op.f("ck_identity_binding__department_collectivite"),
        ),
        sa.ForeignKeyConstraint(
            ["collectivite_code"],
            ["collectivite.code"],
            name=op.f("fk_identity_binding__collectivite_code__collectivite"),
        ),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisation.id"],
            name=op.f("fk_identity_binding__organisation_id__organisation"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_binding")),
    )
    op.create_index(
        op.f("ix_identity_binding__organisation_id"), "identity_binding", ["organisation_id"], unique=False
    )
    op.create_index(
        "uq_identity_binding__active",
        "identity_binding",
        ["issuer", "claim", "value"],
        unique=True,
        postgresql_where=sa.text("revoked_at IS NULL"),
    )
    op.execute(f"GRANT SELECT, INSERT, UPDATE (revoked_at) ON identity_binding TO {APP_ROLE}")
    # The journal names who vouches for each subject: two providers may use the same subject.
    op.add_column(
        "audit_event",
        sa.Column("actor_issuer", sa.String(length=300), server_default="", nullable=False),
    )


def downgrade() -> None:
    op.drop_column("audit_event", "actor_issuer")
    op.drop_index("uq_identity_binding__active", table_name="identity_binding", postgresql_where=sa.text("revoked_at IS NULL"))
    op.drop_index(op.f("ix_identity_binding__organisation_id"), table_name="identity_binding")
    op.drop_table("identity_binding")
