"""The audit hash chain: existing events get their hashes (in id order), prev_hash and hash become NOT NULL,
and the database refuses UPDATE, DELETE (and on PostgreSQL TRUNCATE) of audit_events.

The hashes are computed with bot/audit/chain.py, whose encoding is a fixed, documented format
(docs/audit.md). On SQLite a later `batch_alter_table("audit_events")` copies the table and loses these
triggers: such a migration must create them again (tests/audit/test_migration.py checks they exist at head).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bot.audit.chain import GENESIS, event_hash
from bot.db import UtcDateTime

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 5000

# The table as this revision knows it, whatever later revisions add to the model.
events = sa.table(
    "audit_events",
    sa.column("id", sa.BigInteger()),
    sa.column("at", UtcDateTime()),
    sa.column("action", sa.String()),
    sa.column("actor", sa.String()),
    sa.column("state_address", sa.String()),
    sa.column("lock_id", sa.String()),
    sa.column("request_id", sa.String()),
    sa.column("channel", sa.String()),
    sa.column("detail", sa.JSON()),
    sa.column("prev_hash", sa.String()),
    sa.column("hash", sa.String()),
)

SQLITE_TRIGGERS = {
    "audit_events_no_update": (
        "BEFORE UPDATE ON audit_events BEGIN SELECT RAISE(ABORT, 'audit_events is append-only: UPDATE refused'); END"
    ),
    "audit_events_no_delete": (
        "BEFORE DELETE ON audit_events BEGIN SELECT RAISE(ABORT, 'audit_events is append-only: DELETE refused'); END"
    ),
    # INSERT OR REPLACE deletes the row it replaces without firing DELETE triggers.
    "audit_events_no_replace": (
        "BEFORE INSERT ON audit_events WHEN EXISTS (SELECT 1 FROM audit_events WHERE id = NEW.id) "
        "BEGIN SELECT RAISE(ABORT, 'audit_events is append-only: REPLACE of an existing row refused'); END"
    ),
}
POSTGRESQL_FUNCTION = """
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$
"""
POSTGRESQL_TRIGGERS = {
    "audit_events_append_only": "BEFORE UPDATE OR DELETE ON audit_events FOR EACH ROW",
    "audit_events_no_truncate": "BEFORE TRUNCATE ON audit_events FOR EACH STATEMENT",
}


def upgrade() -> None:
    bind = op.get_bind()
    postgresql = bind.dialect.name == "postgresql"
    if postgresql:
        # Until this commits, a bot still running the previous release cannot add an unhashed row.
        op.execute("LOCK TABLE audit_events IN EXCLUSIVE MODE")
    _backfill(bind)
    with op.batch_alter_table("audit_events") as batch:
        batch.alter_column("prev_hash", existing_type=sa.String(length=64), nullable=False)
        batch.alter_column("hash", existing_type=sa.String(length=64), nullable=False)
    if postgresql:
        op.execute(POSTGRESQL_FUNCTION)
        for name, when in POSTGRESQL_TRIGGERS.items():
            op.execute(f"CREATE TRIGGER {name} {when} EXECUTE FUNCTION audit_events_append_only()")
    else:
        for name, body in SQLITE_TRIGGERS.items():
            op.execute(f"CREATE TRIGGER {name} {body}")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name in POSTGRESQL_TRIGGERS:
            op.execute(f"DROP TRIGGER {name} ON audit_events")
        op.execute("DROP FUNCTION audit_events_append_only()")
    else:
        for name in SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER {name}")
    with op.batch_alter_table("audit_events") as batch:
        batch.alter_column("prev_hash", existing_type=sa.String(length=64), nullable=True)
        batch.alter_column("hash", existing_type=sa.String(length=64), nullable=True)


def _backfill(bind: sa.Connection) -> None:
    """Chain the rows written before this revision, oldest id first, a batch at a time."""
    fields = [c for c in events.c if c.name not in {"prev_hash", "hash"}]
    set_hashes = (
        events.update()
        .where(events.c.id == sa.bindparam("row_id"))
        .values(prev_hash=sa.bindparam("new_prev_hash"), hash=sa.bindparam("new_hash"))
    )
    last_id, prev_hash = 0, GENESIS
    while True:
        rows = bind.execute(sa.select(*fields).where(events.c.id > last_id).order_by(events.c.id).limit(BATCH)).all()
        if not rows:
            return
        updates = []
        for row in rows:
            new_hash = event_hash(**row._asdict(), prev_hash=prev_hash)
            updates.append({"row_id": row.id, "new_prev_hash": prev_hash, "new_hash": new_hash})
            prev_hash = new_hash
        bind.execute(set_hashes, updates)
        last_id = rows[-1].id
