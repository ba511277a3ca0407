"""Stale-lock alerts as stored: one row per lock, inserted (claimed) before anything is posted.

`lock_key` is the SHA-256 of the state address and the lock ID — a lock ID is unique only per lock,
and the same ID on another state is another lock — or, when the Info is unreadable and there is no
ID, of the address and the raw Info. Hashing keeps the unique index small whatever the address length.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bot.audit.models import ADDRESS_CHARS, CHANNEL_CHARS, SQLITE_LOCK_ID_DECLARED
from bot.db import Base, LosslessText

LOCK_KEY_CHARS = 64
BACKEND_CHARS = 64
LEASE_OWNER_CHARS = 64


class WatchAlert(Base):
    __tablename__ = "watch_alerts"
    __table_args__ = (
        UniqueConstraint("lock_key"),  # exactly one alert per lock, whatever the number of replicas
        Index(None, "released_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    lock_key: Mapped[str] = mapped_column(String(LOCK_KEY_CHARS))
    state_address: Mapped[str] = mapped_column(String(ADDRESS_CHARS))
    backend: Mapped[str] = mapped_column(String(BACKEND_CHARS))
    # None when the Info was unreadable; both exactly as read (LosslessText), for the message shown once
    # the lock is gone and to find the force-unlock that released it.
    lock_id: Mapped[str | None] = mapped_column(LosslessText(SQLITE_LOCK_ID_DECLARED))
    raw_info: Mapped[str] = mapped_column(LosslessText())
    lock_created_at: Mapped[datetime | None]
    claimed_at: Mapped[datetime]
    channel: Mapped[str | None] = mapped_column(String(CHANNEL_CHARS))
    message_ts: Mapped[str | None] = mapped_column(String(64))
    posted_at: Mapped[datetime | None]
    reminded_at: Mapped[datetime | None]
    released_at: Mapped[datetime | None]
    # Who is talking to Slack about this alert right now, and until when (a replica that died lets go).
    lease_owner: Mapped[str | None] = mapped_column(String(LEASE_OWNER_CHARS))
    lease_until: Mapped[datetime | None]
