"""At most one pending force-unlock request per state: a partial unique index on unlock_requests.

Before this, the check was a SELECT then an INSERT, and simultaneous requests on PostgreSQL could leave
several pending requests for one state. Any such duplicates are ended here first: the oldest stays
pending, the later ones are cancelled, each with a `cancelled` event in the audit trail saying why.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.orm import Session

from bot.audit.models import AuditAction
from bot.audit.writer import record_event

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "uq_unlock_requests_pending_state"
PENDING = sa.text("status = 'pending'")
NOTE = "cancelled by the upgrade to one pending request per state: an earlier request for this state was pending"

requests = sa.table(
    "unlock_requests",
    sa.column("id", sa.String()),
    sa.column("state_address", sa.String()),
    sa.column("lock_id", sa.String()),
    sa.column("channel", sa.String()),
    sa.column("status", sa.String()),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("decided_at", sa.DateTime(timezone=True)),
    sa.column("finished_at", sa.DateTime(timezone=True)),
    sa.column("outcome", sa.Text()),
)


def upgrade() -> None:
    _cancel_duplicates(op.get_bind())
    op.create_index(
        INDEX, "unlock_requests", ["state_address"], unique=True, sqlite_where=PENDING, postgresql_where=PENDING
    )


def downgrade() -> None:
    op.drop_index(INDEX, table_name="unlock_requests")


def _cancel_duplicates(bind: sa.Connection) -> None:
    pending = requests.c.status == "pending"
    crowded = (
        sa.select(requests.c.state_address)
        .where(pending)
        .group_by(requests.c.state_address)
        .having(sa.func.count() > 1)
    )
    rows = bind.execute(
        sa.select(requests.c.id, requests.c.state_address, requests.c.lock_id, requests.c.channel)
        .where(pending, requests.c.state_address.in_(crowded))
        .order_by(requests.c.state_address, requests.c.created_at, requests.c.id)
    ).all()
    now = datetime.now(UTC)
    kept: set[str] = set()
    session = Session(bind=bind)
    for row in rows:
        if row.state_address not in kept:
            kept.add(row.state_address)  # the oldest request for the state stays pending
            continue
        bind.execute(
            requests.update()
            .where(requests.c.id == row.id, pending)
            .values(status="cancelled", decided_at=now, finished_at=now, outcome=NOTE)
        )
        record_event(
            session,
            AuditAction.CANCELLED,
            at=now,
            actor=None,
            state_address=row.state_address,
            lock_id=row.lock_id,
            request_id=row.id,
            channel=row.channel,
            detail={"note": NOTE},
        )
    session.flush()
