"""Force-unlock requests and their approvals, as stored and as shown. The rules that move them are in workflow.py."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from bot.audit.models import ACTOR_CHARS, ADDRESS_CHARS, CHANNEL_CHARS, SQLITE_LOCK_ID_DECLARED
from bot.db import Base, LosslessText
from bot.locks.model import Store

PIN_ID_CHARS = 32


class Status(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"  # enough approvals; the release has not started yet
    EXECUTING = "executing"  # the attempt is in the audit trail; the delete may be under way
    EXECUTED = "executed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    SUPERSEDED = "superseded"
    ALREADY_RELEASED = "already_released"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        return self not in {Status.PENDING, Status.APPROVED, Status.EXECUTING}


_STATUS_VALUES = ", ".join(f"'{status.value}'" for status in Status)
# At most one pending request per state, enforced by the database itself (migration 0005): two people asking
# at the same instant on two replicas cannot both get in, whatever the isolation level.
ONE_PENDING_INDEX = "uq_unlock_requests_pending_state"
_PENDING = text(f"status = '{Status.PENDING.value}'")


class UnlockRequest(Base):
    __tablename__ = "unlock_requests"
    __table_args__ = (
        CheckConstraint(f"status IN ({_STATUS_VALUES})", name="status"),
        Index(None, "status", "expires_at"),
        Index(None, "state_address", "status"),
        Index(ONE_PENDING_INDEX, "state_address", unique=True, sqlite_where=_PENDING, postgresql_where=_PENDING),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # a random UUID
    state_address: Mapped[str] = mapped_column(String(ADDRESS_CHARS))
    # None when the Info was unreadable. Exactly as read, any length (migration 0006).
    lock_id: Mapped[str | None] = mapped_column(LosslessText(SQLITE_LOCK_ID_DECLARED))
    # What the requester saw, byte for byte (NUL and non-UTF-8 bytes included, escaped reversibly):
    # the release deletes only this exact lock.
    raw_info: Mapped[str] = mapped_column(LosslessText())
    in_table: Mapped[bool]
    in_lockfile: Mapped[bool]
    lockfile_etag: Mapped[str | None] = mapped_column(String(256))
    requester: Mapped[str] = mapped_column(String(ACTOR_CHARS))
    reason: Mapped[str] = mapped_column(Text)
    channel: Mapped[str | None] = mapped_column(String(CHANNEL_CHARS))
    message_ts: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20))
    approvals_required: Mapped[int] = mapped_column(Integer)  # fixed at request time
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    decided_at: Mapped[datetime | None]  # approved, rejected, cancelled or expired
    decided_by: Mapped[str | None] = mapped_column(String(ACTOR_CHARS))
    executing_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(Text)  # a sentence about how it ended


class Approval(Base):
    __tablename__ = "unlock_approvals"
    __table_args__ = (UniqueConstraint("request_id", "approver"),)  # each approver counts once

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("unlock_requests.id"))
    approver: Mapped[str] = mapped_column(String(ACTOR_CHARS))
    at: Mapped[datetime]


@dataclass(frozen=True)
class RequestView:
    """A request as callers see it (the Slack layer renders this); read from the database, never from a button."""

    id: str
    address: str
    lock_id: str | None
    raw_info: str
    held_in: tuple[Store, ...]
    lockfile_etag: str | None
    requester: str
    reason: str
    channel: str | None
    message_ts: str | None
    status: Status
    approvals_required: int
    approvers: tuple[str, ...]  # in the order they approved
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    executing_at: datetime | None
    finished_at: datetime | None
    outcome: str | None

    @classmethod
    def of(cls, row: UnlockRequest, approvers: Sequence[str]) -> RequestView:
        held_in = tuple(
            store for store, held in ((Store.TABLE, row.in_table), (Store.LOCKFILE, row.in_lockfile)) if held
        )
        return cls(
            id=row.id,
            address=row.state_address,
            lock_id=row.lock_id,
            raw_info=row.raw_info,
            held_in=held_in,
            lockfile_etag=row.lockfile_etag,
            requester=row.requester,
            reason=row.reason,
            channel=row.channel,
            message_ts=row.message_ts,
            status=Status(row.status),
            approvals_required=row.approvals_required,
            approvers=tuple(approvers),
            created_at=row.created_at,
            expires_at=row.expires_at,
            decided_at=row.decided_at,
            decided_by=row.decided_by,
            executing_at=row.executing_at,
            finished_at=row.finished_at,
            outcome=row.outcome,
        )

    @property
    def is_final(self) -> bool:
        return self.status.is_final

    @property
    def approvals_missing(self) -> int:
        return max(self.approvals_required - len(self.approvers), 0)


class PinnedLock(Base):
    """A lock as someone was shown it (a status, a list, an alert): what a Request force-unlock button names.

    Button values and modal metadata carry only `id` (Slack limits them to 2,000 and 3,000 characters; a
    state address alone may approach that once escaped), and the request is refused unless the lock held
    when it is made is this one: the same raw bytes (SHA-256), and the same lock-file ETag when there is one.
    """

    __tablename__ = "pinned_locks"

    id: Mapped[str] = mapped_column(String(PIN_ID_CHARS), primary_key=True)  # derived from what is pinned
    state_address: Mapped[str] = mapped_column(String(ADDRESS_CHARS))
    lock_id: Mapped[str | None] = mapped_column(LosslessText())  # None when the Info was unreadable
    raw_sha256: Mapped[str] = mapped_column(String(64))
    lockfile_etag: Mapped[str | None] = mapped_column(String(256))
    shown_at: Mapped[datetime]


@dataclass(frozen=True)
class Pin:
    id: str
    address: str
    lock_id: str | None
    raw_sha256: str
    lockfile_etag: str | None


class HoldStatus(StrEnum):
    TAKING = "taking"  # the `held` event is written; the lock may be being written to the stores
    HELD = "held"
    RELEASING = "releasing"  # the `released` event is written; the delete may be under way
    RELEASED = "released"
    REFUSED = "refused"  # the state was locked already: nothing was taken
    FAILED = "failed"  # a store failed while taking: nothing of ours is left (or the outcome says where)

    @property
    def is_active(self) -> bool:
        """The lock may be in the stores now."""
        return self in {HoldStatus.TAKING, HoldStatus.HELD, HoldStatus.RELEASING}


_HOLD_STATUS_VALUES = ", ".join(f"'{status.value}'" for status in HoldStatus)
_ACTIVE_HOLD = text("status IN ('taking', 'held', 'releasing')")
ONE_ACTIVE_HOLD_INDEX = "uq_holds_active_state"


class Hold(Base):
    """A state held on purpose with tflock (bot/unlock/holds.py): the exact lock written, by whom and why."""

    __tablename__ = "holds"
    __table_args__ = (
        CheckConstraint(f"status IN ({_HOLD_STATUS_VALUES})", name="status"),
        # One active hold per state, whatever the replicas do (the stores refuse a second lock anyway).
        Index(
            ONE_ACTIVE_HOLD_INDEX,
            "state_address",
            unique=True,
            sqlite_where=_ACTIVE_HOLD,
            postgresql_where=_ACTIVE_HOLD,
        ),
        Index(None, "status", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # a random UUID
    state_address: Mapped[str] = mapped_column(String(ADDRESS_CHARS))
    lock_id: Mapped[str] = mapped_column(String(36))  # the ID tflock generated, Terraform's format
    raw_info: Mapped[str] = mapped_column(LosslessText())  # the exact bytes written: release deletes only these
    in_table: Mapped[bool]
    in_lockfile: Mapped[bool]
    lockfile_etag: Mapped[str | None] = mapped_column(String(256))
    holder: Mapped[str] = mapped_column(String(ACTOR_CHARS))  # a Slack user ID, or cli:NAME
    reason: Mapped[str] = mapped_column(Text)
    channel: Mapped[str | None] = mapped_column(String(CHANNEL_CHARS))
    status: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime]
    released_at: Mapped[datetime | None]
    released_by: Mapped[str | None] = mapped_column(String(ACTOR_CHARS))
    outcome: Mapped[str | None] = mapped_column(Text)


@dataclass(frozen=True)
class HoldView:
    """A hold as callers see it (CLI and Slack render this)."""

    id: str
    address: str
    lock_id: str
    raw_info: str
    held_in: tuple[Store, ...]
    lockfile_etag: str | None
    holder: str
    reason: str
    channel: str | None
    status: HoldStatus
    created_at: datetime
    released_at: datetime | None
    released_by: str | None
    outcome: str | None

    @classmethod
    def of(cls, row: Hold) -> HoldView:
        held_in = tuple(
            store for store, held in ((Store.TABLE, row.in_table), (Store.LOCKFILE, row.in_lockfile)) if held
        )
        return cls(
            id=row.id,
            address=row.state_address,
            lock_id=row.lock_id,
            raw_info=row.raw_info,
            held_in=held_in,
            lockfile_etag=row.lockfile_etag,
            holder=row.holder,
            reason=row.reason,
            channel=row.channel,
            status=HoldStatus(row.status),
            created_at=row.created_at,
            released_at=row.released_at,
            released_by=row.released_by,
            outcome=row.outcome,
        )
