"""Stale-lock watchdog alerts: one row per lock (unique lock_key), claimed before posting.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "watch_alerts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("lock_key", sa.String(length=64), nullable=False),
        sa.Column("state_address", sa.String(length=2048), nullable=False),
        sa.Column("backend", sa.String(length=64), nullable=False),
        sa.Column("lock_id", sa.String(length=128), nullable=True),
        sa.Column("raw_info", sa.Text(), nullable=False),
        sa.Column("lock_created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=True),
        sa.Column("message_ts", sa.String(length=64), nullable=True),
        sa.Column("posted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reminded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_watch_alerts")),
        sa.UniqueConstraint("lock_key", name=op.f("uq_watch_alerts_lock_key")),
    )
    op.create_index(op.f("ix_watch_alerts_released_at"), "watch_alerts", ["released_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_watch_alerts_released_at"), table_name="watch_alerts")
    op.drop_table("watch_alerts")
