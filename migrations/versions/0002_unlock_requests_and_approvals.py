"""Force-unlock requests (with the raw Info and ETag seen) and their approvals, one per approver.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = (
    "pending",
    "approved",
    "executing",
    "executed",
    "rejected",
    "cancelled",
    "expired",
    "superseded",
    "already_released",
    "failed",
)


def upgrade() -> None:
    op.create_table(
        "unlock_requests",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("state_address", sa.String(length=2048), nullable=False),
        sa.Column("lock_id", sa.String(length=128), nullable=True),
        sa.Column("raw_info", sa.Text(), nullable=False),
        sa.Column("in_table", sa.Boolean(), nullable=False),
        sa.Column("in_lockfile", sa.Boolean(), nullable=False),
        sa.Column("lockfile_etag", sa.String(length=256), nullable=True),
        sa.Column("requester", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=True),
        sa.Column("message_ts", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("approvals_required", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=64), nullable=True),
        sa.Column("executing_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN (" + ", ".join(f"'{status}'" for status in STATUSES) + ")",
            name=op.f("ck_unlock_requests_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_unlock_requests")),
    )
    op.create_index(op.f("ix_unlock_requests_status_expires_at"), "unlock_requests", ["status", "expires_at"])
    op.create_index(op.f("ix_unlock_requests_state_address_status"), "unlock_requests", ["state_address", "status"])
    op.create_table(
        "unlock_approvals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("approver", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"], ["unlock_requests.id"], name=op.f("fk_unlock_approvals_request_id_unlock_requests")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_unlock_approvals")),
        sa.UniqueConstraint("request_id", "approver", name=op.f("uq_unlock_approvals_request_id_approver")),
    )


def downgrade() -> None:
    op.drop_table("unlock_approvals")
    op.drop_table("unlock_requests")
