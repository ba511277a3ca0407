"""The append-only audit trail (docs/design.md §10), with room for the hash chain and the indexes managers query by.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=True),
        sa.Column("state_address", sa.String(length=2048), nullable=True),
        sa.Column("lock_id", sa.String(length=128), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("channel", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=True),
        sa.Column("hash", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index(op.f("ix_audit_events_state_address_at"), "audit_events", ["state_address", "at"])
    op.create_index(op.f("ix_audit_events_actor_at"), "audit_events", ["actor", "at"])
    op.create_index(op.f("ix_audit_events_action_at"), "audit_events", ["action", "at"])
    op.create_index(op.f("ix_audit_events_request_id_id"), "audit_events", ["request_id", "id"])


def downgrade() -> None:
    op.drop_table("audit_events")
