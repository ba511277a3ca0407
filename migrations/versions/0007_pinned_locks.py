"""Pinned locks: what a Request force-unlock button stands for, kept server-side.

Buttons carried the state address and lock ID themselves: a long state key did not fit Slack's limits
(value 2,000, private_metadata 3,000 characters), and a lock with unreadable Info was pinned to nothing
(`"lock": null`). A button now carries the short ID of a row here, which pins the lock by the SHA-256 of
its raw Info bytes and, for lock files, its ETag.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bot.db import LosslessText

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "pinned_locks",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("state_address", sa.String(length=2048), nullable=False),
        sa.Column("lock_id", LosslessText(), nullable=True),
        sa.Column("raw_sha256", sa.String(length=64), nullable=False),
        sa.Column("lockfile_etag", sa.String(length=256), nullable=True),
        sa.Column("shown_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pinned_locks")),
    )


def downgrade() -> None:
    op.drop_table("pinned_locks")
