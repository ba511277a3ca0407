"""Pinned locks: the short server-side record a Request force-unlock button stands for (models.PinnedLock).

A pin's ID is derived from what it pins (state, SHA-256 of the raw Info bytes, lock-file ETag), so showing
the same lock again reuses its row, and an ID that was altered names no lock, or another lock someone was
shown — which the request then compares against the lock held at that moment anyway.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from bot.db import DatabaseUnavailable, describe_error
from bot.locks.lockinfo import raw_digest
from bot.locks.model import StateLock
from bot.unlock.models import PIN_ID_CHARS, Pin, PinnedLock

PREFIX = "pin-"
Clock = Callable[[], datetime]


def pin_id(address: str, raw_sha256: str, lockfile_etag: str | None) -> str:
    digest = hashlib.sha256(f"{address}\n{raw_sha256}\n{lockfile_etag or ''}".encode("utf-8", "surrogatepass"))
    return PREFIX + base64.b32encode(digest.digest()).decode("ascii").lower()[: PIN_ID_CHARS - len(PREFIX)]


def looks_like_pin(value: str) -> bool:
    return value.startswith(PREFIX) and len(value) == PIN_ID_CHARS and value[len(PREFIX) :].isalnum()


class LockPins:
    def __init__(self, sessions: sessionmaker[Session], clock: Clock) -> None:
        self.sessions = sessions
        self.clock = clock

    def pin(self, lock: StateLock) -> str | None:
        """The pin of the lock held now (None when nothing holds the state)."""
        return self.pin_many([lock]).get(str(lock.address))

    def pin_many(self, locks: Iterable[StateLock]) -> dict[str, str]:
        """Pins for held locks, by state address, written in one transaction."""
        return self.pin_seen(
            (str(lock.address), primary.lock_id, primary.raw_info, lock.lockfile.etag if lock.lockfile else None)
            for lock in locks
            if (primary := lock.primary) is not None
        )

    def pin_seen(self, seen: Iterable[tuple[str, str | None, str, str | None]]) -> dict[str, str]:
        """Pins for (address, lock ID, raw Info, lock-file ETag) as they were seen, by address."""
        rows: dict[str, PinnedLock] = {}
        for address, lock_id, raw_info, etag in seen:
            digest = raw_digest(raw_info)
            rows[address] = PinnedLock(
                id=pin_id(address, digest, etag),
                state_address=address,
                lock_id=lock_id,
                raw_sha256=digest,
                lockfile_etag=etag,
                shown_at=self.clock(),
            )
        if not rows:
            return {}
        try:
            self._store(list(rows.values()))
        except SQLAlchemyError as exc:
            raise DatabaseUnavailable(f"could not remember the lock shown: {describe_error(exc)}") from exc
        return {address: row.id for address, row in rows.items()}

    def find(self, pin: str) -> Pin | None:
        if not looks_like_pin(pin):
            return None
        try:
            with self.sessions() as session:
                row = session.get(PinnedLock, pin)
        except SQLAlchemyError as exc:
            raise DatabaseUnavailable(f"could not look up the lock shown: {describe_error(exc)}") from exc
        if row is None:
            return None
        return Pin(row.id, row.state_address, row.lock_id, row.raw_sha256, row.lockfile_etag)

    def _store(self, rows: list[PinnedLock]) -> None:
        with self.sessions.begin() as session:
            known = set(session.scalars(select(PinnedLock.id).where(PinnedLock.id.in_([r.id for r in rows]))).all())
            fresh = [_values(row) for row in rows if row.id not in known]
            if not fresh:
                return
            # Shown at the same moment by another replica: its row is as good as ours.
            dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
            session.execute(dialect.insert(PinnedLock).values(fresh).on_conflict_do_nothing(index_elements=["id"]))


def _values(row: PinnedLock) -> dict[str, object]:
    return {column.key: getattr(row, column.key) for column in PinnedLock.__table__.columns}
