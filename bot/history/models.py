"""Lock history: one row per lock tflock has seen (docs/design.md §13), whatever looked at it.

A lock is its state and its lock ID (or, when the Info has no readable ID, the SHA-256 of its raw Info);
`lock_key` is the SHA-256 of that pair, so the unique index stays small whatever the address's length.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from bot.db import Base, LosslessText

ADDRESS_CHARS = 2048
BACKEND_CHARS = 128
TEXT_CHARS = 512  # Who and Operation are shown, not compared: longer ones are cut, with "…"
REQUEST_ID_CHARS = 64


class Ending(StrEnum):
    """How a lock in the history stopped being held."""

    GONE = "gone"  # seen not held (or replaced by another lock) without tflock deleting it
    FORCE_UNLOCKED = "force_unlocked"  # deleted by a tflock force-unlock (request_id says which)
    RELEASED_HOLD = "released_hold"  # a tflock hold, released through tflock


class LockHistory(Base):
    __tablename__ = "lock_history"
    __table_args__ = (
        Index(None, "lock_key", unique=True),
        Index(None, "state_address", "first_seen_at"),
        Index(None, "first_seen_at"),
        Index(None, "backend", "gone_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    lock_key: Mapped[str] = mapped_column(String(64))
    state_address: Mapped[str] = mapped_column(String(ADDRESS_CHARS))
    backend: Mapped[str] = mapped_column(String(BACKEND_CHARS))
    lock_id: Mapped[str | None] = mapped_column(LosslessText())
    who: Mapped[str | None] = mapped_column(LosslessText())
    operation: Mapped[str | None] = mapped_column(LosslessText())
    created_at: Mapped[datetime | None]  # the Info's Created (or the lock file's time when unreadable)
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    gone_at: Mapped[datetime | None]  # when tflock first saw it gone (or deleted it)
    ended: Mapped[str | None] = mapped_column(String(32))  # an Ending; None while still held
    request_id: Mapped[str | None] = mapped_column(String(REQUEST_ID_CHARS))
    stale: Mapped[bool]  # ever seen held longer than TFLOCK_STALE_AFTER
