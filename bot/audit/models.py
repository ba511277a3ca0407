"""The append-only audit trail (docs/design.md §10): one row per thing that happened, oldest first by `id`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from bot.db import Base

ACTOR_CHARS = 64
ADDRESS_CHARS = 2048
# The trail's lock_id column holds up to this many characters (longer ones are cut, with "…"); the request
# row keeps a lock ID of any length exactly. PostgreSQL: TEXT; SQLite: declared VARCHAR(128), never enforced.
LOCK_ID_CHARS = 4000
SQLITE_LOCK_ID_DECLARED = 128
REQUEST_ID_CHARS = 64
CHANNEL_CHARS = 64


class AuditAction(StrEnum):
    REQUESTED = "requested"
    APPROVED = "approved"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    REFUSED = "refused"
    EXECUTING = "executing"  # the release attempt, committed before anything is deleted
    EXECUTED = "executed"
    SUPERSEDED = "superseded"
    ALREADY_RELEASED = "already_released"
    FAILED = "failed"
    RECONCILED = "reconciled"
    STATUS = "status"
    LIST = "list"
    HELD = "held"  # a hold is being taken: written before the lock is (bot/unlock/holds.py)
    RELEASED = "released"  # a hold is being released: written before the lock is deleted


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (
        Index(None, "state_address", "at"),
        Index(None, "actor", "at"),
        Index(None, "action", "at"),
        Index(None, "request_id", "id"),
    )

    # BIGINT on PostgreSQL; SQLite only auto-increments a column declared exactly INTEGER.
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    at: Mapped[datetime]
    action: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str | None] = mapped_column(String(ACTOR_CHARS))  # a Slack user ID; None = the bot itself
    state_address: Mapped[str | None] = mapped_column(String(ADDRESS_CHARS))
    lock_id: Mapped[str | None] = mapped_column(Text().with_variant(String(SQLITE_LOCK_ID_DECLARED), "sqlite"))
    # Not a foreign key: refusals of unknown or tampered request IDs are recorded too.
    request_id: Mapped[str | None] = mapped_column(String(REQUEST_ID_CHARS))
    channel: Mapped[str | None] = mapped_column(String(CHANNEL_CHARS))
    detail: Mapped[dict[str, Any]]
    # The hash chain (docs/audit.md, bot/audit/chain.py): the previous event's hash and this one's, SHA-256 hex.
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    def __repr__(self) -> str:
        return f"AuditEvent(id={self.id}, action={self.action!r}, actor={self.actor!r}, request={self.request_id!r})"


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """A stored event as plain values, detached from any session: what queries, exports and verify read."""

    id: int
    at: datetime
    action: str
    actor: str | None
    state_address: str | None
    lock_id: str | None
    request_id: str | None
    channel: str | None
    detail: dict[str, Any]
    prev_hash: str
    hash: str

    @classmethod
    def of(cls, event: AuditEvent) -> AuditRecord:
        return cls(*(getattr(event, name) for name in cls.__dataclass_fields__))


# The columns of AuditRecord, in its field order, for `select(*RECORD_COLUMNS)`.
RECORD_COLUMNS = tuple(AuditEvent.__table__.c[name] for name in AuditRecord.__dataclass_fields__)
