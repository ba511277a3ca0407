"""Lock history: one row per lock tflock has seen, how long it was held and how it ended (issue 15).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bot.db import LosslessText

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "lock_history",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("lock_key", sa.String(length=64), nullable=False),
        sa.Column("state_address", sa.String(length=2048), nullable=False),
        sa.Column("backend", sa.String(length=128), nullable=False),
        sa.Column("lock_id", LosslessText(), nullable=True),
        sa.Column("who", LosslessText(), nullable=True),
        sa.Column("operation", LosslessText(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("gone_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended", sa.String(length=32), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("stale", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lock_history")),
    )
    op.create_index(op.f("ix_lock_history_lock_key"), "lock_history", ["lock_key"], unique=True)
    op.create_index(
        op.f("ix_lock_history_state_address_first_seen_at"), "lock_history", ["state_address", "first_seen_at"]
    )
    op.create_index(op.f("ix_lock_history_first_seen_at"), "lock_history", ["first_seen_at"])
    op.create_index(op.f("ix_lock_history_backend_gone_at"), "lock_history", ["backend", "gone_at"])


def downgrade() -> None:
    op.drop_table("lock_history")
