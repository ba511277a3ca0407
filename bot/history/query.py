"""Reading the lock history: the last locks on one state, newest first (`/tflock history`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from bot.db import DatabaseUnavailable, describe_error
from bot.durations import format_age
from bot.history.models import Ending, LockHistory
from bot.locks.facts import printable

DEFAULT_LIMIT = 10
MAX_LIMIT = 50
# Endings tflock caused itself, so it knows the moment the lock went.
EXACT_ENDINGS = frozenset({Ending.FORCE_UNLOCKED.value, Ending.RELEASED_HOLD.value})


@dataclass(frozen=True)
class PastLock:
    """One lock on a state as the history has it."""

    state: str
    lock_id: str | None
    who: str | None
    operation: str | None
    created: datetime | None
    first_seen: datetime
    last_seen: datetime
    gone_at: datetime | None
    ended: str | None  # an Ending, or None while tflock last saw it held
    request_id: str | None
    stale: bool

    @property
    def held_for(self) -> timedelta:
        """How long it was held: exact when `held_for_exact`, else a lower bound (it was held at least this)."""
        start = self.created if self.created is not None else self.first_seen
        end = self.gone_at if self.held_for_exact and self.gone_at is not None else self.last_seen
        return max(end - start, timedelta(0))

    @property
    def held_for_exact(self) -> bool:
        """Known to the second: Created was readable and tflock itself ended the lock."""
        return self.created is not None and self.gone_at is not None and self.ended in EXACT_ENDINGS

    def as_json(self) -> dict[str, Any]:
        def moment(value: datetime | None) -> str | None:
            return value.isoformat().replace("+00:00", "Z") if value is not None else None

        return {
            "state": self.state,
            "lock_id": self.lock_id,
            "who": self.who,
            "operation": self.operation,
            "created": moment(self.created),
            "first_seen": moment(self.first_seen),
            "last_seen": moment(self.last_seen),
            "gone_at": moment(self.gone_at),
            "ended": self.ended,
            "request_id": self.request_id,
            "stale": self.stale,
            "held_seconds": int(self.held_for.total_seconds()),
            "held_exact": self.held_for_exact,
        }

    @classmethod
    def of(cls, row: LockHistory) -> PastLock:
        return cls(
            state=row.state_address,
            lock_id=row.lock_id,
            who=row.who,
            operation=row.operation,
            created=row.created_at,
            first_seen=row.first_seen_at,
            last_seen=row.last_seen_at,
            gone_at=row.gone_at,
            ended=row.ended,
            request_id=row.request_id,
            stale=row.stale,
        )


def state_history(sessions: sessionmaker[Session], state: str, limit: int = DEFAULT_LIMIT) -> list[PastLock]:
    """The last `limit` locks seen on `state`, the most recently first seen first."""
    try:
        with sessions() as session:
            rows = session.scalars(
                select(LockHistory)
                .where(LockHistory.state_address == state)
                .order_by(LockHistory.first_seen_at.desc(), LockHistory.id.desc())
                .limit(max(1, min(limit, MAX_LIMIT)))
            ).all()
            return [PastLock.of(row) for row in rows]
    except SQLAlchemyError as exc:
        raise DatabaseUnavailable(f"could not read the lock history: {describe_error(exc)}") from exc


ENDED_WORDS = {
    Ending.GONE.value: "gone by itself",
    Ending.FORCE_UNLOCKED.value: "force-unlocked through tflock",
    Ending.RELEASED_HOLD.value: "hold released",
}


def render_history(state: str, past: list[PastLock]) -> str:
    """The history for a terminal: one line per lock, newest first."""
    if not past:
        return f"No lock seen yet on {printable(state)}."
    lines = [f"Lock history of {printable(state)} (newest first)"]
    for lock in past:
        held = format_age(lock.held_for) if lock.held_for_exact else f"at least {format_age(lock.held_for)}"
        ended = ENDED_WORDS.get(lock.ended, lock.ended) if lock.ended else "still held when last seen"
        if lock.request_id:
            ended += f" (request {lock.request_id})"
        when = lock.gone_at if lock.gone_at is not None else lock.last_seen
        lines.append(
            f"  {printable(lock.who or '?')}  {printable(lock.operation or '?')}  held {held}"
            f"{'  STALE' if lock.stale else ''}  {ended} {when:%Y-%m-%d %H:%M} UTC"
            f"  lock {printable(lock.lock_id or '?')}"
        )
    return "\n".join(lines)
