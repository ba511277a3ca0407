"""Holds: states held on purpose with tflock (`/tflock hold`, `tflock-bot hold`), issue 14.

One row per hold: the exact lock bytes written (release deletes only those), who holds it, why, where,
and how it ended. At most one active hold per state (a partial unique index, as for pending requests).

Revision ID: 0010
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bot.db import LosslessText

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = ("taking", "held", "releasing", "released", "refused", "failed")
ACTIVE = sa.text("status IN ('taking', 'held', 'releasing')")


def upgrade() -> None:
    op.create_table(
        "holds",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("state_address", sa.String(length=2048), nullable=False),
        sa.Column("lock_id", sa.String(length=36), nullable=False),
        sa.Column("raw_info", LosslessText(), nullable=False),
        sa.Column("in_table", sa.Boolean(), nullable=False),
        sa.Column("in_lockfile", sa.Boolean(), nullable=False),
        sa.Column("lockfile_etag", sa.String(length=256), nullable=True),
        sa.Column("holder", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("released_by", sa.String(length=64), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN (" + ", ".join(f"'{status}'" for status in STATUSES) + ")", name=op.f("ck_holds_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_holds")),
    )
    op.create_index(op.f("ix_holds_status_created_at"), "holds", ["status", "created_at"])
    op.create_index(
        "uq_holds_active_state", "holds", ["state_address"], unique=True, sqlite_where=ACTIVE, postgresql_where=ACTIVE
    )


def downgrade() -> None:
    op.drop_index("uq_holds_active_state", table_name="holds")
    op.drop_index(op.f("ix_holds_status_created_at"), table_name="holds")
    op.drop_table("holds")
