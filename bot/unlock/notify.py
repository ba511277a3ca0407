"""Reaching people about a force-unlock request (docs/design.md §8): who to mention or message, the one
escalation of a request still pending, and the lock holder's answer. Decisions only — no Slack.

    requested ─▶ notified (approvers mentioned / messaged; holder asked, or why not)
        │
        ├─ pending after TFLOCK_ESCALATE_AFTER ─▶ escalated (once: a guarded UPDATE of `escalated_at`)
        └─ holder answers ─▶ running: approving needs "Approve anyway"
                          └─ dead: an approval, if they may approve and did not ask for it themselves

Escalation is claimed before anything is sent: `UPDATE … SET escalated_at = :now WHERE id = :id AND
status = 'pending' AND escalated_at IS NULL`, whose row count says which replica sends it. A send that
fails gives the claim back (only its own: `WHERE escalated_at = :claimed`), so the next sweep tries again.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import CursorResult, or_, select, update
from sqlalchemy.orm import Session

from bot.audit.models import AuditAction
from bot.audit.writer import record_event
from bot.unlock.models import HolderAnswer, RequestView, Status, UnlockRequest
from bot.unlock.policy import BotCheck, CannotCheck, RefusalCode, Refused, refuse_bot, refuse_if_decided
from bot.unlock.workflow import UnlockWorkflow

log = logging.getLogger(__name__)

MAX_DIRECT_MESSAGES = 25  # beyond this a user group is better mentioned than messaged one by one
_GROUP = re.compile(r"S[A-Z0-9]{2,20}")
_USER = re.compile(r"[UW][A-Z0-9]{2,20}")


class NotifyMode(StrEnum):
    """TFLOCK_NOTIFY: how approvers hear about a new request."""

    MENTION = "mention"  # user groups as group mentions and listed users as mentions, in the request's thread
    DM = "dm"  # a direct message to each approver (groups expanded), never to the requester
    NONE = "none"


@dataclass(frozen=True)
class ApproverReach:
    """Who a new request is announced to: groups and users to mention (mention mode)."""

    mode: NotifyMode
    groups: tuple[str, ...]
    users: tuple[str, ...]

    @property
    def anyone(self) -> bool:
        return bool(self.groups or self.users)


def approvers_to_reach(approvers: Sequence[str], requester: str, mode: NotifyMode) -> ApproverReach:
    """TFLOCK_APPROVERS split into groups and users, the requester left out; nobody for `none` or an empty list
    (then any full member may approve, and there is nobody in particular to call)."""
    if mode is NotifyMode.NONE:
        return ApproverReach(mode, (), ())
    groups = tuple(dict.fromkeys(a for a in approvers if _GROUP.fullmatch(a)))
    users = tuple(dict.fromkeys(a for a in approvers if _USER.fullmatch(a) and a != requester))
    return ApproverReach(mode, groups, users)


def direct_message_targets(
    listed_users: Iterable[str], group_members: Iterable[str], requester: str, limit: int = MAX_DIRECT_MESSAGES
) -> tuple[tuple[str, ...], int]:
    """Each approver once, the requester never; (who gets a message, how many were left out over `limit`)."""
    everyone = [u for u in dict.fromkeys([*listed_users, *group_members]) if u != requester and _USER.fullmatch(u)]
    return tuple(everyone[:limit]), max(len(everyone) - limit, 0)


class HolderMatch(StrEnum):
    ASK = "ask"  # exactly one Slack user matches the lock's Who
    AMBIGUOUS = "ambiguous"  # several do: asking one of them could ask the wrong person
    UNMATCHED = "unmatched"  # nobody does (a CI runner, a name Slack does not know)
    NO_WHO = "no_who"  # the lock's Info names nobody (unreadable, or `@host` only)


@dataclass(frozen=True)
class HolderChoice:
    match: HolderMatch
    user: str | None = None
    candidates: int = 0


def holder_to_ask(who: str | None, matches: Iterable[str]) -> HolderChoice:
    """Ask the holder only when their Slack user is beyond doubt: one match, no more, no fewer."""
    if not who:
        return HolderChoice(HolderMatch.NO_WHO)
    found = sorted(set(matches))
    if len(found) == 1:
        return HolderChoice(HolderMatch.ASK, found[0], 1)
    if found:
        return HolderChoice(HolderMatch.AMBIGUOUS, None, len(found))
    return HolderChoice(HolderMatch.UNMATCHED)


@dataclass(frozen=True)
class HolderOutcome:
    """What the holder's answer did: the request as it is now, whether it counted as an approval, and why not."""

    request: RequestView
    answer: HolderAnswer
    approved: bool
    note: str


class RequestNotices:
    """The database side of notifications, on the workflow's sessions, clock and policy."""

    def __init__(self, workflow: UnlockWorkflow, escalate_after: timedelta) -> None:
        self.workflow = workflow
        self.escalate_after = escalate_after

    # -- announcing ------------------------------------------------------------------------------------
    def record_notified(self, request: RequestView, detail: Mapping[str, Any]) -> None:
        """One `notified` event per request: who was mentioned or messaged, and whether the holder was asked."""
        with self.workflow.sessions.begin() as session:
            self._record(session, AuditAction.NOTIFIED, request, actor=None, detail=detail)

    def ask_holder(self, request_id: str, holder: str) -> RequestView | None:
        """Remember who is asked about their run; None when the request is no longer pending or already has one."""
        with self.workflow.sessions.begin() as session:
            result = session.execute(
                update(UnlockRequest)
                .where(
                    UnlockRequest.id == request_id,
                    UnlockRequest.status == Status.PENDING,
                    UnlockRequest.holder.is_(None),
                )
                .values(holder=holder)
                .execution_options(synchronize_session=False)
            )
            if cast(CursorResult[Any], result).rowcount != 1:
                return None
        return self.workflow.find(request_id)

    def forget_holder(self, request_id: str, holder: str) -> None:
        """The question could not be delivered: nobody was asked, so nobody can answer or be shown as asked."""
        with self.workflow.sessions.begin() as session:
            session.execute(
                update(UnlockRequest)
                .where(
                    UnlockRequest.id == request_id,
                    UnlockRequest.holder == holder,
                    UnlockRequest.holder_answer.is_(None),
                )
                .values(holder=None)
                .execution_options(synchronize_session=False)
            )

    # -- the holder's answer ------------------------------------------------------------------------------
    def answer_as_holder(
        self, request_id: str, user: str, answer: HolderAnswer, *, is_bot: BotCheck = False
    ) -> HolderOutcome:
        """Record what the holder said; "dead" is also an approval when they may approve and did not ask."""
        workflow = self.workflow
        with workflow._attempt("holder_answer", user, request_id=request_id) as attempt:
            request = workflow._known(request_id, attempt)
            if isinstance(is_bot, CannotCheck):
                raise Refused(RefusalCode.LOOKUP_FAILED, f"Slack could not be asked who you are ({is_bot}).", request)
            if is_bot:
                raise refuse_bot(request)
            refuse_if_decided(request)
            if request.holder != user:
                raise Refused(
                    RefusalCode.NOT_ASKED,
                    "This question was put to the person whose name is on the lock; only they can answer it.",
                    request,
                )
            approved, note = False, ""
            if answer is HolderAnswer.DEAD:
                approved, note = self._may_count(request, user)
            now = workflow._now()
            with workflow.sessions.begin() as session:
                result = session.execute(
                    update(UnlockRequest)
                    .where(
                        UnlockRequest.id == request.id,
                        UnlockRequest.status == Status.PENDING,
                        UnlockRequest.holder == user,
                        # Once, except that a run said to be running may die later: running → dead only.
                        UnlockRequest.holder_answer.is_(None)
                        if answer is not HolderAnswer.DEAD
                        else or_(
                            UnlockRequest.holder_answer.is_(None),
                            UnlockRequest.holder_answer == HolderAnswer.RUNNING.value,
                        ),
                        UnlockRequest.expires_at > now,
                    )
                    .values(holder_answer=answer.value, holder_answered_at=now)
                    .execution_options(synchronize_session=False)
                )
                answered = cast(CursorResult[Any], result).rowcount == 1
                if answered:
                    detail = {
                        "answer": answer.value,
                        "counts_as_approval": approved,
                        **({"note": note} if note else {}),
                    }
                    self._record(session, AuditAction.HOLDER_ANSWERED, request, actor=user, detail=detail, at=now)
            if not answered:  # read why outside the write transaction (SQLite has one writer)
                current = workflow._current(request.id)
                refuse_if_decided(current)
                if current.holder_answer is not None:
                    raise Refused(
                        RefusalCode.ALREADY_ANSWERED,
                        f"You already answered ({current.holder_answer.value}); that answer stands.",
                        current,
                    )
                raise Refused(RefusalCode.EXPIRED, "This request has expired; nothing was recorded.", current)
        if approved:
            try:
                current = workflow.approve(request.id, user, is_bot=is_bot)
            except Refused as refused:  # already approved, decided or expired in between: the answer stands
                note = str(refused)
                return HolderOutcome(refused.request or workflow._current(request.id), answer, False, note)
            return HolderOutcome(current, answer, True, "")
        return HolderOutcome(workflow._current(request.id), answer, False, note)

    def _may_count(self, request: RequestView, user: str) -> tuple[bool, str]:
        """(is the holder's "go ahead" an approval, and if not, why) — the requester's own word never is."""
        if user == request.requester:
            return False, (
                "you asked for this force-unlock yourself, so your answer as the lock's holder is not an approval: "
                "a second person must approve"
            )
        if user in request.approvers:
            return False, "you had already approved this request"
        try:
            may = self.workflow.policy.is_approver(user)
        except CannotCheck as exc:
            return False, f"Slack could not be asked whether you may approve ({exc}); use Approve on the request"
        if not may:
            return False, "you are not an approver (TFLOCK_APPROVERS), so this is recorded but is not an approval"
        return True, ""

    # -- escalation -------------------------------------------------------------------------------------------
    def due_for_escalation(self) -> list[RequestView]:
        """Pending requests older than TFLOCK_ESCALATE_AFTER that have not been escalated yet, oldest first."""
        now = self.workflow._now()
        with self.workflow.sessions() as session:
            rows = session.scalars(
                select(UnlockRequest)
                .where(
                    UnlockRequest.status == Status.PENDING,
                    UnlockRequest.escalated_at.is_(None),
                    UnlockRequest.created_at <= now - self.escalate_after,
                    UnlockRequest.expires_at > now,
                )
                .order_by(UnlockRequest.created_at)
            ).all()
            return [self.workflow._view(session, row) for row in rows]

    def claim_escalation(self, request_id: str) -> tuple[RequestView, datetime] | None:
        """This replica sends the escalation (the request and the claim's time), or None: another did, or it is over."""
        now = self.workflow._now()
        with self.workflow.sessions.begin() as session:
            result = session.execute(
                update(UnlockRequest)
                .where(
                    UnlockRequest.id == request_id,
                    UnlockRequest.status == Status.PENDING,
                    UnlockRequest.escalated_at.is_(None),
                    UnlockRequest.expires_at > now,
                )
                .values(escalated_at=now)
                .execution_options(synchronize_session=False)
            )
            if cast(CursorResult[Any], result).rowcount != 1:
                return None
            return self.workflow._view(session, self.workflow._reload(session, request_id)), now

    def give_back_escalation(self, request_id: str, claimed_at: datetime) -> None:
        """Nothing could be sent: let the next sweep (here or on another replica) try again."""
        with self.workflow.sessions.begin() as session:
            session.execute(
                update(UnlockRequest)
                .where(UnlockRequest.id == request_id, UnlockRequest.escalated_at == claimed_at)
                .values(escalated_at=None)
                .execution_options(synchronize_session=False)
            )

    def record_escalated(self, request: RequestView, detail: Mapping[str, Any]) -> None:
        with self.workflow.sessions.begin() as session:
            self._record(session, AuditAction.ESCALATED, request, actor=None, detail=detail)

    def _record(
        self,
        session: Session,
        action: AuditAction,
        request: RequestView,
        *,
        actor: str | None,
        detail: Mapping[str, Any],
        at: datetime | None = None,
    ) -> None:
        record_event(
            session,
            action,
            at=at or self.workflow._now(),
            actor=actor,
            state_address=request.address,
            lock_id=request.lock_id,
            request_id=request.id,
            channel=request.channel,
            detail=detail,
        )
