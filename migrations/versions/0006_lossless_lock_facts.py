"""Lock facts stored exactly: lock IDs of any length, raw Info with NUL and non-UTF-8 bytes.

A 200-character lock ID (VARCHAR(128)) or a NUL byte in Info (PostgreSQL text cannot hold one) made a
request fail as "the audit database is unavailable". Now:

- `lock_id` of unlock_requests, watch_alerts and audit_events is TEXT on PostgreSQL. SQLite never enforces
  a VARCHAR length, so its columns keep their declaration (no table copy, and audit_events keeps its
  append-only triggers).
- `raw_info` and `lock_id` of unlock_requests and watch_alerts are stored with a reversible escape
  (bot.db.escape_text: `\\\\` backslash, `\\0` NUL, `\\xHH` a non-UTF-8 byte). Rows written before hold no NUL
  or lone surrogate, so escaping them only doubles their backslashes, done here.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ESCAPED_COLUMNS = {"unlock_requests": ("raw_info", "lock_id"), "watch_alerts": ("raw_info", "lock_id")}
TEXT_LOCK_IDS = ("unlock_requests", "watch_alerts", "audit_events")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TEXT_LOCK_IDS:
            op.alter_column(table, "lock_id", type_=sa.Text(), existing_type=sa.String(length=128))
    _double_backslashes(op.get_bind(), "\\", "\\\\")


def downgrade() -> None:
    _double_backslashes(op.get_bind(), "\\\\", "\\")
    if op.get_bind().dialect.name == "postgresql":
        for table in TEXT_LOCK_IDS:  # fails if a longer lock ID has been stored since: restore a backup instead
            op.alter_column(table, "lock_id", type_=sa.String(length=128), existing_type=sa.Text())


def _double_backslashes(bind: sa.Connection, old: str, new: str) -> None:
    for name, columns in ESCAPED_COLUMNS.items():
        table = sa.table(name, *(sa.column(column, sa.Text()) for column in columns))
        bind.execute(table.update().values({column: sa.func.replace(table.c[column], old, new) for column in columns}))
