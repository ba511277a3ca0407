"""The two-person force-unlock as a state machine over the database (docs/design.md §8).

    pending ─approve × N─▶ approved ─▶ executing ─▶ executed | superseded | already_released | failed
       │                      └─▶ superseded | already_released | failed    (lock changed or gone: no attempt)
       └─▶ rejected | cancelled | expired

Every transition is a guarded `UPDATE … WHERE id = :id AND status = :from` whose row count is checked,
so duplicate clicks, simultaneous approvers and several replicas on one database end in one release.
Approvals of one request are serialised on its row (SELECT … FOR UPDATE; BEGIN IMMEDIATE on SQLite).
No transaction is held open across an AWS call. The `executing` event is committed before anything
is deleted: if it cannot be written, nothing is deleted (fail closed).

Reconciliation (`reconcile`, at start-up and then periodically) ends requests left `approved` or
`executing` for longer than `executing_grace` — long enough that no live replica can still be inside
that release. It never deletes a lock: gone → executed (or already_released if no attempt had
started), changed → superseded, still held unchanged → failed, so people ask again with fresh facts.
"""

from __future__ import annotations

import hmac
import logging
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, and_, or_, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from bot.audit.models import ACTOR_CHARS, CHANNEL_CHARS, AuditAction
from bot.audit.writer import AuditUnavailable, record_event, storable
from bot.db import DatabaseUnavailable, describe_error
from bot.errors import BadInput, TflockError
from bot.history.models import Ending
from bot.history.record import record_ended, seen_from_raw
from bot.locks.address import LockIdRef, StateAddress, parse_state
from bot.locks.directory import LockDirectory
from bot.locks.facts import printable
from bot.locks.lockinfo import raw_digest
from bot.locks.model import Answer, StateLock, Store
from bot.unlock.models import Approval, Pin, RequestView, Status, UnlockRequest
from bot.unlock.policy import (
    BotCheck,
    RefusalCode,
    Refused,
    UnlockPolicy,
    already_decided,
    refuse_expired,
    refuse_holder_running,
    refuse_if_decided,
)
from bot.unlock.release import Comparison, Finding, Seen, compare, delete_seen

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
# Longer than a release can take with botocore's retries on both stores (≈ 2 × 6 attempts × 20 s).
EXECUTING_GRACE = timedelta(minutes=10)
_REQUEST_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


@dataclass
class _Attempt:
    """Who tried what, filled in as it becomes known, for the `refused` event if it is refused."""

    action: str
    actor: str | None
    channel: str | None = None
    given_request_id: str | None = None
    state_address: str | None = None
    lock_id: str | None = None


class UnlockWorkflow:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        directory: LockDirectory,
        policy: UnlockPolicy,
        clock: Clock,
        *,
        executing_grace: timedelta = EXECUTING_GRACE,
        on_reconcile_failure: Callable[[], None] = lambda: None,
        on_history_missed: Callable[[], None] = lambda: None,
    ) -> None:
        self.sessions = sessions
        self.directory = directory
        self.policy = policy
        self.clock = clock
        self.executing_grace = executing_grace
        self.on_reconcile_failure = on_reconcile_failure  # counted in /metrics by the bot
        self.on_history_missed = on_history_missed

    # -- what people do -------------------------------------------------------------------------
    def request(
        self,
        state: str | StateAddress,
        requester: str,
        reason: str,
        channel: str | None,
        *,
        is_bot: BotCheck = False,
        expected_lock_id: str | None = None,
        pinned: Pin | None = None,
    ) -> RequestView:
        """Ask for a force-unlock of the lock held now; it waits for approvals until it expires.

        `expected_lock_id` is the lock the person was looking at (a typed lock ID, an old button), `pinned`
        the lock a button was shown for (its raw bytes' SHA-256 and ETag, so a lock with unreadable Info is
        pinned too): if another lock holds the state by now, the request is refused rather than made for it.
        """
        with self._attempt("request", requester, channel=channel) as attempt:
            self.policy.check_requester(is_bot, channel)
            cleaned_reason = self.policy.check_reason(storable(reason, None) or "")
            if isinstance(state, str) and expected_lock_id is None:
                typed = parse_state(state, self.directory.backends.aliases)
                expected_lock_id = typed.lock_id if isinstance(typed, LockIdRef) else None
            address = state if isinstance(state, StateAddress) else self.directory.resolve(state)
            attempt.state_address = str(address)
            lock = self.directory.read(address)
            seen = _seen_now(lock)
            attempt.lock_id = seen.lock_id
            if expected_lock_id is not None and seen.lock_id != expected_lock_id:
                raise Refused(
                    RefusalCode.LOCK_CHANGED,
                    f"The lock on {address} is not the one you were looking at (ID {printable(expected_lock_id)}); it "
                    f"is now {printable(seen.lock_id) if seen.lock_id else 'a lock with unreadable info'}. Check "
                    f"`/tflock status {address}` and ask again.",
                )
            if pinned is not None and not _is_pinned(seen, pinned):
                shown = f"lock {printable(pinned.lock_id)}" if pinned.lock_id else "a lock with unreadable info"
                now_held = f"lock {printable(seen.lock_id)}" if seen.lock_id else "a lock with unreadable info"
                raise Refused(
                    RefusalCode.LOCK_CHANGED,
                    f"The lock on {address} is not the one you were shown ({shown}); it is now {now_held} "
                    f"(another lock, or one written again). Check `/tflock status {address}` and ask again.",
                )
            now = self._now()
            try:
                view = self._insert_request(address, seen, requester, cleaned_reason, channel, now)
            except IntegrityError:
                # Someone else's request for this state got in first (the one-pending index): tell them which.
                with self.sessions.begin() as session:
                    waiting = self._pending(session, address)
                    if waiting is None:
                        raise
                    raise self._already_requested(session, address, waiting) from None
            log.info("unlock request %s for %s by %s", view.id, view.address, requester)
            return view

    def _insert_request(
        self, address: StateAddress, seen: Seen, requester: str, reason: str, channel: str | None, now: datetime
    ) -> RequestView:
        """The new pending request with its `requested` event; IntegrityError if another is pending for the state."""
        with self.sessions.begin() as session:
            for due in session.scalars(  # pending but past its time: expire it now, so it does not block this one
                select(UnlockRequest.id).where(
                    UnlockRequest.state_address == str(address),
                    UnlockRequest.status == Status.PENDING,
                    UnlockRequest.expires_at <= now,
                )
            ).all():
                self._expire(session, due, now)
        with self.sessions.begin() as session:
            waiting = self._pending(session, address)
            if waiting is not None:
                raise self._already_requested(session, address, waiting)
            row = UnlockRequest(
                id=str(uuid.uuid4()),
                state_address=str(address),
                lock_id=seen.lock_id,
                raw_info=seen.raw_info,
                in_table=seen.in_table,
                in_lockfile=seen.in_lockfile,
                lockfile_etag=seen.lockfile_etag,
                requester=_id(requester),
                reason=reason,
                channel=storable(channel, CHANNEL_CHARS),
                status=Status.PENDING,
                approvals_required=self.policy.approvals_required,
                created_at=now,
                expires_at=now + self.policy.request_ttl,
            )
            session.add(row)
            session.flush()
            view = self._view(session, row)
            self._record(
                session,
                AuditAction.REQUESTED,
                view,
                actor=requester,
                at=now,
                detail={
                    "reason": reason,
                    "held_in": list(view.held_in),
                    "raw_info": seen.raw_info,  # escaped and cut to 4,000 characters here; the digest is exact
                    "raw_info_sha256": raw_digest(seen.raw_info),
                    "lockfile_etag": seen.lockfile_etag,
                    "approvals_required": view.approvals_required,
                    "expires_at": view.expires_at,
                },
            )
        return view

    def _pending(self, session: Session, address: StateAddress) -> UnlockRequest | None:
        return session.scalars(
            select(UnlockRequest)
            .where(UnlockRequest.state_address == str(address), UnlockRequest.status == Status.PENDING)
            .order_by(UnlockRequest.created_at)
            .limit(1)
        ).first()

    def _already_requested(self, session: Session, address: StateAddress, waiting: UnlockRequest) -> Refused:
        return Refused(
            RefusalCode.ALREADY_REQUESTED,
            f"A force-unlock of {address} is already waiting for approval (asked by {waiting.requester} "
            f"at {waiting.created_at:%H:%M} UTC); approve or cancel that one instead.",
            self._view(session, waiting),
        )

    def approve(
        self, request_id: str, approver: str, *, is_bot: BotCheck = False, past_warning: bool = False
    ) -> RequestView:
        """Count one approval; the one that completes the quorum releases the lock before returning.

        When the lock's holder has said their run is still running, only an approval given `past_warning`
        (the Slack side's *Approve anyway*, a second explicit confirmation) counts; a plain one is refused.
        """
        with self._attempt("approve", approver, request_id=request_id) as attempt:
            request = self._known(request_id, attempt)
            self.policy.check_approver(request, approver, is_bot)  # may ask Slack about groups: no transaction open
            now = self._now()
            with self.sessions.begin() as session:
                row = self._locked(session, request.id)
                current = self._view(session, row)
                refuse_if_decided(current)
                warned = current.holder_says_running
                if warned and not past_warning and now < row.expires_at:
                    raise refuse_holder_running(current)
                quorum = False
                expired = now >= row.expires_at
                if expired:
                    self._expire(session, row.id, now)
                else:
                    if approver in current.approvers:
                        raise _already_approved(current)
                    session.add(Approval(request_id=row.id, approver=_id(approver), at=now))
                    try:
                        session.flush()
                    except IntegrityError:
                        raise _already_approved(current) from None
                    count = len(current.approvers) + 1
                    quorum = count >= row.approvals_required
                    if quorum and not self._transition(
                        session, row.id, Status.PENDING, Status.APPROVED, decided_at=now, decided_by=_id(approver)
                    ):
                        raise Refused(RefusalCode.ALREADY_DECIDED, already_decided(current), current)
                    self._record(
                        session,
                        AuditAction.APPROVED,
                        current,
                        actor=approver,
                        at=now,
                        detail={
                            "approvals": count,
                            "required": row.approvals_required,
                            "quorum_reached": quorum,
                            **({"past_holder_warning": True} if warned else {}),
                        },
                    )
                current = self._view(session, self._reload(session, row.id))
            if expired:
                raise refuse_expired(current)
            # Only the approval that completed the quorum gets here with it; it alone runs the release.
            return self._release(current, actor=approver) if quorum else current

    def reject(self, request_id: str, rejecter: str, *, is_bot: BotCheck = False, note: str = "") -> RequestView:
        """An approver turns the request down; nothing is deleted."""
        with self._attempt("reject", rejecter, request_id=request_id) as attempt:
            request = self._known(request_id, attempt)
            self.policy.check_rejecter(request, rejecter, is_bot)
            outcome = storable(note.strip(), self.policy.max_reason_chars) or None
            return self._decide(request, rejecter, Status.REJECTED, outcome)

    def cancel(self, request_id: str, requester: str, *, is_bot: BotCheck = False) -> RequestView:
        """The requester withdraws the request; nothing is deleted."""
        with self._attempt("cancel", requester, request_id=request_id) as attempt:
            request = self._known(request_id, attempt)
            self.policy.check_canceller(request, requester, is_bot)
            return self._decide(request, requester, Status.CANCELLED, None)

    def attach_message(self, request_id: str, channel: str, ts: str) -> RequestView:
        """Remember where the approval message was posted, so its final state can replace it in place."""
        try:
            with self.sessions.begin() as session:
                result = session.execute(
                    update(UnlockRequest)
                    .where(UnlockRequest.id == request_id)
                    .values(channel=storable(channel, CHANNEL_CHARS), message_ts=storable(ts, 64))
                    .execution_options(synchronize_session=False)
                )
                if cast(CursorResult[Any], result).rowcount != 1:
                    raise BadInput(f"there is no unlock request {storable(request_id, 64)!r} to attach a message to")
                return self._view(session, self._reload(session, request_id))
        except SQLAlchemyError as exc:
            raise DatabaseUnavailable(f"could not store the approval message: {describe_error(exc)}") from exc

    # -- what the server calls --------------------------------------------------------------------
    def find(self, request_id: str) -> RequestView | None:
        """The request as stored now, or None for an unknown (or malformed) ID."""
        if not _REQUEST_ID.fullmatch(request_id):
            return None
        try:
            with self.sessions() as session:
                row = session.get(UnlockRequest, request_id)
                return self._view(session, row) if row is not None else None
        except SQLAlchemyError as exc:
            raise DatabaseUnavailable(f"could not read unlock request: {describe_error(exc)}") from exc

    def expire_due(self) -> list[RequestView]:
        """End pending requests past their expiry; returns them so their messages can be updated."""
        now = self._now()
        expired: list[RequestView] = []
        try:
            with self.sessions() as session:
                due = session.scalars(
                    select(UnlockRequest.id)
                    .where(UnlockRequest.status == Status.PENDING, UnlockRequest.expires_at <= now)
                    .order_by(UnlockRequest.expires_at)
                ).all()
            for request_id in due:
                with self.sessions.begin() as session:
                    if self._expire(session, request_id, now):
                        expired.append(self._view(session, self._reload(session, request_id)))
        except SQLAlchemyError as exc:
            raise AuditUnavailable(f"could not expire requests: {describe_error(exc)}") from exc
        return expired

    def reconcile(self) -> list[RequestView]:
        """End requests a stopped bot left `approved` or `executing` (see the module docstring); never deletes."""
        now = self._now()
        cutoff = now - self.executing_grace
        ended: list[RequestView] = []
        try:
            with self.sessions() as session:
                stuck = session.scalars(
                    select(UnlockRequest.id)
                    .where(
                        or_(
                            and_(UnlockRequest.status == Status.EXECUTING, UnlockRequest.executing_at <= cutoff),
                            and_(UnlockRequest.status == Status.APPROVED, UnlockRequest.decided_at <= cutoff),
                        )
                    )
                    .order_by(UnlockRequest.created_at)
                ).all()
        except SQLAlchemyError as exc:
            raise AuditUnavailable(f"could not reconcile requests: {describe_error(exc)}") from exc
        for request_id in stuck:  # each on its own: one that fails does not hold up the others
            try:
                view = self._reconcile_one(request_id)
            except Exception as exc:
                self.on_reconcile_failure()
                log.error("could not reconcile unlock request %s, trying again next sweep: %s", request_id, exc)
                log.debug("reconciliation failure", exc_info=exc)
                continue
            if view is not None:
                ended.append(view)
        return ended

    def _reconcile_one(self, request_id: str) -> RequestView | None:
        request = self._current(request_id)
        try:
            lock = self.directory.read(_address(request))
        except TflockError as exc:
            log.warning("cannot reconcile unlock request %s yet: %s", request.id, exc)
            return None
        comparison = compare(_seen(request), lock)
        outcome, note = _reconciled(request.status, comparison)
        return self._finish(request, request.status, outcome, actor=None, note=note, reconciled=comparison)

    # -- the release -------------------------------------------------------------------------------
    def _release(self, request: RequestView, actor: str | None) -> RequestView:
        seen = _seen(request)
        try:
            lock = self.directory.read(_address(request))
        except TflockError as exc:
            note = f"could not re-read the lock, so nothing was deleted: {exc}"
            return self._finished(request, Status.APPROVED, Status.FAILED, actor=actor, note=note)
        comparison = compare(seen, lock)
        if comparison.finding is Finding.UNCHECKED:
            return self._finished(request, Status.APPROVED, Status.FAILED, actor=actor, note=comparison.note)
        if comparison.finding is Finding.GONE:
            return self._finished(request, Status.APPROVED, Status.ALREADY_RELEASED, actor=actor, note=comparison.note)
        if comparison.finding is Finding.CHANGED:
            detail = {"lock_ids_now": list(lock.lock_ids), "raw_info_now": [s.raw_info for s in lock.snapshots]}
            return self._finished(
                request, Status.APPROVED, Status.SUPERSEDED, actor=actor, note=comparison.note, detail=detail
            )
        if not self._start_executing(request, lock, actor):
            return self._current(request.id)  # another process took it from `approved` first
        deletion = delete_seen(self.directory, lock, seen)
        note = f"{deletion.note}; {comparison.note}" if comparison.note else deletion.note
        detail = {"deleted": list(deletion.deleted)}
        try:
            return self._finished(request, Status.EXECUTING, deletion.status, actor=actor, note=note, detail=detail)
        except SQLAlchemyError as exc:
            raise AuditUnavailable(
                f"{note}, but the outcome could not be written to the audit trail "
                f"({describe_error(exc)}); it will be reconciled when the database is back"
            ) from exc

    def _start_executing(self, request: RequestView, lock: StateLock, actor: str | None) -> bool:
        """approved → executing with its audit event, committed before any delete (fail closed)."""
        now = self._now()
        try:
            with self.sessions.begin() as session:
                if not self._transition(session, request.id, Status.APPROVED, Status.EXECUTING, executing_at=now):
                    return False
                detail = {
                    "stores": [s.location for s in lock.snapshots],
                    "raw_info": request.raw_info,
                    "raw_info_sha256": raw_digest(request.raw_info),
                    "lockfile_etag": request.lockfile_etag,
                }
                self._record(session, AuditAction.EXECUTING, request, actor=actor, at=now, detail=detail)
        except SQLAlchemyError as exc:
            raise AuditUnavailable(
                "the release attempt could not be written to the audit trail, so the lock was NOT released "
                f"({describe_error(exc)})"
            ) from exc
        return True

    def _finished(
        self,
        request: RequestView,
        from_: Status,
        to: Status,
        *,
        actor: str | None,
        note: str,
        detail: Mapping[str, Any] | None = None,
    ) -> RequestView:
        view = self._finish(request, from_, to, actor=actor, note=note, detail=detail)
        return view if view is not None else self._current(request.id)

    def _finish(
        self,
        request: RequestView,
        from_: Status,
        to: Status,
        *,
        actor: str | None,
        note: str,
        detail: Mapping[str, Any] | None = None,
        reconciled: Comparison | None = None,
    ) -> RequestView | None:
        """from_ → to with its audit event; None if the request had already left `from_`."""
        now = self._now()
        with self.sessions.begin() as session:
            if not self._transition(session, request.id, from_, to, finished_at=now, outcome=note):
                if from_ is Status.EXECUTING and reconciled is None:
                    # Reconciliation ended it while this release was still running: keep what really happened.
                    late = {"late_outcome": to, "note": note, **(detail or {})}
                    self._record(session, AuditAction.RECONCILED, request, actor=actor, at=now, detail=late)
                return None
            if reconciled is not None:
                found = {"from": from_, "to": to, "found": reconciled.finding, "note": note}
                self._record(session, AuditAction.RECONCILED, request, actor=None, at=now, detail=found)
            event = {"note": note, **(detail or {}), **({"reconciled": True} if reconciled else {})}
            self._record(session, AuditAction(to.value), request, actor=actor, at=now, detail=event)
            view = self._view(session, self._reload(session, request.id))
        log.info("unlock request %s: %s → %s: %s", request.id, from_, to, note)
        if to is Status.EXECUTED:
            self._history_ended(request, now)
        return view

    def _history_ended(self, request: RequestView, at: datetime) -> None:
        """The lock history learns this lock was force-unlocked by this request; never fails the release."""
        try:
            backend = self.directory.backends.for_address(_address(request)).name
            lock = seen_from_raw(request.address, backend, request.raw_info, request.lock_id)
            with self.sessions.begin() as session:
                record_ended(
                    session,
                    request.address,
                    request.lock_id,
                    Ending.FORCE_UNLOCKED,
                    at=at,
                    request_id=request.id,
                    raw_info=request.raw_info,
                    lock=lock,
                )
        except (SQLAlchemyError, TflockError) as exc:
            self.on_history_missed()
            why = describe_error(exc) if isinstance(exc, SQLAlchemyError) else str(exc)
            log.error("unlock request %s: lock history not recorded: %s", request.id, why)

    # -- pending → rejected | cancelled | expired ---------------------------------------------------
    def _decide(self, request: RequestView, actor: str, to: Status, outcome: str | None) -> RequestView:
        now = self._now()
        with self.sessions.begin() as session:
            if self._transition(
                session,
                request.id,
                Status.PENDING,
                to,
                UnlockRequest.expires_at > now,
                decided_at=now,
                decided_by=_id(actor),
                finished_at=now,
                outcome=outcome,
            ):
                detail = {"note": outcome} if outcome else {}
                self._record(session, AuditAction(to.value), request, actor=actor, at=now, detail=detail)
                return self._view(session, self._reload(session, request.id))
            self._expire(session, request.id, now)
            current = self._view(session, self._reload(session, request.id))
        refuse_if_decided(current)
        raise Refused(RefusalCode.ALREADY_DECIDED, already_decided(current), current)  # not reached: it left pending

    def _expire(self, session: Session, request_id: str, now: datetime) -> bool:
        if not self._transition(
            session,
            request_id,
            Status.PENDING,
            Status.EXPIRED,
            UnlockRequest.expires_at <= now,
            decided_at=now,
            finished_at=now,
            outcome="expired before enough people approved",
        ):
            return False
        request = self._view(session, self._reload(session, request_id))
        detail = {"approvals": len(request.approvers), "required": request.approvals_required}
        self._record(session, AuditAction.EXPIRED, request, actor=None, at=now, detail=detail)
        return True

    # -- database plumbing ---------------------------------------------------------------------------
    def _transition(
        self, session: Session, request_id: str, from_: Status, to: Status, *also: ColumnElement[bool], **values: Any
    ) -> bool:
        """The guarded UPDATE every state change goes through; True if this caller made the change."""
        result = session.execute(
            update(UnlockRequest)
            .where(UnlockRequest.id == request_id, UnlockRequest.status == from_, *also)
            .values(status=to, **_storable_values(values))
            .execution_options(synchronize_session=False)
        )
        return cast(CursorResult[Any], result).rowcount == 1

    def _record(
        self,
        session: Session,
        action: AuditAction,
        request: RequestView,
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
            state_address=request.address,
            lock_id=request.lock_id,
            request_id=request.id,
            channel=request.channel,
            detail=detail,
        )

    @contextmanager
    def _attempt(
        self, action: str, actor: str | None, *, channel: str | None = None, request_id: str | None = None
    ) -> Iterator[_Attempt]:
        """Record a refusal before it reaches the person; turn database failures into AuditUnavailable."""
        attempt = _Attempt(action, actor, channel=channel, given_request_id=request_id)
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
        request = refusal.request
        detail: dict[str, Any] = {"why": refusal.why, "attempted": attempt.action, "message": str(refusal)}
        if request is None and attempt.given_request_id is not None:
            detail["given_request_id"] = attempt.given_request_id  # capped and made storable by the writer
        try:
            with self.sessions.begin() as session:
                record_event(
                    session,
                    AuditAction.REFUSED,
                    at=self._now(),
                    actor=attempt.actor,
                    state_address=request.address if request else attempt.state_address,
                    lock_id=request.lock_id if request else attempt.lock_id,
                    request_id=request.id if request else None,
                    channel=request.channel if request else attempt.channel,
                    detail=detail,
                )
        except SQLAlchemyError as exc:
            raise AuditUnavailable(
                f"{refusal} (and the audit trail could not record this refusal: {describe_error(exc)})"
            ) from exc

    def _known(self, request_id: str, attempt: _Attempt) -> RequestView:
        request = self.find(request_id)
        if request is None:
            raise Refused(
                RefusalCode.UNKNOWN_REQUEST,
                "This force-unlock request is unknown (the button may have been altered or come from another "
                "installation); nothing was changed. Start a new request if the lock still needs releasing.",
            )
        attempt.channel = request.channel
        return request

    def _current(self, request_id: str) -> RequestView:
        request = self.find(request_id)
        assert request is not None, "requests are never deleted"
        return request

    def _locked(self, session: Session, request_id: str) -> UnlockRequest:
        return session.scalars(
            select(UnlockRequest)
            .where(UnlockRequest.id == request_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).one()

    def _reload(self, session: Session, request_id: str) -> UnlockRequest:
        row = session.get(UnlockRequest, request_id, populate_existing=True)
        assert row is not None, "requests are never deleted"
        return row

    def _view(self, session: Session, row: UnlockRequest) -> RequestView:
        approvers = session.scalars(
            select(Approval.approver).where(Approval.request_id == row.id).order_by(Approval.id)
        ).all()
        return RequestView.of(row, approvers)

    def _now(self) -> datetime:
        now = self.clock()
        if now.tzinfo is None:
            raise ValueError("the workflow's clock must return aware UTC datetimes")
        return now.astimezone(UTC)


def _seen_now(lock: StateLock) -> Seen:
    """What a new request records, or a refusal when there is nothing (or nothing single) to release."""
    if lock.answer is Answer.UNKNOWN:
        missed = "; ".join(str(u) for u in lock.unchecked)
        raise Refused(
            RefusalCode.LOCK_UNKNOWN,
            f"tflock could not tell whether {lock.address} is locked ({missed}), so there is no lock it can "
            "promise to release. Try again once that is fixed.",
        )
    if not lock.held:
        raise Refused(RefusalCode.NOT_LOCKED, f"{lock.address} is not locked; there is nothing to unlock.")
    raws = {snapshot.raw_info for snapshot in lock.snapshots}
    if len(raws) > 1:
        ids = ", ".join(lock.lock_ids) or "unreadable Info"
        raise Refused(
            RefusalCode.STORES_DISAGREE,
            f"The DynamoDB table and the lock file hold different locks for {lock.address} ({ids}); tflock only "
            "releases a lock it can match exactly. Release them by hand (terraform force-unlock).",
        )
    return Seen(
        raw_info=raws.pop(),
        lock_id=lock.lock_ids[0] if lock.lock_ids else None,
        in_table=lock.table is not None,
        in_lockfile=lock.lockfile is not None,
        lockfile_etag=lock.lockfile.etag if lock.lockfile is not None else None,
    )


def _is_pinned(seen: Seen, pinned: Pin) -> bool:
    """The very lock the button was shown for: the same raw bytes and, for a lock file, the same ETag."""
    same_bytes = hmac.compare_digest(raw_digest(seen.raw_info), pinned.raw_sha256)
    return same_bytes and (pinned.lockfile_etag is None or seen.lockfile_etag == pinned.lockfile_etag)


def _seen(request: RequestView) -> Seen:
    return Seen(
        raw_info=request.raw_info,
        lock_id=request.lock_id,
        in_table=Store.TABLE in request.held_in,
        in_lockfile=Store.LOCKFILE in request.held_in,
        lockfile_etag=request.lockfile_etag,
    )


def _address(request: RequestView) -> StateAddress:
    bucket, _, key = request.address.partition("/")
    return StateAddress(bucket, key)


def _reconciled(status: Status, comparison: Comparison) -> tuple[Status, str]:
    """Where a request left mid-release ends; reconciliation itself never deletes a lock."""
    started = status is Status.EXECUTING
    if comparison.finding is Finding.GONE:
        if started:
            return Status.EXECUTED, (
                "the bot stopped in the middle of this release; the lock is gone now, most likely deleted by "
                "this release (someone else may have released it in between)"
            )
        return Status.ALREADY_RELEASED, (
            "the release never started (the bot stopped, or the audit trail could not be written) and the lock "
            "is gone now"
        )
    if comparison.finding is Finding.CHANGED:
        return Status.SUPERSEDED, f"found after the bot stopped mid-release: {comparison.note}"
    if comparison.finding is Finding.UNCHECKED:
        return Status.FAILED, f"found after the bot stopped mid-release: {comparison.note}"
    stopped = "in the middle of this release" if started else "before this release started"
    partly = f" ({comparison.note})" if comparison.note else ""
    return Status.FAILED, (
        f"the bot stopped {stopped} and the lock is still held unchanged{partly}; nothing was deleted by "
        "reconciliation — ask again if it should still be released"
    )


def _storable_values(values: dict[str, Any]) -> dict[str, Any]:
    """A note about how a request ended may quote a lock's ID or Info: stored escaped (no NUL), never refused."""
    if isinstance(values.get("outcome"), str):
        return {**values, "outcome": storable(values["outcome"], None)}
    return values


def _already_approved(request: RequestView) -> Refused:
    missing = request.approvals_missing
    return Refused(
        RefusalCode.ALREADY_APPROVED,
        f"You have already approved this request; it needs {missing} more approval(s) from other people.",
        request,
    )


def _id(user: str) -> str:
    cleaned = storable(user, ACTOR_CHARS)
    assert cleaned is not None
    return cleaned
