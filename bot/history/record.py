"""Writing the lock history: what was seen held, what was seen not held, and how a lock ended.

Every write is idempotent, so any number of replicas (and look-ups racing the watchdog) may report the
same lock: rows are keyed by `lock_key` and merged with `INSERT … ON CONFLICT DO UPDATE` (SQLite and
PostgreSQL alike), one statement per batch of up to BATCH locks. Times merge as a replica with a moved
clock would want: first seen is the earliest report, last seen the latest, and a lock is only called
gone by a report made after it was last seen held. A lock seen again after it was called gone (an
eventually consistent listing missed it) is open again; one that tflock deleted stays ended.

Callers write history after answering and never fail an answer for it (`Runtime.record_history`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, and_, case, func, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from bot.history.models import BACKEND_CHARS, REQUEST_ID_CHARS, TEXT_CHARS, Ending, LockHistory
from bot.locks.backends import BackendSet
from bot.locks.directory import LockListing
from bot.locks.lockinfo import LockInfoError, parse_lock_info, raw_digest
from bot.locks.model import Answer, StateLock

BATCH = 500  # rows per INSERT: well under SQLite's 32,766 bound parameters


@dataclass(frozen=True)
class LockSeen:
    """One lock as one look-up saw it held."""

    state: str
    backend: str
    lock_id: str | None
    raw_sha256: str  # identifies a lock whose Info has no readable ID
    who: str | None
    operation: str | None
    created: datetime | None
    stale: bool
    whole_state: bool = True  # every store that can hold the state's lock was read

    @property
    def key(self) -> str:
        return lock_key(self.state, self.lock_id, self.raw_sha256)


def lock_key(state: str, lock_id: str | None, raw_sha256: str) -> str:
    """The same identity the watchdog gives a lock: its state and lock ID, or its raw Info's digest."""
    identity = f"id:{lock_id}" if lock_id else f"raw:{raw_sha256}"
    return hashlib.sha256(f"{state}\n{identity}".encode("utf-8", "surrogatepass")).hexdigest()


def observed(lock: StateLock, now: datetime, stale_after: timedelta) -> list[LockSeen]:
    """The locks a look-up saw on one state: one per distinct lock (two when the stores disagree)."""
    stale = lock.is_stale(now, stale_after)
    seen: dict[str, LockSeen] = {}
    for snapshot in sorted(lock.snapshots, key=lambda s: s.info is None):
        info = snapshot.info
        created = info.created if info is not None and info.created is not None else lock.created
        one = LockSeen(
            state=str(lock.address),
            backend=lock.backend[:BACKEND_CHARS],
            lock_id=snapshot.lock_id,
            raw_sha256=raw_digest(snapshot.raw_info),
            who=_cut(info.who) if info is not None else None,
            operation=_cut(info.operation) if info is not None else None,
            created=created,
            stale=stale,
            whole_state=not lock.unchecked,
        )
        seen.setdefault(one.key, one)
    return list(seen.values())


def seen_from_raw(state: str, backend: str, raw_info: str, lock_id: str | None, stale: bool = False) -> LockSeen:
    """A lock known only by its stored Info (an unlock request's): what the history needs of it."""
    try:
        info = parse_lock_info(raw_info)
    except LockInfoError:
        info = None
    return LockSeen(
        state=state,
        backend=backend[:BACKEND_CHARS],
        lock_id=lock_id,
        raw_sha256=raw_digest(raw_info),
        who=_cut(info.who) if info is not None else None,
        operation=_cut(info.operation) if info is not None else None,
        created=info.created if info is not None else None,
        stale=stale,
        whole_state=False,  # says nothing about other locks on the state
    )


def record_seen(session: Session, observations: Iterable[LockSeen], at: datetime) -> int:
    """Record locks seen held at `at` (upserted in batches); returns how many distinct locks were given.

    On a state read whole, an open row for any other lock is ended as gone: the state now holds another.
    """
    at = _utc(at)
    unique = {seen.key: seen for seen in observations}
    rows = [_row(seen, at) for seen in unique.values()]
    insert = _dialect(session).insert
    for start in range(0, len(rows), BATCH):
        statement = insert(LockHistory).values(rows[start : start + BATCH])
        excluded = statement.excluded
        table = LockHistory.__table__.c
        reopen = and_(
            table.ended == Ending.GONE.value, table.gone_at.is_not(None), table.gone_at < excluded.last_seen_at
        )
        session.execute(
            statement.on_conflict_do_update(
                index_elements=["lock_key"],
                set_={
                    "first_seen_at": _least(session, table.first_seen_at, excluded.first_seen_at),
                    "last_seen_at": _greatest(session, table.last_seen_at, excluded.last_seen_at),
                    "stale": or_(table.stale, excluded.stale),
                    "who": func.coalesce(table.who, excluded.who),
                    "operation": func.coalesce(table.operation, excluded.operation),
                    "created_at": func.coalesce(table.created_at, excluded.created_at),
                    "gone_at": case((reopen, None), else_=table.gone_at),
                    "ended": case((reopen, None), else_=table.ended),
                },
            )
        )
    replaced = {seen.state for seen in unique.values() if seen.whole_state}
    if replaced:
        _end_open(session, at, LockHistory.state_address.in_(sorted(replaced)), LockHistory.lock_key.not_in(unique))
    return len(unique)


def record_not_held(session: Session, states: Collection[str], at: datetime) -> int:
    """States read whole and found not held at `at`: their open rows end as gone. Never call this on an
    "unknown" answer. Returns the rows ended."""
    if not states:
        return 0
    return _end_open(session, _utc(at), LockHistory.state_address.in_(sorted(states)))


def record_listing(
    session: Session, observations: Iterable[LockSeen], backends_read: Collection[str], at: datetime
) -> int:
    """A listing that read every lock of `backends_read`: what it saw is recorded, and every open row of
    those backends that it did not see ends as gone. Returns the rows ended."""
    at = _utc(at)
    record_seen(session, observations, at)  # seen rows now have last_seen_at >= at
    if not backends_read:
        return 0
    return _end_open(session, at, LockHistory.backend.in_(sorted(backends_read)))


def record_ended(
    session: Session,
    state: str,
    lock_id: str | None,
    how: Ending,
    *,
    at: datetime,
    request_id: str | None = None,
    raw_info: str | None = None,
    lock: LockSeen | None = None,
) -> bool:
    """The lock ended through tflock (force-unlocked, a hold released). A lock without a readable ID is
    found by its `raw_info`; with `lock` given, a lock the history never saw is added first. An ending
    already recorded as gone by a scan is made precise; another tflock ending is kept. True if recorded."""
    at = _utc(at)
    if lock is not None:
        record_seen(session, [lock], at)
    key = lock_key(state, lock_id, raw_digest(raw_info) if raw_info is not None else "")
    result = session.execute(
        update(LockHistory)
        .where(
            LockHistory.lock_key == key,
            or_(LockHistory.ended.is_(None), LockHistory.ended == Ending.GONE.value),
        )
        .values(
            ended=Ending(how).value,
            request_id=request_id[:REQUEST_ID_CHARS] if request_id else None,
            gone_at=case(
                (and_(LockHistory.gone_at.is_not(None), LockHistory.gone_at < at), LockHistory.gone_at), else_=at
            ),
        )
        .execution_options(synchronize_session=False)
    )
    return cast(CursorResult[Any], result).rowcount > 0


def history_of_status(session: Session, lock: StateLock, now: datetime, stale_after: timedelta) -> None:
    """What one status look-up tells the history: held → seen; not held → gone; unknown → nothing gone."""
    if lock.answer is Answer.NOT_HELD:
        record_not_held(session, [str(lock.address)], now)
    elif lock.held:
        record_seen(session, observed(lock, now, stale_after), now)


def history_of_listing(
    session: Session, listing: LockListing, backends: BackendSet, now: datetime, stale_after: timedelta
) -> None:
    """What one listing (list, the watchdog's scan) tells the history; a backend not fully read ends nothing.

    Any problem counts, failed or not: a catch-all `*` backend whose lock files are not all listed (a warning,
    not a failure) did not read every store, so a lock missing from its listing may still be held."""
    incomplete = {problem.backend for problem in listing.problems}
    read = [backend.name[:BACKEND_CHARS] for backend in backends.backends if backend.name not in incomplete]
    seen = [one for lock in listing.locks if lock.held for one in observed(lock, now, stale_after)]
    record_listing(session, seen, read, now)


def _end_open(session: Session, at: datetime, *where: Any) -> int:
    result = session.execute(
        update(LockHistory)
        .where(*where, LockHistory.gone_at.is_(None), LockHistory.last_seen_at < at)
        .values(gone_at=at, ended=Ending.GONE.value)
        .execution_options(synchronize_session=False)
    )
    return int(cast(CursorResult[Any], result).rowcount)


def _row(seen: LockSeen, at: datetime) -> dict[str, Any]:
    return {
        "lock_key": seen.key,
        "state_address": seen.state,
        "backend": seen.backend,
        "lock_id": seen.lock_id,
        "who": seen.who,
        "operation": seen.operation,
        "created_at": _utc(seen.created) if seen.created is not None else None,
        "first_seen_at": at,
        "last_seen_at": at,
        "gone_at": None,
        "ended": None,
        "request_id": None,
        "stale": seen.stale,
    }


def _dialect(session: Session) -> Any:
    return postgresql if session.get_bind().dialect.name == "postgresql" else sqlite


def _least(session: Session, *columns: Any) -> Any:
    return func.least(*columns) if session.get_bind().dialect.name == "postgresql" else func.min(*columns)


def _greatest(session: Session, *columns: Any) -> Any:
    return func.greatest(*columns) if session.get_bind().dialect.name == "postgresql" else func.max(*columns)


def _cut(text: str) -> str:
    return text if len(text) <= TEXT_CHARS else text[: TEXT_CHARS - 1] + "…"


def _utc(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError("history times are aware UTC datetimes")
    return at.astimezone(UTC)
