"""Holds: a state's real Terraform lock taken on purpose with a reason, released only by its holder
(docs/design.md §9). No Slack here: the Slack handlers and the CLI call `hold` and `release`.

    hold:    (nothing) ─▶ taking ─▶ held | refused (locked already) | failed (a store failed)
    release: held ─▶ releasing ─▶ released        (back to held if the delete failed)
             held ─▶ released                      (the lock was already gone)

Fail closed, as the force-unlock is: the `held` event (with the hold's row) is committed before the lock
is written, and the `released` event before it is deleted; if the audit trail cannot be written,
nothing is taken or released. Every status change is a guarded UPDATE whose row count is checked, and a
partial unique index keeps one active hold per state. Release is compare-and-delete of the exact bytes
the hold wrote (bot/unlock/release.py), so a lock someone else holds now is never deleted.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from bot import __version__
from bot.audit.models import ACTOR_CHARS, CHANNEL_CHARS, AuditAction
from bot.audit.writer import AuditUnavailable, record_event, storable
from bot.db import describe_error
from bot.errors import BadInput, TflockError
from bot.history.models import Ending
from bot.history.record import record_ended, record_seen, seen_from_raw
from bot.locks.address import LockIdRef, StateAddress, parse_state
from bot.locks.directory import LockDirectory
from bot.locks.facts import printable
from bot.locks.hold import hold_stores, take_lock
from bot.locks.lockinfo import hold_lock_info, raw_digest
from bot.locks.model import AlreadyLocked, Answer, StateLock, Store
from bot.unlock.models import Hold, HoldStatus, HoldView, Status
from bot.unlock.policy import MAX_REASON_CHARS, RefusalCode, Refused, require_reason
from bot.unlock.release import Finding, Seen, compare, delete_seen

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
ACTIVE = (HoldStatus.TAKING, HoldStatus.HELD, HoldStatus.RELEASING)
# A hold row still `taking` (or `releasing`) this long after it was created was left by a crash, not in flight.
TAKING_GRACE = timedelta(minutes=5)
CLI_PREFIX = "cli:"


@dataclass
class _Attempt:
    action: str
    actor: str
    channel: str | None
    state_address: str | None = None
    lock_id: str | None = None
    hold_id: str | None = None


class Holds:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        directory: LockDirectory,
        clock: Clock,
        *,
        version: str = f"tflock {__version__}",
        max_reason_chars: int = MAX_REASON_CHARS,
        on_history_missed: Callable[[], None] = lambda: None,
    ) -> None:
        self.sessions = sessions
        self.directory = directory
        self.clock = clock
        self.version = version
        self.max_reason_chars = max_reason_chars
        self.on_history_missed = on_history_missed

    # -- what people do -------------------------------------------------------------------------
    def hold(
        self,
        state: str | StateAddress,
        reason: str,
        actor: str,
        channel: str | None,
        *,
        actor_name: str | None = None,
        channel_name: str | None = None,
    ) -> HoldView:
        """Take the state's lock in every store its backend locks with, with `reason` in the Info.

        `actor` is a Slack user ID or `cli:NAME`; `actor_name`/`channel_name` are what Terraform shows
        (`Who: alice (tflock hold)`, `Info: held with tflock by @alice in #incident-42: …`).
        Refused when the state is locked already (the message names the holder) or cannot be read.
        """
        with self._attempt("hold", actor, channel) as attempt:
            cleaned = self._check_reason(reason)
            address = self._address(state)
            attempt.state_address = str(address)
            lock = self.directory.read(address)
            if lock.answer is Answer.UNKNOWN:
                raise _unknown(lock)
            if lock.held:
                attempt.lock_id = lock.lock_ids[0] if lock.lock_ids else None
                raise Refused(RefusalCode.ALREADY_LOCKED, already_locked(lock))
            self._end_if_gone(address, actor)
            stores = hold_stores(self.directory.backends.for_address(address))
            now = self._now()
            lock_id, raw = hold_lock_info(
                address.lock_id,
                by=_shown_by(actor, actor_name),
                channel=channel_name or channel,
                reason=cleaned,
                version=self.version,
                created=now,
            )
            attempt.lock_id = lock_id
            view = self._start_hold(address, lock_id, raw, stores, actor, cleaned, channel, now)
            attempt.hold_id = view.id
            try:
                taken = take_lock(self.directory, address, raw)
            except AlreadyLocked as exc:
                holder = self.directory.read(address)
                note = already_locked(holder) if holder.held else str(exc)
                self._end(view, HoldStatus.TAKING, HoldStatus.REFUSED, None, AuditAction.REFUSED, note, {})
                raise Refused(RefusalCode.ALREADY_LOCKED, note) from None
            except TflockError as exc:
                note = f"the hold could not be taken: {exc}"
                self._end(view, HoldStatus.TAKING, HoldStatus.FAILED, None, AuditAction.FAILED, note, {})
                raise TflockError(f"{note}; {self._left_behind(address, raw, lock_id)}") from exc
            self._history(view, None, now)
            try:
                with self.sessions.begin() as session:
                    self._transition(
                        session, view.id, HoldStatus.TAKING, HoldStatus.HELD, lockfile_etag=taken.lockfile_etag
                    )
                    return self._view(session, view.id)
            except SQLAlchemyError as exc:  # the lock is held and its bytes are recorded: release still works
                log.error("hold %s on %s taken, but its row stays 'taking': %s", view.id, address, describe_error(exc))
                return view

    def release(self, state: str | StateAddress, actor: str) -> HoldView:
        """Release the hold on this state; only its holder may. Compare-and-delete of the exact bytes written.

        Refused: no active hold (use the force-unlock), not the holder, or the lock is not the hold's any more.
        """
        with self._attempt("release", actor, None) as attempt:
            address = self._address(state)
            attempt.state_address = str(address)
            hold = self.active(address)
            if hold is None:
                raise Refused(RefusalCode.NO_HOLD, self._no_hold(address))
            attempt.lock_id, attempt.hold_id, attempt.channel = hold.lock_id, hold.id, hold.channel
            if hold.holder != actor:
                raise Refused(
                    RefusalCode.NOT_HOLDER,
                    f"{address} is held by {hold.holder} since {hold.created_at:%Y-%m-%d %H:%M} UTC "
                    f"({printable(hold.reason)}); only they can release it. Anyone else: ask them, or use the "
                    f"two-person force-unlock (`/tflock unlock {address} <reason>`).",
                )
            if hold.status is HoldStatus.TAKING and self._now() - hold.created_at < TAKING_GRACE:
                raise Refused(
                    RefusalCode.ALREADY_DECIDED,
                    f"The hold on {address} is still being taken; release it in a moment.",
                )
            lock = self.directory.read(address)
            seen = _seen(hold, lock)
            comparison = compare(seen, lock)
            if comparison.finding is Finding.UNCHECKED:
                raise Refused(RefusalCode.LOCK_UNKNOWN, f"Nothing was released: {comparison.note}.")
            if comparison.finding is Finding.GONE:
                note = "the hold's lock was already gone (force-unlocked or deleted by hand); nothing to delete"
                return self._finish_gone(hold, actor, note)
            if comparison.finding is Finding.CHANGED:
                if hold.lock_id not in lock.lock_ids:  # another lock holds the state now: this hold is over
                    self._finish_gone(hold, actor, f"the hold's lock was gone and {comparison.note}")
                raise Refused(
                    RefusalCode.HOLD_CHANGED,
                    f"The lock on {address} is not the one your hold wrote any more ({comparison.note}).",
                )
            self._start_release(hold, lock, actor)
            deletion = delete_seen(self.directory, lock, seen)
            if deletion.status in {Status.EXECUTED, Status.ALREADY_RELEASED}:
                try:
                    with self.sessions.begin() as session:
                        self._transition(
                            session,
                            hold.id,
                            HoldStatus.RELEASING,
                            HoldStatus.RELEASED,
                            released_at=self._now(),
                            released_by=_id(actor),
                            outcome=storable(deletion.note, None),
                        )
                        view = self._view(session, hold.id)
                except SQLAlchemyError as exc:  # the `released` event is written; only the row lags behind
                    raise TflockError(
                        f"{address} is released (the hold's lock is deleted: {deletion.note}), but tflock could not "
                        f"mark the hold released ({describe_error(exc)}); run release again to record it"
                    ) from exc
                log.info("hold %s on %s released by %s: %s", hold.id, address, actor, deletion.note)
                self._history(hold, Ending.RELEASED_HOLD, view.released_at or self._now())
                return view
            detail = {"deleted": list(deletion.deleted), "status": deletion.status.value}
            releasing = self._current(hold.id)
            self._end(releasing, HoldStatus.RELEASING, HoldStatus.HELD, None, AuditAction.FAILED, deletion.note, detail)
            raise TflockError(f"{address} is still held: {deletion.note}")

    # -- what status, list and the watchdog read -------------------------------------------------
    def active(self, state: str | StateAddress) -> HoldView | None:
        """The active hold on this state (taking, held or releasing), if tflock has one."""
        address = state if isinstance(state, StateAddress) else self._address(state)
        try:
            with self.sessions() as session:
                row = session.scalars(
                    select(Hold).where(Hold.state_address == str(address), Hold.status.in_(ACTIVE)).limit(1)
                ).first()
                return HoldView.of(row) if row is not None else None
        except SQLAlchemyError as exc:
            raise AuditUnavailable(f"could not read the holds: {describe_error(exc)}") from exc

    def active_holds(self) -> list[HoldView]:
        """Every active hold, oldest first."""
        try:
            with self.sessions() as session:
                rows = session.scalars(select(Hold).where(Hold.status.in_(ACTIVE)).order_by(Hold.created_at)).all()
                return [HoldView.of(row) for row in rows]
        except SQLAlchemyError as exc:
            raise AuditUnavailable(f"could not read the holds: {describe_error(exc)}") from exc

    def find(self, hold_id: str) -> HoldView | None:
        try:
            with self.sessions() as session:
                row = session.get(Hold, hold_id)
                return HoldView.of(row) if row is not None else None
        except SQLAlchemyError as exc:
            raise AuditUnavailable(f"could not read the hold: {describe_error(exc)}") from exc

    # -- steps ------------------------------------------------------------------------------------
    def _start_hold(
        self,
        address: StateAddress,
        lock_id: str,
        raw: str,
        stores: tuple[Store, ...],
        actor: str,
        reason: str,
        channel: str | None,
        now: datetime,
    ) -> HoldView:
        """The hold's row and its `held` event, committed before anything is written to a store."""
        row = Hold(
            id=str(uuid.uuid4()),
            state_address=str(address),
            lock_id=lock_id,
            raw_info=raw,
            in_table=Store.TABLE in stores,
            in_lockfile=Store.LOCKFILE in stores,
            holder=_id(actor),
            reason=reason,
            channel=storable(channel, CHANNEL_CHARS),
            status=HoldStatus.TAKING,
            created_at=now,
        )
        try:
            with self.sessions.begin() as session:
                session.add(row)
                session.flush()
                view = HoldView.of(row)
                detail = {
                    "hold_id": view.id,
                    "reason": reason,
                    "stores": [store.value for store in stores],
                    "raw_info": raw,
                    "raw_info_sha256": raw_digest(raw),
                }
                self._record(session, AuditAction.HELD, view, actor=actor, at=now, detail=detail)
        except IntegrityError:  # another hold on this state got in first (the one-active-hold index)
            other = self.active(address)
            who = f" by {other.holder} ({printable(other.reason)})" if other else ""
            raise Refused(RefusalCode.ALREADY_LOCKED, f"{address} is already held with tflock{who}.") from None
        except SQLAlchemyError as exc:
            raise AuditUnavailable(
                f"the hold could not be written to the audit trail, so {address} was NOT locked ({describe_error(exc)})"
            ) from exc
        return view

    def _start_release(self, hold: HoldView, lock: StateLock, actor: str) -> None:
        """held → releasing with its `released` event, committed before anything is deleted (fail closed)."""
        now = self._now()
        try:
            with self.sessions.begin() as session:
                if not self._transition(session, hold.id, hold.status, HoldStatus.RELEASING):
                    raise Refused(RefusalCode.ALREADY_DECIDED, f"The hold on {hold.address} is being released already.")
                detail = {
                    "hold_id": hold.id,
                    "stores": [s.location for s in lock.snapshots],
                    "raw_info_sha256": raw_digest(hold.raw_info),
                    "held_since": hold.created_at,
                }
                self._record(session, AuditAction.RELEASED, hold, actor=actor, at=now, detail=detail)
        except SQLAlchemyError as exc:
            raise AuditUnavailable(
                "the release could not be written to the audit trail, so the hold was NOT released "
                f"({describe_error(exc)})"
            ) from exc

    def _end_if_gone(self, address: StateAddress, actor: str) -> None:
        """Called once a complete read found `address` not held: a hold row still active there is over (its lock
        was force-unlocked or deleted by hand), so it ends and no longer blocks a new hold. A row still being
        taken or released is left alone unless it is older than TAKING_GRACE (a crash in between)."""
        stale = self.active(address)
        if stale is None:
            return
        if stale.status is not HoldStatus.HELD and self._now() - stale.created_at < TAKING_GRACE:
            return  # in flight: the one-active-hold index refuses the new hold
        self._finish_gone(
            stale, actor, f"its lock was gone (force-unlocked or deleted by hand) when {actor} asked for a new hold"
        )

    def _left_behind(self, address: StateAddress, raw: str, lock_id: str) -> str:
        """After a failed take: "nothing is held" only when a complete read shows none of the hold's bytes."""
        try:
            lock = self.directory.read(address)
        except TflockError as exc:
            lock_words = f"the state could not be read again ({exc})"
        else:
            if lock.answer is not Answer.UNKNOWN and all(s.raw_info != raw for s in lock.snapshots):
                return "nothing is held"
            lock_words = "part of it may be in place" if lock.answer is not Answer.UNKNOWN else "it could not be read"
        return (
            f"tflock cannot say that nothing is held: {lock_words}. Check with `/tflock status {address}`; a lock "
            f"with ID {lock_id} left behind needs the two-person force-unlock"
        )

    def _history(self, hold: HoldView, ending: Ending | None, at: datetime) -> None:
        """The lock history (bot/history) learns of the hold: seen when taken, `released_hold` when released.
        Never fails the hold or the release: a miss is counted and logged, as for look-ups."""
        try:
            backend = self.directory.backends.for_address(self._address(hold.address)).name
            seen = seen_from_raw(hold.address, backend, hold.raw_info, hold.lock_id)
            with self.sessions.begin() as session:
                if ending is None:
                    record_seen(session, [seen], at)
                else:
                    record_ended(session, hold.address, hold.lock_id, ending, at=at, raw_info=hold.raw_info, lock=seen)
        except (SQLAlchemyError, TflockError) as exc:
            self.on_history_missed()
            why = describe_error(exc) if isinstance(exc, SQLAlchemyError) else str(exc)
            log.error("hold %s on %s: lock history not recorded: %s", hold.id, hold.address, why)

    def _finish_gone(self, hold: HoldView, actor: str, note: str) -> HoldView:
        """The hold's lock is not in the stores any more: the hold ends, with its `released` event."""
        now = self._now()
        with self.sessions.begin() as session:
            if self._transition(
                session,
                hold.id,
                hold.status,
                HoldStatus.RELEASED,
                released_at=now,
                released_by=_id(actor),
                outcome=storable(note, None),
            ):
                detail = {"hold_id": hold.id, "note": note, "held_since": hold.created_at, "deleted": []}
                self._record(session, AuditAction.RELEASED, hold, actor=actor, at=now, detail=detail)
            return self._view(session, hold.id)

    def _end(
        self,
        hold: HoldView,
        from_: HoldStatus,
        to: HoldStatus,
        actor: str | None,
        action: AuditAction,
        note: str,
        detail: Mapping[str, Any],
    ) -> None:
        """A hold that did not happen (refused, failed) or a release that failed, with its event."""
        try:
            with self.sessions.begin() as session:
                if self._transition(session, hold.id, from_, to, outcome=storable(note, None)):
                    event = {"hold_id": hold.id, "note": note, **detail}
                    if action is AuditAction.REFUSED:
                        event |= {"why": RefusalCode.ALREADY_LOCKED.value, "attempted": "hold"}
                    self._record(session, action, hold, actor=actor, at=self._now(), detail=event)
        except SQLAlchemyError as exc:
            log.error("hold %s: could not record %s (%s): %s", hold.id, to, note, describe_error(exc))

    # -- plumbing -----------------------------------------------------------------------------------
    def _check_reason(self, reason: str) -> str:
        return require_reason(
            storable(reason, None) or "",
            self.max_reason_chars,
            "say why nobody may plan or apply (the incident, what is being fixed)",
        )

    def _address(self, state: str | StateAddress) -> StateAddress:
        if isinstance(state, StateAddress):
            return state
        ref = parse_state(state, self.directory.backends.aliases)
        if isinstance(ref, LockIdRef):
            raise BadInput("Give the state address (bucket/key, s3://bucket/key or an alias), not a lock ID.")
        self.directory.backends.for_address(ref)  # an unknown bucket is bad input before any AWS call
        return ref

    def _no_hold(self, address: StateAddress) -> str:
        try:
            lock = self.directory.read(address)
        except TflockError:
            lock = None
        if lock is not None and lock.hold is not None:
            return (
                f"{address} is held with tflock by {printable(lock.hold.by)}, but not by this installation's "
                "database; release it where it was taken, or use the force-unlock "
                f"(`/tflock unlock {address} <reason>`)."
            )
        if lock is not None and lock.held:
            return (
                f"{address} is locked, but not by a tflock hold; release it with the two-person force-unlock "
                f"(`/tflock unlock {address} <reason>`)."
            )
        return f"There is no tflock hold on {address}; nothing was released."

    def _transition(self, session: Session, hold_id: str, from_: HoldStatus, to: HoldStatus, **values: Any) -> bool:
        result = session.execute(
            update(Hold)
            .where(Hold.id == hold_id, Hold.status == from_)
            .values(status=to, **values)
            .execution_options(synchronize_session=False)
        )
        return cast(CursorResult[Any], result).rowcount == 1

    def _view(self, session: Session, hold_id: str) -> HoldView:
        row = session.get(Hold, hold_id, populate_existing=True)
        assert row is not None, "holds are never deleted"
        return HoldView.of(row)

    def _current(self, hold_id: str) -> HoldView:
        view = self.find(hold_id)
        assert view is not None, "holds are never deleted"
        return view

    def _record(
        self,
        session: Session,
        action: AuditAction,
        hold: HoldView,
        *,
        actor: str | None,
        at: datetime,
        detail: Mapping[str, Any],
    ) -> None:
        record_event(
            session,
            action,
            at=at,
            actor=actor,
            state_address=hold.address,
            lock_id=hold.lock_id,
            channel=hold.channel,
            detail=detail,
        )

    @contextmanager
    def _attempt(self, action: str, actor: str, channel: str | None) -> Iterator[_Attempt]:
        """Record a refusal before it reaches the person; turn database failures into AuditUnavailable."""
        attempt = _Attempt(action, actor, channel)
        try:
            yield attempt
        except Refused as refusal:
            self._record_refusal(attempt, refusal)
            raise
        except SQLAlchemyError as exc:
            raise AuditUnavailable(
                f"the audit database is unavailable, so nothing was changed ({describe_error(exc)})"
            ) from exc

    def _record_refusal(self, attempt: _Attempt, refusal: Refused) -> None:
        if refusal.why is RefusalCode.ALREADY_LOCKED and attempt.hold_id is not None:
            return  # recorded with the hold's row (`_end`)
        detail: dict[str, Any] = {"why": refusal.why, "attempted": attempt.action, "message": str(refusal)}
        if attempt.hold_id is not None:
            detail["hold_id"] = attempt.hold_id
        try:
            with self.sessions.begin() as session:
                record_event(
                    session,
                    AuditAction.REFUSED,
                    at=self._now(),
                    actor=attempt.actor,
                    state_address=attempt.state_address,
                    lock_id=attempt.lock_id,
                    channel=attempt.channel,
                    detail=detail,
                )
        except SQLAlchemyError as exc:
            raise AuditUnavailable(
                f"{refusal} (and the audit trail could not record this refusal: {describe_error(exc)})"
            ) from exc

    def _now(self) -> datetime:
        now = self.clock()
        if now.tzinfo is None:
            raise ValueError("the clock must return aware UTC datetimes")
        return now.astimezone(UTC)


def already_locked(lock: StateLock) -> str:
    """Why a hold was refused: who holds the state now, what they are doing, since when."""
    info = lock.info
    if lock.hold is not None:
        since = f" since {lock.created:%Y-%m-%d %H:%M} UTC" if lock.created else ""
        return (
            f"{lock.address} is already held with tflock by {printable(lock.hold.by)}{since}: "
            f"{printable(lock.hold.reason)}. Nothing was taken."
        )
    if info is None:
        return f"{lock.address} is already locked (the lock's Info is unreadable). Nothing was taken."
    since = f", created {lock.created:%Y-%m-%d %H:%M:%S} UTC" if lock.created else ""
    return (
        f"{lock.address} is already locked by {printable(info.who) or '(no Who)'} "
        f"({printable(info.operation_words)}, lock ID {printable(info.id)}{since}). Nothing was taken; "
        "hold it once that run has finished, or ask its holder."
    )


def _unknown(lock: StateLock) -> Refused:
    missed = "; ".join(str(u) for u in lock.unchecked)
    return Refused(
        RefusalCode.LOCK_UNKNOWN,
        f"tflock could not tell whether {lock.address} is locked ({missed}), so nothing was taken.",
    )


def _seen(hold: HoldView, lock: StateLock) -> Seen:
    """What the hold wrote. The lock file's ETag is the one read now when its bytes are exactly ours (an ETag
    the hold could not record is recovered this way); the delete is still conditional on it."""
    etag = hold.lockfile_etag
    if lock.lockfile is not None and lock.lockfile.raw_info == hold.raw_info:
        etag = lock.lockfile.etag
    return Seen(
        raw_info=hold.raw_info,
        lock_id=hold.lock_id,
        in_table=Store.TABLE in hold.held_in,
        in_lockfile=Store.LOCKFILE in hold.held_in,
        lockfile_etag=etag,
    )


def _shown_by(actor: str, name: str | None) -> str:
    """How the holder is named in the Info: `@alice` for a Slack user, `cli:alice` from the command line."""
    if actor.startswith(CLI_PREFIX):
        return actor
    return "@" + (name or actor).removeprefix("@")


def _id(user: str) -> str:
    cleaned = storable(user, ACTOR_CHARS)
    assert cleaned is not None
    return cleaned
