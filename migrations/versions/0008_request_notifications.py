"""Notifications about a force-unlock request: its escalation, claimed once, and the holder's answer.

`escalated_at` is set by the one replica whose guarded `UPDATE … WHERE escalated_at IS NULL` changes the
row, so two replicas send one reminder, not two. `holder` is the Slack user asked whether their run is
still alive (the lock's `Who`, matched unambiguously), `holder_answer` what they said (`running` or
`dead`) and when.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN (no table copy on SQLite): the partial one-pending index of 0005 stays as it is.
    op.add_column("unlock_requests", sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("unlock_requests", sa.Column("holder", sa.String(length=64), nullable=True))
    op.add_column("unlock_requests", sa.Column("holder_answer", sa.String(length=16), nullable=True))
    op.add_column("unlock_requests", sa.Column("holder_answered_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("unlock_requests") as batch:
        batch.drop_column("holder_answered_at")
        batch.drop_column("holder_answer")
        batch.drop_column("holder")
        batch.drop_column("escalated_at")
